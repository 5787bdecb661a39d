//! Greedy accuracy of a policy on questions with gold answers: the before/after figure of the RL
//! recipe and of the bootstrap.

use anyhow::Result;
use mathrl::data::QaRecord;
use mathrl::{Policy, Tokenizer};
use mathrl_rewards::Verifier;
use serde::Serialize;

use crate::eval::{evaluate, EvalMode};

/// Correct answers out of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracy {
    /// Share of correct answers in [0, 1].
    pub accuracy: f64,
    /// Questions asked.
    pub n: usize,
}

/// Answers each question in `mode` (greedy CoT, or greedy TIR with its tool) and checks it with
/// `verifier`: the eval runner on questions of no named data set, all in one batch.
pub fn greedy_accuracy(
    policy: &Policy,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    verifier: &dyn Verifier,
    mode: &EvalMode,
) -> Result<Accuracy> {
    let eval_items: Vec<QaRecord> = items
        .iter()
        .enumerate()
        .map(|(i, item)| QaRecord {
            dataset: None,
            line: i + 1,
            ..item.clone()
        })
        .collect();
    let mut mode = mode.clone();
    mode.questions_per_batch = items.len().max(1);
    let result = evaluate(policy, tokenizer, &eval_items, &mode, verifier, None)?;
    Ok(Accuracy {
        accuracy: result.accuracy,
        n: result.n,
    })
}
