//! One policy version: a learner step, skipped or not, whatever μ (the optimiser updates each
//! step makes). Groups are stamped with it and the lag metric subtracts from it.

mod common;

use anyhow::Result;
use common::{sample_groups, score, tiny_policy};
use mathrl::metrics::MemorySink;
use mathrl::model::Trainable;
use mathrl::Metrics;
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule, Optimizer, RolloutBatch, SeededRng};

/// A learner making two optimiser updates per step (μ = 2) that skips steps whose groups all
/// have equal rewards.
fn learner(sink: &MemorySink) -> Result<GrpoLearner> {
    let mut config = GrpoConfig::default();
    config.train_step.schedule = LrSchedule::constant(1e-3);
    config.num_iterations = 2;
    config.filter_zero_variance_groups = true;
    Ok(GrpoLearner::new(
        tiny_policy(Trainable::Yes)?,
        None,
        config,
        Metrics::new(sink.clone()),
    )?)
}

/// Groups sampled from the learner's policy, stamped with `version`; `flat` rewards every
/// completion alike, which leaves the step nothing to train on.
fn batch(
    learner: &GrpoLearner,
    version: u64,
    flat: bool,
    rng: &mut SeededRng,
) -> Result<RolloutBatch> {
    let prompts = [vec![5, 6, 7], vec![8, 9], vec![10, 11, 12]];
    let mut groups = sample_groups(learner.policy(), &prompts, 4, 3, 1.0, rng)?;
    for group in &mut groups {
        group.policy_version = version;
    }
    Ok(score(
        groups,
        |ids| {
            if flat {
                1.0
            } else {
                (ids[1] % 3) as f32
            }
        },
    ))
}

#[test]
fn lag_counts_learner_steps_through_several_updates_and_a_skipped_step() -> Result<()> {
    let sink = MemorySink::new();
    let mut learner = learner(&sink)?;
    let mut rng = SeededRng::new(3);
    // Steps 1 and 2 are on-policy: each trains on groups its own starting weights sampled.
    for step in 1..=2u64 {
        let version = learner.policy_version();
        assert_eq!(version, step - 1);
        let report = learner.step(batch(&learner, version, false, &mut rng)?)?;
        assert_eq!(report.updates.len(), 2, "step {step}: {report:?}");
        assert_eq!(report.policy_lag_max, 0, "step {step}");
    }
    assert_eq!(learner.optimizer().step_count(), 4);

    // Step 3 has nothing to train on: no update, yet a new policy version.
    let report = learner.step(batch(&learner, 2, true, &mut rng)?)?;
    assert!(report.updates.is_empty());
    assert_eq!(report.skipped_updates, 1);
    assert_eq!(report.policy_lag_max, 0);
    assert_eq!(learner.policy_version(), 3);
    assert_eq!(learner.optimizer().step_count(), 4);

    // Step 4 starts from version 3; a group sampled by version 1 lags by 2.
    let mut late = batch(&learner, 3, false, &mut rng)?;
    late.groups[1].group.policy_version = 1;
    let report = learner.step(late)?;
    assert_eq!(report.policy_lag_max, 2);
    assert_eq!(
        sink.scalars("train/policy_lag_max"),
        vec![(1, 0.0), (2, 0.0), (3, 0.0), (4, 2.0)]
    );
    Ok(())
}
