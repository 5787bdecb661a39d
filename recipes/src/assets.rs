//! The embedded default: the tiny math policy and reward model shipped under `recipes/assets/`
//! (reproduced by the `tiny-bootstrap` recipe) and the procedural task they were trained on.

use std::path::PathBuf;

use mathrl::data::procedural::{Problem, ProceduralTask, Split, TaskConfig};

use crate::accuracy::QaItem;

/// Training problems the bootstrap used (SFT, then RM samples); RL prompts come after them.
pub const BOOTSTRAP_TRAIN_PROBLEMS: usize = 30_000 + 256;

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

/// (question, gold) pairs of a split of the default procedural task: `skip` then `take`.
pub fn procedural_items(split: Split, skip: usize, take: usize) -> mathrl::Result<Vec<QaItem>> {
    let task = ProceduralTask::new(TaskConfig::default())?;
    Ok(task.problems(split).skip(skip).take(take).map(|p: Problem| QaItem {
        question: p.question,
        gold: p.answer,
    }).collect())
}
