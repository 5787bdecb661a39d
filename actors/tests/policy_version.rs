//! One policy version through the actors: with two optimiser updates per learner step (μ = 2)
//! and a skipped step, groups are stamped, checked and measured in learner steps, and the
//! learner's lag metric agrees with the coordinator's.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use common::{config, prompts, tiny_policy, tokenizer};
use mathrl::metrics::MemorySink;
use mathrl::model::Trainable;
use mathrl::Metrics;
use mathrl_actors::Trainer;
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule};
use mathrl_rewards::{RewardFunction, RewardInput, RewardOutput};

/// Completions per step in [`config`]: 4 prompts × 3.
const COMPLETIONS_PER_STEP: usize = 12;

/// A reward that varies within a group (the response's bytes summed, mod 7), except for the
/// second step's completions, which all get 0.5: with zero-variance groups dropped, step 2 has
/// nothing to train on. On-policy, step 2's completions are scored only after all of step 1's.
#[derive(Default)]
struct FlatSecondStep {
    scored: AtomicUsize,
}

impl RewardFunction for FlatSecondStep {
    fn name(&self) -> &str {
        "byte-sum-flat-second-step"
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        let first = self.scored.fetch_add(inputs.len(), Ordering::SeqCst);
        Ok(inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let second_step = (first + i) / COMPLETIONS_PER_STEP == 1;
                RewardOutput {
                    reward: if second_step {
                        0.5
                    } else {
                        (input.response.bytes().map(u32::from).sum::<u32>() % 7) as f32
                    },
                    verdict: None,
                    rm_score: None,
                }
            })
            .collect())
    }
}

#[test]
fn groups_and_lag_metrics_count_learner_steps_not_optimiser_updates() -> Result<()> {
    let sink = MemorySink::new();
    let metrics = Metrics::new(sink.clone());
    let mut grpo = GrpoConfig::default();
    grpo.train_step.schedule = LrSchedule::constant(1e-3);
    grpo.micro_batch_size = 16;
    grpo.num_iterations = 2;
    grpo.filter_zero_variance_groups = true;
    // 3 completions of up to 6 tokens per prompt (12 a step): the trainer takes these from its
    // learner.
    grpo.rollout.group_size = 3;
    grpo.rollout.max_new_tokens = 6;
    let learner = GrpoLearner::new(tiny_policy(Trainable::Yes)?, None, grpo, metrics.clone())?;
    let reward = Arc::new(FlatSecondStep::default());
    let report =
        Trainer::new(config(3), learner, tokenizer()?, reward, metrics)?.run(prompts(6))?;

    assert_eq!(report.steps, 3);
    let updates: Vec<usize> = report
        .step_records
        .iter()
        .map(|r| r.learner.updates.len())
        .collect();
    assert_eq!(
        updates,
        vec![2, 0, 2],
        "step 2 is skipped, the others make μ = 2 updates"
    );
    for record in &report.step_records {
        let step = record.step;
        for group in &record.groups {
            assert_eq!(group.policy_version, step - 1, "step {step}: {group:?}");
        }
        assert_eq!(record.learner.policy_lag_max, 0, "step {step}");
    }
    for tag in ["train/policy_lag_max", "policy/lag_max", "policy/lag_mean"] {
        assert_eq!(
            sink.scalars(tag),
            vec![(1, 0.0), (2, 0.0), (3, 0.0)],
            "{tag}"
        );
    }
    Ok(())
}
