//! `--resume DIR`, one way for every training recipe: DIR is a checkpoint (`step-000123/`) or a
//! run directory (its newest checkpoint); the run continues in `--output`, by default the
//! resumed run's own directory. A recipe that cannot resume refuses the flag.
//!
//! A run directory is the one the driver wrote `config.toml` into; its first line names the
//! recipe, so resuming a run of another recipe is refused too.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mathrl_learners::checkpoint::TRAINER_STATE_FILE;
use mathrl_learners::{latest_checkpoint, read_trainer_state, ResumeConfig, RunIdentity};

use crate::cli::Cli;

/// Recipes whose runs resume; the multi-stage ones only in their own run directory.
const RESUMABLE: &[(&str, Stages)] = &[
    ("qwen25-math-rl", Stages::One),
    ("sft", Stages::One),
    ("rm-retraining", Stages::One),
    ("sft-data-evolution", Stages::Several),
    ("tir-data-evolution", Stages::Several),
    ("pipeline", Stages::Several),
    ("tiny-bootstrap", Stages::Several),
];

/// Whether a recipe trains one loop (it can continue from a checkpoint into any directory) or
/// several (it continues where its own directory says it stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stages {
    One,
    Several,
}

/// The first line of every run's `config.toml`, naming its recipe.
pub fn config_header(recipe: &str) -> String {
    format!("# The resolved config of a `mathrl --recipe {recipe}` run (reuse it with --config).\n")
}

/// The recipe named by a run directory's `config.toml`, when it has the header.
fn recipe_of_run(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join("config.toml")).ok()?;
    let rest = text.lines().next()?.split("--recipe ").nth(1)?;
    Some(rest.split('`').next()?.trim().to_string())
}

/// The run directory holding `dir`: `dir` itself or the nearest directory above it with a
/// `config.toml`.
fn run_dir_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join("config.toml").is_file())
        .map(Path::to_path_buf)
}

/// Where a resumed run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeFrom {
    /// `--resume` named this checkpoint: the run starts from it.
    Checkpoint(PathBuf),
    /// `--resume` named a run directory: the run starts from its own newest checkpoint, else
    /// from `checkpoint`, the newest of the resumed run.
    Run {
        /// The resumed run's directory.
        dir: PathBuf,
        /// Its newest valid checkpoint, when it has one.
        checkpoint: Option<PathBuf>,
    },
}

impl ResumeFrom {
    /// What `--resume DIR` names (after [`resolve_resume`]).
    pub fn of(dir: &Path) -> Result<Self> {
        if dir.join(TRAINER_STATE_FILE).is_file() {
            return Ok(Self::Checkpoint(dir.to_path_buf()));
        }
        let checkpoint = match latest_checkpoint(dir.join("checkpoints"))? {
            Some(found) => Some(found),
            None => latest_checkpoint(dir)?,
        };
        Ok(Self::Run {
            dir: dir.to_path_buf(),
            checkpoint,
        })
    }

    /// The checkpoint a one-loop run starts from, given its own checkpoint directory `own`: the
    /// one `--resume` named, else `own`'s newest (a resumed run killed and started again), else
    /// the resumed run's newest.
    pub fn start(resume: Option<&Self>, own: &Path) -> Result<Option<PathBuf>> {
        if let Some(Self::Checkpoint(dir)) = resume {
            return Ok(Some(dir.clone()));
        }
        if let Some(found) = latest_checkpoint(own)? {
            return Ok(Some(found));
        }
        Ok(match resume {
            Some(Self::Run { checkpoint, .. }) => checkpoint.clone(),
            _ => None,
        })
    }
}

/// The checkpoint a one-loop run with checkpoints in `own` starts from ([`ResumeFrom::start`]),
/// refused when it recorded another seed, data or settings than `identity`'s, unless
/// `resume.allow_changed`.
pub fn checked_start(
    resume_from: Option<&ResumeFrom>,
    own: &Path,
    identity: &RunIdentity,
    resume: ResumeConfig,
) -> Result<Option<PathBuf>> {
    let start = ResumeFrom::start(resume_from, own)?;
    if let Some(dir) = &start {
        let recorded = read_trainer_state(dir)?.run.identity;
        identity.check_resume(recorded.as_ref(), dir, resume)?;
    }
    Ok(start)
}

/// Checks `--resume` against `recipe` and points `--output` at the resumed run's directory when
/// it is not given. Errors name the directory and what is wrong with it.
pub fn resolve_resume(cli: &mut Cli, recipe: &str) -> Result<()> {
    let Some(dir) = cli.resume.clone() else {
        return Ok(());
    };
    let Some(&(_, stages)) = RESUMABLE.iter().find(|(name, _)| *name == recipe) else {
        let names: Vec<&str> = RESUMABLE.iter().map(|(name, _)| *name).collect();
        bail!(
            "{recipe} does not resume, so it takes no --resume (recipes that do: {})",
            names.join(", ")
        );
    };
    if !dir.is_dir() {
        bail!("--resume {}: no such directory", dir.display());
    }
    let run_dir = run_dir_of(&dir).with_context(|| {
        format!(
            "--resume {}: neither it nor a directory above it is a run directory (one with the \
             config.toml every run writes)",
            dir.display()
        )
    })?;
    if let Some(found) = recipe_of_run(&run_dir) {
        if found != recipe {
            bail!(
                "--resume {}: {} is a run of `{found}`, not `{recipe}`",
                dir.display(),
                run_dir.display()
            );
        }
    }
    let output = cli.output.get_or_insert_with(|| run_dir.clone()).clone();
    match stages {
        Stages::Several => {
            if !same_dir(&output, &run_dir) {
                bail!(
                    "{recipe} resumes in its own run directory: drop --output, or pass --output {}",
                    run_dir.display()
                );
            }
            cli.resume = Some(run_dir);
        }
        Stages::One => {
            if let ResumeFrom::Run {
                checkpoint: None, ..
            } = ResumeFrom::of(&dir)?
            {
                bail!(
                    "--resume {}: the run has no complete checkpoint to resume from",
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether two paths name the same directory (either may not exist yet).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("mathrl").chain(args.iter().copied()))
    }

    fn run_dir(root: &Path, recipe: &str, checkpoints: &[&str]) -> PathBuf {
        let dir = root.join(format!("{recipe}-run"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            config_header(recipe) + "steps = 3\n",
        )
        .unwrap();
        for name in checkpoints {
            let ckpt = dir.join("checkpoints").join(name);
            std::fs::create_dir_all(&ckpt).unwrap();
            std::fs::write(ckpt.join(TRAINER_STATE_FILE), "{}").unwrap();
        }
        dir
    }

    #[test]
    fn a_run_directory_resumes_its_newest_checkpoint_in_place() {
        let root = tempfile::tempdir().unwrap();
        let dir = run_dir(root.path(), "sft", &["step-000002", "step-000004"]);
        let mut c = cli(&["--resume", dir.to_str().unwrap()]);
        resolve_resume(&mut c, "sft").unwrap();
        assert_eq!(c.output.as_deref(), Some(dir.as_path()));
        let from = ResumeFrom::of(c.resume.as_deref().unwrap()).unwrap();
        let newest = dir.join("checkpoints/step-000004");
        assert_eq!(
            from,
            ResumeFrom::Run {
                dir: dir.clone(),
                checkpoint: Some(newest.clone())
            }
        );
        // Elsewhere, the run starts from the resumed run's newest, then from its own.
        let own = root.path().join("new/checkpoints");
        assert_eq!(ResumeFrom::start(Some(&from), &own).unwrap(), Some(newest));
        std::fs::create_dir_all(own.join("step-000005")).unwrap();
        std::fs::write(own.join("step-000005").join(TRAINER_STATE_FILE), "{}").unwrap();
        assert_eq!(
            ResumeFrom::start(Some(&from), &own).unwrap(),
            Some(own.join("step-000005"))
        );
        // A named checkpoint always wins, and its run directory is found above it.
        let named = dir.join("checkpoints/step-000002");
        let mut c = cli(&["--resume", named.to_str().unwrap()]);
        resolve_resume(&mut c, "sft").unwrap();
        assert_eq!(c.output.as_deref(), Some(dir.as_path()));
        let from = ResumeFrom::of(&named).unwrap();
        assert_eq!(ResumeFrom::start(Some(&from), &own).unwrap(), Some(named));
    }

    #[test]
    fn refusals_name_the_reason() {
        let root = tempfile::tempdir().unwrap();
        let sft = run_dir(root.path(), "sft", &["step-000001"]);
        let err = |args: &[&str], recipe: &str| {
            resolve_resume(&mut cli(args), recipe)
                .unwrap_err()
                .to_string()
        };
        let s = sft.to_str().unwrap();
        assert!(err(&["--resume", s], "grade").contains("grade does not resume"));
        assert!(err(&["--resume", s], "qwen25-math-rl").contains("a run of `sft`"));
        let empty = run_dir(root.path(), "rm-retraining", &[]);
        let e = err(&["--resume", empty.to_str().unwrap()], "rm-retraining");
        assert!(e.contains("no complete checkpoint"), "{e}");
        let pipeline = run_dir(root.path(), "pipeline", &[]);
        let p = pipeline.to_str().unwrap();
        let e = err(&["--resume", p, "--output", "/elsewhere"], "pipeline");
        assert!(e.contains("resumes in its own run directory"), "{e}");
        let mut c = cli(&["--resume", p]);
        resolve_resume(&mut c, "pipeline").unwrap();
        assert_eq!(c.output.as_deref(), Some(pipeline.as_path()));
        let e = err(&["--resume", root.path().to_str().unwrap()], "sft");
        assert!(
            e.contains("not a run directory") || e.contains("is a run directory"),
            "{e}"
        );
        assert!(err(&["--resume", "/no/such/dir"], "sft").contains("no such directory"));
    }
}
