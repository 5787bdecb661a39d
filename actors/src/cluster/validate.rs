//! The coordinator's checks on what a remote worker sends back, before it accepts the result.
//!
//! A local actor runs this process's own code on weights it reads from the board; a remote worker
//! is another program on another machine, and whatever it sends goes into the learner's batch.
//! An out-of-vocabulary token id would index past the embedding, a NaN log-prob or reward would
//! turn the whole step's loss into NaN, and a group claiming weights it was not sent would be
//! trained as if on-policy. Each of these is a [`Rejection`]: the job failed and the worker is at
//! fault (the coordinator re-issues the job and counts the worker; see `coordinator::jobs`).

use mathrl_rewards::RewardOutput;

use super::protocol::GenerateReply;
use crate::rollout::RolloutJob;

/// Why a remote result was refused; each names the completion (and token) at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The group is for another prompt.
    #[error("the group's prompt is not the job's")]
    WrongPrompt,
    /// Not as many completions as the group size asked for.
    #[error("{got} completions for a group of {asked}")]
    CompletionCount {
        /// Completions in the group.
        got: usize,
        /// The group size of the job.
        asked: usize,
    },
    /// Token ids, log-probs and mask entries of a completion differ in number.
    #[error(
        "completion {completion}: {tokens} token ids, {logprobs} log-probs, {mask} mask entries"
    )]
    Lengths {
        /// Index of the completion in its group.
        completion: usize,
        /// Its token ids.
        tokens: usize,
        /// Its log-probs.
        logprobs: usize,
        /// Its tool-mask entries.
        mask: usize,
    },
    /// A token id the policy cannot have sampled.
    #[error(
        "completion {completion}, token {position}: id {id} is outside the vocabulary of \
         {vocab_size} tokens"
    )]
    OutOfVocabulary {
        /// Index of the completion in its group.
        completion: usize,
        /// Position of the token in the completion.
        position: usize,
        /// The token id.
        id: u32,
        /// The policy's vocabulary size.
        vocab_size: usize,
    },
    /// A token marked as tool output carries a log-prob: the policy did not sample it, and the
    /// learner must not train on it as if it had.
    #[error(
        "completion {completion}, token {position}: a tool-output token has a log-prob (tool \
         tokens are not sampled)"
    )]
    ToolTokenWithLogProb {
        /// Index of the completion in its group.
        completion: usize,
        /// Position of the token in the completion.
        position: usize,
    },
    /// A sampled token (tool mask unset) has no log-prob: its behaviour probability is missing.
    #[error(
        "completion {completion}, token {position}: a sampled token has no log-prob (only \
         tool-output tokens may lack one)"
    )]
    SampledTokenWithoutLogProb {
        /// Index of the completion in its group.
        completion: usize,
        /// Position of the token in the completion.
        position: usize,
    },
    /// A log-prob that is NaN or infinite.
    #[error("completion {completion}, token {position}: log-prob {value} is not finite")]
    LogProb {
        /// Index of the completion in its group.
        completion: usize,
        /// Position of the token in the completion.
        position: usize,
        /// The value.
        value: f32,
    },
    /// The group claims another policy version than the weights the worker was sent.
    #[error("the group claims policy version {claimed}, but the worker was sent version {sent}")]
    PolicyVersion {
        /// The version stamped on the group.
        claimed: u64,
        /// The version the coordinator sent for this job.
        sent: u64,
    },
    /// The worker held other weights than those the coordinator sent.
    #[error(
        "weights checksum {claimed:016x}, but the worker was sent {sent:016x} (policy version \
         {version})"
    )]
    WeightsChecksum {
        /// The checksum the worker reported.
        claimed: u64,
        /// The checksum of the weights sent.
        sent: u64,
        /// Their policy version.
        version: u64,
    },
    /// Not one reward output per completion.
    #[error("{got} reward outputs for {asked} completions")]
    OutputCount {
        /// Outputs in the reply.
        got: usize,
        /// Completions in the job.
        asked: usize,
    },
    /// A reward (or its RM score) that is NaN or infinite.
    #[error("completion {completion} of the batch: {what} {value} is not finite")]
    Reward {
        /// Index of the completion in the job's batch.
        completion: usize,
        /// `reward` or `RM score`.
        what: &'static str,
        /// The value.
        value: f32,
    },
}

/// What a rollout result must agree with: the job, the policy's vocabulary, and the weights
/// (policy version, checksum) the coordinator sent the worker for this job.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The job sent.
    pub job: &'a RolloutJob,
    /// The policy's vocabulary size.
    pub vocab_size: usize,
    /// The policy version of the weights the worker holds for this job.
    pub version: u64,
    /// Their XXH3 checksum.
    pub checksum: u64,
}

/// Checks a generated group against what was asked for and sent; the first fault found.
pub fn check_group(expected: &Expected<'_>, reply: &GenerateReply) -> Result<(), Rejection> {
    let group = &reply.group;
    if group.policy_version != expected.version {
        return Err(Rejection::PolicyVersion {
            claimed: group.policy_version,
            sent: expected.version,
        });
    }
    if reply.weights_checksum != expected.checksum {
        return Err(Rejection::WeightsChecksum {
            claimed: reply.weights_checksum,
            sent: expected.checksum,
            version: expected.version,
        });
    }
    if group.prompt_ids != expected.job.prompt_ids {
        return Err(Rejection::WrongPrompt);
    }
    if group.completions.len() != expected.job.params.n {
        return Err(Rejection::CompletionCount {
            got: group.completions.len(),
            asked: expected.job.params.n,
        });
    }
    for (completion, c) in group.completions.iter().enumerate() {
        if c.logprobs.len() != c.token_ids.len() || c.tool_mask.len() != c.token_ids.len() {
            return Err(Rejection::Lengths {
                completion,
                tokens: c.token_ids.len(),
                logprobs: c.logprobs.len(),
                mask: c.tool_mask.len(),
            });
        }
        if let Some((position, &id)) = c
            .token_ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= expected.vocab_size)
        {
            return Err(Rejection::OutOfVocabulary {
                completion,
                position,
                id,
                vocab_size: expected.vocab_size,
            });
        }
        // A tool-output token (tool mask set) was not sampled: it has no log-prob, and every
        // sampled token has one.
        if let Some((position, &tool)) = c
            .logprobs
            .iter()
            .zip(&c.tool_mask)
            .enumerate()
            .find(|(_, (logprob, &tool))| logprob.is_some() == tool)
            .map(|(i, (_, tool))| (i, tool))
        {
            return Err(if tool {
                Rejection::ToolTokenWithLogProb {
                    completion,
                    position,
                }
            } else {
                Rejection::SampledTokenWithoutLogProb {
                    completion,
                    position,
                }
            });
        }
        if let Some((position, value)) = c
            .logprobs
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.filter(|v| !v.is_finite()).map(|v| (i, v)))
        {
            return Err(Rejection::LogProb {
                completion,
                position,
                value,
            });
        }
    }
    Ok(())
}

/// Checks a scored batch of `asked` completions: one output each, finite rewards and RM scores.
pub fn check_scores(asked: usize, outputs: &[RewardOutput]) -> Result<(), Rejection> {
    if outputs.len() != asked {
        return Err(Rejection::OutputCount {
            got: outputs.len(),
            asked,
        });
    }
    for (completion, output) in outputs.iter().enumerate() {
        if !output.reward.is_finite() {
            return Err(Rejection::Reward {
                completion,
                what: "reward",
                value: output.reward,
            });
        }
        if let Some(score) = output.rm_score.filter(|s| !s.is_finite()) {
            return Err(Rejection::Reward {
                completion,
                what: "RM score",
                value: score,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrl::generation::SamplingParams;
    use mathrl::types::{Completion, CompletionTiming, FinishReason, Group};

    const VOCAB: usize = 100;
    const VERSION: u64 = 4;
    const CHECKSUM: u64 = 0xfeed;

    fn job(n: usize) -> RolloutJob {
        RolloutJob {
            job_id: 1,
            prompt_ids: vec![1, 2],
            params: SamplingParams {
                n,
                ..SamplingParams::default()
            },
        }
    }

    fn expected(job: &RolloutJob) -> Expected<'_> {
        Expected {
            job,
            vocab_size: VOCAB,
            version: VERSION,
            checksum: CHECKSUM,
        }
    }

    /// A group of `n` clean completions of 3 tokens, the last a tool-output token.
    fn reply(n: usize) -> GenerateReply {
        let completion = Completion {
            sample_index: 0,
            token_ids: vec![3, 4, (VOCAB - 1) as u32],
            logprobs: vec![Some(-0.5), Some(-1.0), None],
            tool_mask: vec![false, false, true],
            finish_reason: FinishReason::Length,
            tool_calls: 0,
            tool_errors: 0,
            tool_ms: 0.0,
            text: None,
            timing: CompletionTiming::default(),
        };
        GenerateReply {
            group: Group {
                prompt_index: 0,
                prompt_ids: vec![1, 2],
                completions: vec![completion; n],
                policy_version: VERSION,
            },
            weights_checksum: CHECKSUM,
            busy_seconds: 0.1,
        }
    }

    fn rejection(reply: &GenerateReply) -> Rejection {
        let job = job(2);
        check_group(&expected(&job), reply).unwrap_err()
    }

    #[test]
    fn a_clean_group_passes() {
        let job = job(2);
        assert_eq!(check_group(&expected(&job), &reply(2)), Ok(()));
    }

    #[test]
    fn a_token_outside_the_vocabulary_is_refused_with_its_place() {
        let mut bad = reply(2);
        bad.group.completions[1].token_ids[2] = VOCAB as u32;
        let err = rejection(&bad);
        assert_eq!(
            err,
            Rejection::OutOfVocabulary {
                completion: 1,
                position: 2,
                id: VOCAB as u32,
                vocab_size: VOCAB,
            }
        );
        assert!(err.to_string().contains("completion 1, token 2"), "{err}");
    }

    #[test]
    fn non_finite_log_probs_are_refused() {
        for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut bad = reply(2);
            bad.group.completions[0].logprobs[1] = Some(value);
            match rejection(&bad) {
                Rejection::LogProb {
                    completion: 0,
                    position: 1,
                    value: v,
                } => assert_eq!(v.to_bits(), value.to_bits()),
                other => panic!("{value}: {other:?}"),
            }
        }
    }

    #[test]
    fn tool_tokens_have_no_log_prob_and_sampled_tokens_have_one() {
        let mut bad = reply(2);
        bad.group.completions[1].logprobs[2] = Some(-0.1);
        let err = rejection(&bad);
        assert_eq!(
            err,
            Rejection::ToolTokenWithLogProb {
                completion: 1,
                position: 2
            }
        );
        assert!(
            err.to_string().contains("tool-output token has a log-prob"),
            "{err}"
        );
        let mut bad = reply(2);
        bad.group.completions[0].logprobs[1] = None;
        let err = rejection(&bad);
        assert_eq!(
            err,
            Rejection::SampledTokenWithoutLogProb {
                completion: 0,
                position: 1
            }
        );
        assert!(err.to_string().contains("completion 0, token 1"), "{err}");
    }

    #[test]
    fn lengths_must_agree_within_each_completion_and_with_the_group_size() {
        let mut bad = reply(2);
        bad.group.completions[1].logprobs.pop();
        assert!(matches!(
            rejection(&bad),
            Rejection::Lengths {
                completion: 1,
                tokens: 3,
                logprobs: 2,
                mask: 3
            }
        ));
        let mut bad = reply(2);
        bad.group.completions[0].tool_mask.push(false);
        assert!(matches!(
            rejection(&bad),
            Rejection::Lengths { mask: 4, .. }
        ));
        assert_eq!(
            rejection(&reply(3)),
            Rejection::CompletionCount { got: 3, asked: 2 }
        );
        let mut bad = reply(2);
        bad.group.prompt_ids = vec![9];
        assert_eq!(rejection(&bad), Rejection::WrongPrompt);
    }

    #[test]
    fn the_version_and_checksum_must_be_those_sent_for_the_job() {
        let mut bad = reply(2);
        bad.group.policy_version = VERSION + 1;
        assert_eq!(
            rejection(&bad),
            Rejection::PolicyVersion {
                claimed: VERSION + 1,
                sent: VERSION
            }
        );
        let mut bad = reply(2);
        bad.weights_checksum = CHECKSUM ^ 1;
        assert_eq!(
            rejection(&bad),
            Rejection::WeightsChecksum {
                claimed: CHECKSUM ^ 1,
                sent: CHECKSUM,
                version: VERSION
            }
        );
    }

    fn output(reward: f32, rm_score: Option<f32>) -> RewardOutput {
        RewardOutput {
            reward,
            verdict: None,
            rm_score,
        }
    }

    #[test]
    fn scores_must_be_finite_and_one_per_completion() {
        assert_eq!(
            check_scores(2, &[output(1.0, Some(0.5)), output(0.0, None)]),
            Ok(())
        );
        assert_eq!(
            check_scores(2, &[output(1.0, None)]),
            Err(Rejection::OutputCount { got: 1, asked: 2 })
        );
        let err = check_scores(2, &[output(1.0, None), output(f32::NAN, None)]).unwrap_err();
        assert!(
            matches!(
                err,
                Rejection::Reward {
                    completion: 1,
                    what: "reward",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = check_scores(1, &[output(0.0, Some(f32::INFINITY))]).unwrap_err();
        assert!(
            matches!(
                err,
                Rejection::Reward {
                    completion: 0,
                    what: "RM score",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
