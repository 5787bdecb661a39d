//! Greedy accuracy of a policy on (question, gold) pairs: the before/after figure of the RL
//! recipe and of the bootstrap.

use anyhow::Result;
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::{Policy, Tokenizer};
use mathrl_rewards::Verifier;
use serde::Serialize;

/// One question with its gold answer.
#[derive(Debug, Clone)]
pub struct QaItem {
    /// The question (user turn).
    pub question: String,
    /// The gold answer, as the data set stores it.
    pub gold: String,
}

/// Correct answers out of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracy {
    /// Share of correct answers in [0, 1].
    pub accuracy: f64,
    /// Questions asked.
    pub n: usize,
}

/// Answers each question greedily (chat template, no system prompt) and checks it with `verifier`.
pub fn greedy_accuracy(
    policy: &Policy,
    tokenizer: &Tokenizer,
    items: &[QaItem],
    verifier: &dyn Verifier,
    max_new_tokens: usize,
) -> Result<Accuracy> {
    if items.is_empty() {
        return Ok(Accuracy {
            accuracy: 0.0,
            n: 0,
        });
    }
    let prompts = items
        .iter()
        .map(|item| Ok(tokenizer.encode(&tokenizer.question_prompt(&item.question, None)?)?))
        .collect::<Result<Vec<_>>>()?;
    let frozen = policy.frozen_copy()?;
    let mut engine =
        Engine::from_policy(&frozen, EngineConfig::default()).with_tokenizer(tokenizer.clone());
    let out = engine.generate(&prompts, &SamplingParams::greedy(max_new_tokens))?;
    let mut correct = 0usize;
    for (group, item) in out.groups.iter().zip(items) {
        let completion = &group.completions[0];
        let text = match &completion.text {
            Some(text) => text.clone(),
            None => tokenizer.decode(&completion.token_ids, true)?,
        };
        correct += usize::from(verifier.verify(&text, &item.gold, None).is_correct());
    }
    Ok(Accuracy {
        accuracy: correct as f64 / items.len() as f64,
        n: items.len(),
    })
}
