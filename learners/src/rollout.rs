//! What the GRPO learner consumes: groups of sampled completions (the core crate's [`Group`])
//! with the rewards the reward actors gave them.

use mathrl::types::Group;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One prompt's group of completions with their rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredGroup {
    /// The prompt, its G completions and the policy version that sampled them.
    pub group: Group,
    /// One reward per completion, in completion order.
    pub rewards: Vec<f32>,
    /// The answer checker's verdict per completion, when there is one (for the accuracy metric).
    pub verdicts: Option<Vec<bool>>,
}

/// How many policy versions `group` lags behind `version`, the version of the weights a learner
/// step starts from: 0 for a group those weights sampled. A policy version is a learner step
/// (skipped ones included), not an optimiser update: a step makes μ of those. The learner's
/// `train/policy_lag_max`, the coordinator's stale-group check and its `policy/lag_*` metrics
/// all measure lag with this one function.
pub fn policy_lag(group: &Group, version: u64) -> u64 {
    version.saturating_sub(group.policy_version)
}

/// The groups of one learner step, owned (they come from other actors, possibly other nodes).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RolloutBatch {
    /// The groups; the report's recipe uses 128 prompts per step with 32 completions each.
    pub groups: Vec<ScoredGroup>,
}

impl RolloutBatch {
    /// Number of completions over all groups.
    pub fn num_completions(&self) -> usize {
        self.groups.iter().map(|g| g.group.completions.len()).sum()
    }

    /// Checks that every group is consistent and that token ids are below `vocab_size`; errors
    /// name the group and completion.
    pub fn validate(&self, vocab_size: usize) -> Result<()> {
        let bad = |g: usize, what: String| Err(Error::Input(format!("rollout group {g}: {what}")));
        for (g, scored) in self.groups.iter().enumerate() {
            let group = &scored.group;
            if group.prompt_ids.is_empty() {
                return bad(g, "empty prompt".into());
            }
            if let Some(&id) = group
                .prompt_ids
                .iter()
                .find(|&&id| id as usize >= vocab_size)
            {
                return bad(
                    g,
                    format!("prompt token id {id} is outside the vocabulary of {vocab_size}"),
                );
            }
            let n = group.completions.len();
            if n == 0 {
                return bad(g, "no completions".into());
            }
            if scored.rewards.len() != n {
                return bad(
                    g,
                    format!("{} rewards for {n} completions", scored.rewards.len()),
                );
            }
            if let Some(v) = &scored.verdicts {
                if v.len() != n {
                    return bad(g, format!("{} verdicts for {n} completions", v.len()));
                }
            }
            for (c, completion) in group.completions.iter().enumerate() {
                let len = completion.token_ids.len();
                if completion.logprobs.len() != len || completion.tool_mask.len() != len {
                    return bad(
                        g,
                        format!(
                            "completion {c} has {len} tokens but {} log-probs and {} tool-mask \
                             entries",
                            completion.logprobs.len(),
                            completion.tool_mask.len()
                        ),
                    );
                }
                if let Some(&id) = completion
                    .token_ids
                    .iter()
                    .find(|&&id| id as usize >= vocab_size)
                {
                    return bad(
                        g,
                        format!(
                            "completion {c}: token id {id} is outside the vocabulary of \
                             {vocab_size}"
                        ),
                    );
                }
                let missing = completion
                    .logprobs
                    .iter()
                    .zip(&completion.tool_mask)
                    .position(|(lp, &tool)| !tool && !lp.is_some_and(f32::is_finite));
                if let Some(t) = missing {
                    return bad(
                        g,
                        format!(
                            "completion {c}: sampled token {t} has no finite behaviour log-prob \
                             ({:?})",
                            completion.logprobs[t]
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrl::types::{Completion, CompletionTiming, FinishReason};

    pub(crate) fn completion(ids: &[u32], tool: &[bool]) -> Completion {
        Completion {
            sample_index: 0,
            token_ids: ids.to_vec(),
            logprobs: tool.iter().map(|&t| (!t).then_some(-1.0)).collect(),
            tool_mask: tool.to_vec(),
            finish_reason: FinishReason::Length,
            tool_calls: 0,
            tool_errors: 0,
            tool_ms: 0.0,
            text: None,
            timing: CompletionTiming::default(),
        }
    }

    fn batch() -> RolloutBatch {
        RolloutBatch {
            groups: vec![ScoredGroup {
                group: Group {
                    prompt_index: 0,
                    prompt_ids: vec![1, 2],
                    completions: vec![
                        completion(&[3, 4], &[false, true]),
                        completion(&[5], &[false]),
                    ],
                    policy_version: 0,
                },
                rewards: vec![1.0, 0.0],
                verdicts: None,
            }],
        }
    }

    #[test]
    fn a_consistent_batch_passes_and_errors_name_the_culprit() {
        let b = batch();
        b.validate(10).unwrap();
        assert_eq!(b.num_completions(), 2);
        let err = b.validate(5).unwrap_err().to_string();
        assert!(
            err.contains("group 0") && err.contains("token id 5"),
            "{err}"
        );

        let mut missing = batch();
        missing.groups[0].group.completions[1].logprobs[0] = None;
        let err = missing.validate(10).unwrap_err().to_string();
        assert!(
            err.contains("completion 1") && err.contains("log-prob"),
            "{err}"
        );

        let mut short = batch();
        short.groups[0].rewards.pop();
        assert!(short
            .validate(10)
            .unwrap_err()
            .to_string()
            .contains("1 rewards"));
    }
}
