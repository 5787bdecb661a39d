//! The embedded default: the tiny math policy and reward model shipped under `recipes/assets/`
//! (reproduced by the `tiny-bootstrap` recipe) and the procedural task they were trained on, and
//! where a binary finds them and the evaluation sets once it is installed away from its source.
//!
//! Lookup order of the models (`tiny-math-policy/`, `tiny-math-rm/`): `$MATHRL_ASSETS` alone when
//! it is set (an explicit choice, such as a re-bootstrapped pair, must not silently fall back to
//! the shipped ones); else `<exe dir>/assets/`, `<exe dir>/../share/mathrl/` (where an installer
//! puts them beside `bin/mathrl`), then the source tree the binary was built from, unless
//! `$MATHRL_NO_SOURCE_ASSETS` is set. The evaluation sets (`eval/`) are looked for under
//! `$MATHRL_ASSETS` first, then the same installed places, then `./data/eval` and the source
//! tree's `data/eval`; their explicit choice is the eval recipe's `data_dir`.

use std::fmt;
use std::path::{Path, PathBuf};

use mathrl::data::procedural::{Problem, ProceduralTask, Split, TaskConfig};
use mathrl::data::QaRecord;

/// Training problems the bootstrap used (SFT, then RM samples); RL prompts come after them.
pub const BOOTSTRAP_TRAIN_PROBLEMS: usize = 30_000 + 768;

/// The directory holding the embedded default's models (and, installed, `eval/`).
pub const ASSETS_ENV: &str = "MATHRL_ASSETS";
/// Set (non-empty): the source tree is not looked in, so a test or a packager sees what an
/// installed binary sees.
pub const NO_SOURCE_ASSETS_ENV: &str = "MATHRL_NO_SOURCE_ASSETS";
/// The shipped policy's directory name.
pub const POLICY_ASSET: &str = "tiny-math-policy";
/// The shipped reward model's directory name.
pub const RM_ASSET: &str = "tiny-math-rm";
/// The evaluation sets' directory name in an installation (`data/eval` in the source tree).
pub const EVAL_ASSET: &str = "eval";

/// One place an asset was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPlace {
    /// The directory the asset would be.
    pub path: PathBuf,
    /// Why it is looked there (`$MATHRL_ASSETS`, `beside the executable`, ...).
    pub origin: &'static str,
}

/// An asset found in none of the places looked.
#[derive(Debug, Clone)]
pub struct MissingAsset {
    /// The asset's directory name.
    pub name: String,
    /// Every place looked, in order.
    pub looked: Vec<AssetPlace>,
}

impl fmt::Display for MissingAsset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` was not found; looked in:", self.name)?;
        for place in &self.looked {
            write!(f, "\n  {} ({})", place.path.display(), place.origin)?;
        }
        if !source_tree_allowed() {
            write!(
                f,
                "\n  (not the source tree: ${NO_SOURCE_ASSETS_ENV} is set)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for MissingAsset {}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn source_tree_allowed() -> bool {
    std::env::var_os(NO_SOURCE_ASSETS_ENV).is_none_or(|v| v.is_empty())
}

/// `<exe dir>/assets` and `<exe dir>/../share/mathrl`, the places an installation keeps assets.
fn installed_roots() -> Vec<AssetPlace> {
    let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    else {
        return Vec::new();
    };
    let mut roots = vec![AssetPlace {
        path: bin.join("assets"),
        origin: "beside the executable",
    }];
    if let Some(prefix) = bin.parent() {
        roots.push(AssetPlace {
            path: prefix.join("share/mathrl"),
            origin: "the installation's share/mathrl",
        });
    }
    roots
}

/// The places `name` ([`POLICY_ASSET`], [`RM_ASSET`] or [`EVAL_ASSET`]) is looked for, in order.
pub fn asset_places(name: &str) -> Vec<AssetPlace> {
    let from_env = env_dir(ASSETS_ENV).map(|dir| AssetPlace {
        path: dir.join(name),
        origin: "$MATHRL_ASSETS",
    });
    let is_eval = name == EVAL_ASSET;
    if let (Some(place), false) = (&from_env, is_eval) {
        return vec![place.clone()];
    }
    let mut places: Vec<AssetPlace> = from_env.into_iter().collect();
    for root in installed_roots() {
        places.push(AssetPlace {
            path: root.path.join(name),
            origin: root.origin,
        });
    }
    if source_tree_allowed() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        if is_eval {
            places.push(AssetPlace {
                path: PathBuf::from("data/eval"),
                origin: "the working directory",
            });
            places.push(AssetPlace {
                path: manifest.join("../data/eval"),
                origin: "the source tree",
            });
        } else {
            places.push(AssetPlace {
                path: manifest.join("assets").join(name),
                origin: "the source tree",
            });
        }
    }
    places
}

/// Whether `dir` holds the asset: a model's `config.json`, or for the evaluation sets GSM8K's
/// test file (so that an unrelated `data/eval` in the working directory is passed over).
fn holds(name: &str, dir: &Path) -> bool {
    if name == EVAL_ASSET {
        dir.join("gsm8k/test.jsonl").is_file()
    } else {
        dir.join("config.json").is_file()
    }
}

/// The first place that holds `name`, or every place looked.
pub fn find_asset(name: &str) -> Result<PathBuf, MissingAsset> {
    let looked = asset_places(name);
    match looked.iter().find(|p| holds(name, &p.path)) {
        Some(place) => Ok(place.path.clone()),
        None => Err(MissingAsset {
            name: name.to_string(),
            looked,
        }),
    }
}

/// Where `name` is found, else the first place looked (which then names it in an error).
fn asset_or_first_place(name: &str) -> PathBuf {
    find_asset(name).unwrap_or_else(|missing| {
        missing
            .looked
            .into_iter()
            .next()
            .map(|p| p.path)
            .unwrap_or_else(|| PathBuf::from(name))
    })
}

/// The directory holding the embedded default's policy (see the module's lookup order).
pub fn assets_dir() -> PathBuf {
    let policy = default_policy_dir();
    policy.parent().map(Path::to_path_buf).unwrap_or(policy)
}

/// The shipped policy (Hugging Face layout, with its tokenizer), where it is found.
pub fn default_policy_dir() -> PathBuf {
    asset_or_first_place(POLICY_ASSET)
}

/// The shipped reward model (Qwen2.5-Math-RM layout), where it is found.
pub fn default_rm_dir() -> PathBuf {
    asset_or_first_place(RM_ASSET)
}

/// The shipped evaluation sets, where they are found.
pub fn default_eval_dir() -> PathBuf {
    asset_or_first_place(EVAL_ASSET)
}

/// The procedural task of the embedded default: one- and two-step problems. With three and four
/// steps a 2M-parameter policy needs far more SFT than a laptop gives it in minutes; the
/// bootstrap and the RL run must draw from the same task.
pub fn embedded_task() -> TaskConfig {
    TaskConfig {
        max_steps: 2,
        ..TaskConfig::default()
    }
}

/// (question, gold) pairs of a split of the embedded default's task: `skip` then `take`.
pub fn procedural_items(split: Split, skip: usize, take: usize) -> mathrl::Result<Vec<QaRecord>> {
    let task = ProceduralTask::new(embedded_task())?;
    Ok(task
        .problems(split)
        .skip(skip)
        .take(take)
        .map(|p: Problem| QaRecord::new(p.question, p.answer))
        .collect())
}
