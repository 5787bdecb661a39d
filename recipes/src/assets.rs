//! The embedded default: the tiny math policy and reward model shipped under `recipes/assets/`
//! (reproduced by the `tiny-bootstrap` recipe) and the procedural task they were trained on.

use std::path::PathBuf;

use mathrl::data::procedural::{Problem, ProceduralTask, Split, TaskConfig};
use mathrl::data::QaRecord;

/// Training problems the bootstrap used (SFT, then RM samples); RL prompts come after them.
pub const BOOTSTRAP_TRAIN_PROBLEMS: usize = 30_000 + 768;

/// `recipes/assets`, or `$MATHRL_ASSETS` when set.
pub fn assets_dir() -> PathBuf {
    std::env::var_os("MATHRL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets"))
}

/// The shipped policy (Hugging Face layout, with its tokenizer).
pub fn default_policy_dir() -> PathBuf {
    assets_dir().join("tiny-math-policy")
}

/// The shipped reward model (Qwen2.5-Math-RM layout).
pub fn default_rm_dir() -> PathBuf {
    assets_dir().join("tiny-math-rm")
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
