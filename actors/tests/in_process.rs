//! The GRPO loop on actors, in one process: the tiny fixture policy, 2 rollout and 2 reward
//! actors, 3 on-policy steps.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use common::{config, digit_share, prompts, tiny_policy, trainer, DigitShare};
use mathrl::model::Trainable;

#[test]
fn three_on_policy_steps_with_two_rollout_and_two_reward_actors() -> Result<()> {
    let mut cfg = config(3);
    cfg.sample_text_every = 2;
    cfg.sample_text_completions = 2;
    let (trainer, sink) = trainer(cfg, Arc::new(DigitShare))?;
    let report = trainer.run(prompts(6))?;

    assert_eq!(report.steps, 3);
    assert_eq!(report.step_records.len(), 3);
    assert_eq!(
        (report.failures, report.restarts, report.unscored),
        (0, 0, 0)
    );
    let mut drawn: BTreeMap<String, usize> = BTreeMap::new();
    for (i, record) in report.step_records.iter().enumerate() {
        let step = i as u64 + 1;
        assert_eq!(record.step, step);
        assert_eq!(record.learner.step, step);
        // Every prompt of the step was trained once, each group by the weights after step − 1.
        assert_eq!(record.groups.len(), 4, "step {step}");
        for group in &record.groups {
            assert_eq!(group.policy_version, step - 1, "step {step}: {group:?}");
            assert_eq!(group.rewards.len(), 3);
            *drawn.entry(group.prompt_id.clone()).or_default() += 1;
        }
    }
    // 3 steps × 4 prompts = two full epochs over the 6 prompts: each drawn exactly twice.
    assert_eq!(drawn.len(), 6, "{drawn:?}");
    assert!(drawn.values().all(|&n| n == 2), "{drawn:?}");
    assert_eq!(report.groups_by_worker.values().sum::<u64>(), 12);
    assert!(
        report
            .groups_by_worker
            .keys()
            .all(|w| w == "rollout-0" || w == "rollout-1"),
        "{:?}",
        report.groups_by_worker
    );

    // Rewards came from the reward actors: the learner saw the same mean as the records.
    for record in &report.step_records {
        let rewards: Vec<f32> = record
            .groups
            .iter()
            .flat_map(|g| g.rewards.clone())
            .collect();
        let mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / rewards.len() as f64;
        assert!((mean - record.learner.reward_mean).abs() < 1e-6);
        assert!(rewards.iter().all(|&r| (0.0..=1.0).contains(&r)));
    }
    assert!(digit_share("a1") == 0.5);

    // Trust, but measure: the rollouts ran on exactly the published weights, and their
    // behaviour log-probs match the learner's recomputation (same weights, same temperature).
    for step in 1..=3u64 {
        let at = |tag: &str| {
            sink.scalars(tag)
                .into_iter()
                .find(|&(s, _)| s == step)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("{tag} not logged at step {step}"))
        };
        assert_eq!(at("weights/checksum_match"), 1.0);
        assert_eq!(at("policy/lag_max"), 0.0);
        assert!(at("rollout/tokens_per_second") > 0.0);
        let busy = at("rollout/busy_fraction");
        assert!(busy > 0.0 && busy <= 1.0, "{busy}");
        let drift = at("train/logprob_drift_max");
        assert!(drift < 1e-3, "behaviour vs learner log-prob drift {drift}");
        at("train/reward_mean");
        at("queue/rollout_depth_max");
    }

    // Sampled completions as text every 2 steps: step 2 only, two completions with rewards.
    let samples = sink.texts("samples/completions");
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].0, 2);
    let shown: Vec<&str> = report.step_records[1].groups[..2]
        .iter()
        .map(|g| g.prompt_id.as_str())
        .collect();
    for id in &shown {
        assert!(
            samples[0].1.contains(&format!("**{id}** (reward")),
            "{}",
            samples[0].1
        );
    }
    assert_eq!(samples[0].1.matches("(reward").count(), 2);

    // The final weights moved away from the initial ones.
    let initial = tiny_policy(Trainable::No)?;
    let moved = initial
        .named_tensors()
        .iter()
        .zip(report.policy.named_tensors())
        .map(|((_, a), (_, b))| {
            (a - &b)
                .and_then(|d| d.abs())
                .and_then(|d| d.max_all())
                .and_then(|d| d.to_scalar::<f32>())
        })
        .collect::<candle_core::Result<Vec<f32>>>()?;
    assert!(moved.iter().any(|&d| d > 1e-5), "{moved:?}");
    Ok(())
}

#[test]
fn rollouts_sample_with_the_learners_rollout_settings() -> Result<()> {
    let metrics = mathrl::Metrics::null();
    let mut grpo = mathrl_learners::GrpoConfig::default();
    grpo.rollout.temperature = 0.7;
    grpo.rollout.group_size = 2;
    grpo.rollout.max_new_tokens = 4;
    let learner = mathrl_learners::GrpoLearner::new(
        tiny_policy(Trainable::Yes)?,
        None,
        grpo,
        metrics.clone(),
    )?;
    let trainer = mathrl_actors::Trainer::new(
        config(1),
        learner,
        common::tokenizer()?,
        Arc::new(DigitShare),
        metrics,
    )?;
    let report = trainer.run(prompts(4))?;
    let step = &report.step_records[0];
    assert!(step.groups.iter().all(|g| g.rewards.len() == 2), "{step:?}");
    assert!(step.learner.completion_length_max <= 4, "{step:?}");
    // Sampled at 0.7, as the learner recomputes them: a sampler at another temperature would
    // drift by far more than float rounding.
    assert!(step.learner.logprob_drift_max < 1e-3, "{step:?}");
    Ok(())
}

#[test]
fn the_rollout_device_reaches_the_publisher() -> Result<()> {
    use candle_core::Device;

    // Default: the learner's device, one shared copy for the local actors, no bytes.
    let (plain, _) = trainer(config(1), Arc::new(DigitShare))?;
    let publisher = plain.publisher();
    assert!(publisher.rollout_device.as_ref().unwrap().is_cpu());
    assert!(!publisher.remote);
    // `--rollout-device`: the shared copy is made on it.
    let (placed, _) = trainer(config(1), Arc::new(DigitShare))?;
    let placed = placed.with_rollout_device(Device::Cpu);
    let device = placed.rollout_device();
    let publisher = placed.publisher();
    assert!(publisher.rollout_device.unwrap().same_device(&device));
    // No local rollout actor: no local copy at all.
    let mut remote_only = config(1);
    remote_only.rollout_actors = 0;
    let (remote, _) = trainer(remote_only, Arc::new(DigitShare))?;
    assert!(remote.publisher().rollout_device.is_none());
    Ok(())
}
