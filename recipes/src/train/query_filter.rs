//! The report's query filter before RL: sample k responses per query with the starting policy and
//! keep the queries it answers correctly neither never nor always (2 to 5 of 8 in the report), so
//! that every kept group has reward variance to learn from.

use anyhow::Result;
use mathrl::data::QaRecord;
use mathrl::generation::SamplingParams;
use mathrl::{Policy, Tokenizer};
use mathrl_rewards::Verifier;
use serde::{Deserialize, Serialize};

use crate::train::reasoning::Reasoning;

/// Settings of the query filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryFilterConfig {
    /// Run the filter (off by default: it costs k samples per query).
    pub enabled: bool,
    /// Responses sampled per query (the report's 8).
    pub samples: usize,
    /// Fewest correct responses a kept query has.
    pub min_correct: usize,
    /// Most correct responses a kept query has.
    pub max_correct: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Longest response in tokens.
    pub max_new_tokens: usize,
    /// Queries examined (the head of the prompt set), 0 = all.
    pub max_queries: usize,
}

impl Default for QueryFilterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            samples: 8,
            min_correct: 2,
            max_correct: 5,
            temperature: 1.0,
            max_new_tokens: 1024,
            max_queries: 0,
        }
    }
}

impl QueryFilterConfig {
    /// Checks the ranges when the filter is on; the error names the key. A window no count can
    /// fall in would drop every query, which the run would only find out after sampling them.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.samples == 0 || self.max_new_tokens == 0 {
            return Err("samples and max_new_tokens must be at least 1".into());
        }
        if self.min_correct > self.max_correct || self.min_correct > self.samples {
            return Err(format!(
                "min_correct ({}) must be at most max_correct ({}) and samples ({})",
                self.min_correct, self.max_correct, self.samples
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("temperature must be > 0, not {}", self.temperature));
        }
        Ok(())
    }
}

/// The queries of `items` whose correct-response count lies in `[min_correct, max_correct]`.
pub fn filter_queries(
    policy: &Policy,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    verifier: &dyn Verifier,
    config: &QueryFilterConfig,
    reasoning: &Reasoning,
    seed: u64,
) -> Result<Vec<QaRecord>> {
    let examined = if config.max_queries == 0 {
        items.len()
    } else {
        config.max_queries.min(items.len())
    };
    let frozen = policy.frozen_copy()?;
    let mut engine = reasoning.engine(&frozen, tokenizer);
    let mut kept = Vec::new();
    for (chunk_index, chunk) in items[..examined].chunks(64).enumerate() {
        let prompts = chunk
            .iter()
            .map(|item| reasoning.prompt_ids(tokenizer, &item.question))
            .collect::<Result<Vec<_>>>()?;
        let params = SamplingParams {
            n: config.samples,
            temperature: config.temperature,
            max_new_tokens: config.max_new_tokens,
            seed: seed.wrapping_add(chunk_index as u64),
            ..SamplingParams::default()
        };
        let out = engine.generate(&prompts, &params)?;
        for (group, item) in out.groups.iter().zip(chunk) {
            let mut correct = 0;
            for completion in &group.completions {
                let text = tokenizer.decode(&completion.token_ids, true)?;
                correct += usize::from(
                    verifier
                        .verify(&text, item.gold_or_empty(), None)
                        .is_correct(),
                );
            }
            if (config.min_correct..=config.max_correct).contains(&correct) {
                kept.push(item.clone());
            }
        }
    }
    tracing::info!(kept = kept.len(), examined, "query filter");
    Ok(kept)
}
