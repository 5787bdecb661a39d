//! What the coordinator measures and reports per step: queue depths, throughput, utilisation,
//! policy lag, faults and timings as metrics; each trained step as a [`StepRecord`]; and every
//! few steps some completions as text, so a reader of TensorBoard sees what the policy writes.

use std::time::{Duration, Instant};

use mathrl::types::Group;
use mathrl_learners::{policy_lag, GrpoStepReport};

use super::step::OpenStep;
use super::Coordinator;
use crate::event::Role;
use crate::report::{GroupRecord, StepRecord};

/// Counters since the last step was logged, for per-step utilisation figures.
#[derive(Default)]
pub(super) struct Window {
    pub(super) rollout_busy: Duration,
    pub(super) reward_busy: Duration,
    pub(super) max_rollout_queue: usize,
    pub(super) max_reward_queue: usize,
}

/// The tool metrics of a step's groups: `rollout/tool_calls_mean`, tool calls per completion;
/// `rollout/tool_errors`, the step's total of calls whose output is not an execution success
/// (an error, a timeout, a truncated output); `rollout/tool_seconds`, the step's total seconds in
/// tool calls (summed over completions, so it can exceed the step's wall time when they overlap).
pub(super) fn tool_metrics(groups: &[&Group]) -> [(&'static str, f64); 3] {
    let completions = groups.iter().flat_map(|g| &g.completions);
    let (mut n, mut calls, mut errors, mut ms) = (0usize, 0usize, 0usize, 0.0f64);
    for c in completions {
        n += 1;
        calls += c.tool_calls;
        errors += c.tool_errors;
        ms += c.tool_ms;
    }
    [
        ("rollout/tool_calls_mean", calls as f64 / n.max(1) as f64),
        ("rollout/tool_errors", errors as f64),
        ("rollout/tool_seconds", ms / 1e3),
    ]
}

impl Coordinator<'_> {
    /// Queue depths when `step` goes to the learner.
    pub(super) fn log_queues(&self, step: u64) {
        self.metrics.scalars(
            step,
            &[
                (
                    "queue/rollout_depth_max",
                    self.window.max_rollout_queue as f64,
                ),
                (
                    "queue/reward_depth_max",
                    self.window.max_reward_queue as f64,
                ),
                ("queue/open_steps", self.open.len() as f64),
            ],
        );
    }

    /// The metrics of a trained step; starts the next window. Returns the step's sampled tokens
    /// per second and wall seconds.
    pub(super) fn log_step(
        &mut self,
        step: u64,
        open: &OpenStep,
        learner_time: Duration,
    ) -> (f64, f64) {
        let now = Instant::now();
        let wall = now
            .duration_since(self.window_start)
            .as_secs_f64()
            .max(1e-9);
        let rollout_wall = open
            .generated_at
            .unwrap_or(now)
            .duration_since(open.opened_at)
            .as_secs_f64()
            .max(1e-9);
        let groups: Vec<&Group> = open.groups.iter().flatten().collect();
        // Step s started from policy version s − 1 (the learner measures lag the same way).
        let lags: Vec<f64> = groups
            .iter()
            .map(|g| policy_lag(g, step - 1) as f64)
            .collect();
        let n = groups.len().max(1) as f64;
        let window = std::mem::take(&mut self.window);
        self.metrics.scalars(
            step,
            &[
                (
                    "rollout/tokens_per_second",
                    open.sampled_tokens as f64 / rollout_wall,
                ),
                ("rollout/sampled_tokens", open.sampled_tokens as f64),
                (
                    "rollout/busy_fraction",
                    window.rollout_busy.as_secs_f64()
                        / (wall * self.workers.pool_size(Role::Rollout) as f64),
                ),
                (
                    "reward/busy_fraction",
                    window.reward_busy.as_secs_f64()
                        / (wall * self.workers.pool_size(Role::Reward) as f64),
                ),
                ("policy/lag_mean", lags.iter().sum::<f64>() / n),
                ("policy/lag_max", lags.iter().cloned().fold(0.0, f64::max)),
                ("weights/checksum_match", open.checksum_matches as f64 / n),
                ("faults/failures", self.report.failures as f64),
                ("faults/restarts", self.report.restarts as f64),
                (
                    "faults/unscored",
                    (self.report.unscored_total() + open.unscored.len()) as f64,
                ),
                (
                    "faults/dropped_stale_groups",
                    self.report.dropped_stale_groups as f64,
                ),
                ("time/learner_seconds", learner_time.as_secs_f64()),
                ("time/step_seconds", wall),
            ],
        );
        if self.tool_metrics {
            self.metrics.scalars(step, &tool_metrics(&groups));
        }
        self.window_start = now;
        self.report.rollout_busy_seconds += window.rollout_busy.as_secs_f64();
        (open.sampled_tokens as f64 / rollout_wall, wall)
    }

    /// Keeps the record of a trained step (and every `sample_text_every` steps its sample text).
    pub(super) fn record_step(&mut self, step: u64, open: OpenStep, learner: GrpoStepReport) {
        let every = self.config.sample_text_every;
        if step.checked_rem(every) == Some(0) {
            self.metrics
                .text("samples/completions", step, &self.sample_text(&open));
        }
        let labels: Vec<String> = open
            .generated_by
            .iter()
            .map(|w| w.map(|w| self.workers.label(w)).unwrap_or_default())
            .collect();
        let groups = open
            .groups
            .into_iter()
            .zip(labels)
            .zip(open.outputs)
            .zip(&open.prompts)
            .map(|(((group, worker), outputs), &p)| {
                let group = group.expect("a trained step has every group");
                GroupRecord {
                    prompt_id: self.prompts[p].record.id.clone(),
                    policy_version: group.policy_version,
                    worker,
                    rewards: outputs.iter().flatten().map(|o| o.reward).collect(),
                }
            })
            .collect();
        self.report.step_records.push(StepRecord {
            step,
            groups,
            unscored: open.unscored,
            learner,
        });
    }

    /// Markdown with the first completion of the step's first groups, their rewards and
    /// versions.
    fn sample_text(&self, open: &OpenStep) -> String {
        let mut text = String::new();
        let shown = open
            .groups
            .iter()
            .zip(&open.outputs)
            .zip(&open.prompts)
            .take(self.config.sample_text_completions);
        for ((group, outputs), &p) in shown {
            let (Some(group), Some(Some(output))) = (group, outputs.first()) else {
                continue;
            };
            let record = &self.prompts[p].record;
            let response = group
                .completions
                .first()
                .and_then(|c| c.text.as_deref())
                .unwrap_or_default();
            text.push_str(&format!(
                "**{}** (reward {:.3}, policy version {}, gold {})\n\n    {}\n\n    → {}\n\n",
                record.id,
                output.reward,
                group.policy_version,
                record.gold.as_deref().unwrap_or("-"),
                record.question.replace('\n', "\n    "),
                response.replace('\n', "\n    "),
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use mathrl::types::{Completion, FinishReason};

    use super::*;

    #[test]
    fn tool_metrics_average_the_calls_and_total_the_errors_and_seconds() {
        let completion = |calls: usize, errors: usize, ms: f64| Completion {
            tool_calls: calls,
            tool_errors: errors,
            tool_ms: ms,
            ..Completion::sampled(0, vec![1], -1.0, FinishReason::StopToken)
        };
        let group = |completions: Vec<Completion>| Group {
            prompt_index: 0,
            prompt_ids: vec![1],
            completions,
            policy_version: 0,
        };
        let a = group(vec![completion(2, 1, 500.0), completion(0, 0, 0.0)]);
        let b = group(vec![completion(1, 1, 1500.0), completion(1, 0, 250.0)]);
        assert_eq!(
            tool_metrics(&[&a, &b]),
            [
                ("rollout/tool_calls_mean", 1.0),
                ("rollout/tool_errors", 2.0),
                ("rollout/tool_seconds", 2.25),
            ]
        );
        assert_eq!(tool_metrics(&[])[0], ("rollout/tool_calls_mean", 0.0));
    }
}
