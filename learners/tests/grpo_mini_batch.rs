//! `grpo.mini_batch_size`: several optimiser updates per step, over mini-batches of whole groups,
//! on the tiny fixture policy.

mod common;

use anyhow::Result;
use common::{sample_groups, score, tiny_policy};
use mathrl::model::Trainable;
use mathrl::Metrics;
use mathrl_learners::{
    GrpoConfig, GrpoLearner, LossAggregation, LrSchedule, OldLogprobs, Optimizer, RolloutBatch,
    SeededRng,
};

const PROMPTS: [&[u32]; 4] = [&[5, 17, 42], &[9, 3, 250, 7], &[600, 12], &[33, 34, 35]];

/// 4 groups of 4 completions of at most 4 tokens, sampled from the initial policy.
fn batch(seed: u64) -> Result<RolloutBatch> {
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| p.to_vec()).collect();
    let sampler = tiny_policy(Trainable::No)?;
    let groups = sample_groups(&sampler, &prompts, 4, 4, 1.0, &mut SeededRng::new(seed))?;
    Ok(score(groups, |ids| ids.iter().sum::<u32>() as f32 / 1000.0))
}

fn config(mini_batch_size: usize, lr: f64) -> GrpoConfig {
    let mut c = GrpoConfig::default();
    c.loss.beta = 0.05;
    c.train_step.schedule = LrSchedule::constant(lr);
    c.micro_batch_size = 3;
    c.mini_batch_size = mini_batch_size;
    c
}

fn learner(config: GrpoConfig) -> Result<GrpoLearner> {
    Ok(GrpoLearner::new(
        tiny_policy(Trainable::Yes)?,
        None,
        config,
        Metrics::null(),
    )?)
}

fn weights(learner: &GrpoLearner) -> Result<Vec<f32>> {
    let mut all = Vec::new();
    for (_, t) in learner.policy().named_tensors() {
        all.extend(t.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(all)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn k_mini_batches_are_k_steps_on_their_parts() -> Result<()> {
    let batch = batch(9)?;
    for aggregation in [LossAggregation::Grpo, LossAggregation::Dapo] {
        // With the sampler's log-probs as π_old a mini-batch's update does not depend on the
        // updates before it through the ratio, so 2 mini-batches of 2 groups are the 2 steps
        // that feed the same halves one at a time.
        let with = |m: usize| {
            let mut c = config(m, 1e-2);
            c.old_logprobs = OldLogprobs::Behaviour;
            c.loss.aggregation = aggregation;
            c
        };
        let mut mini = learner(with(8))?;
        let report = mini.step(batch.clone())?;
        assert_eq!(report.updates.len(), 2, "{aggregation:?}");
        assert_eq!(mini.optimizer().step_count(), 2);
        assert_eq!(mini.policy_version(), 1);

        let mut parts = learner(with(0))?;
        for half in batch.groups.chunks(2) {
            let part = RolloutBatch {
                groups: half.to_vec(),
            };
            assert_eq!(parts.step(part)?.updates.len(), 1);
        }
        assert_eq!(parts.optimizer().step_count(), 2);
        // Every operation is the same in the same order: the weights are bit-identical.
        let (a, b) = (weights(&mini)?, weights(&parts)?);
        assert_eq!(max_diff(&a, &b), 0.0, "{aggregation:?}");

        // And differ from one update on the whole batch (the test can see a split).
        let mut whole = learner(with(0))?;
        let one = whole.step(batch.clone())?;
        assert_eq!(one.updates.len(), 1);
        assert!(max_diff(&a, &weights(&whole)?) > 1e-4, "{aggregation:?}");
    }
    Ok(())
}

#[test]
fn recomputed_old_logprobs_are_the_weights_before_the_step() -> Result<()> {
    let batch = batch(4)?;
    // One update over the whole step: π_old is the current policy, ρ = 1 exactly.
    let mut single = learner(config(0, 5e-2))?;
    let report = single.step(batch.clone())?;
    assert_eq!((report.ratio_mean, report.ratio_max), (1.0, 1.0));

    // Two mini-batches: the first update's ρ is 1; the second mini-batch's π_old is the
    // policy before the first update, so after it its ratio moves away from 1.
    let mut c = config(8, 5e-2);
    c.old_logprobs = OldLogprobs::Recompute;
    let mut mini = learner(c)?;
    let report = mini.step(batch)?;
    assert_eq!(report.updates.len(), 2);
    assert!(
        report.ratio_mean != 1.0 && report.ratio_max > 1.0 + 1e-3,
        "{report:?}"
    );
    // Drift is measured before the first update for every row (the sampler had the same
    // weights): after an update at this rate the second mini-batch's would be far larger.
    assert!(report.logprob_drift_max < 1e-4, "{report:?}");
    Ok(())
}

#[test]
fn a_step_makes_passes_times_mini_batches_updates_each_advancing_the_schedule() -> Result<()> {
    let batch = batch(2)?;
    for (mini_batch_size, num_iterations, updates) in [
        (4, 3, 12),
        // 3 groups, then the 4th: the remainder is a smaller mini-batch.
        (12, 2, 4),
        // As large as the step, or larger: one mini-batch.
        (16, 2, 2),
        (64, 1, 1),
    ] {
        let mut c = config(mini_batch_size, 1e-3);
        c.num_iterations = num_iterations;
        c.train_step.schedule.warmup_steps = 100;
        let mut learner = learner(c)?;
        let report = learner.step(batch.clone())?;
        let case = format!("mini_batch_size {mini_batch_size}, μ {num_iterations}");
        assert_eq!(report.updates.len(), updates, "{case}");
        assert_eq!(learner.optimizer().step_count(), updates as u64, "{case}");
        assert_eq!(learner.step_count(), 1, "{case}");
        // Warm-up: every update's learning rate is above the one before.
        let lrs: Vec<f64> = report.updates.iter().map(|u| u.lr).collect();
        assert!(lrs.windows(2).all(|w| w[1] > w[0]), "{case}: {lrs:?}");
        assert_eq!(report.learning_rate, *lrs.last().unwrap());
        let tokens: usize = batch
            .groups
            .iter()
            .flat_map(|g| g.group.completions.iter().map(|c| c.token_ids.len()))
            .sum();
        assert_eq!(report.trained_tokens, tokens, "{case}");
    }
    Ok(())
}

#[test]
fn a_mini_batch_size_that_does_not_fit_the_step_is_a_config_error() {
    let mut c = GrpoConfig::default();
    c.rollout.group_size = 4;
    for (m, ok) in [
        (0, true),
        (4, true),
        (8, true),
        (16, true),
        (64, true),
        (6, false),  // not whole groups
        (12, false), // does not divide 4 × 4
    ] {
        c.mini_batch_size = m;
        let result = c.validate_step_size(4);
        assert_eq!(result.is_ok(), ok, "{m}: {result:?}");
        if let Err(e) = result {
            assert!(e.to_string().starts_with("mini_batch_size: "), "{e}");
        }
    }
}
