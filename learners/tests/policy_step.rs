//! The pieces together on the tiny Qwen2 policy of `tests/fixtures/tiny-qwen2/`: on-policy GRPO
//! loss on the model's own per-token log-probs, accumulated over two micro-batches, AdamW steps.
//! Rewarded completions must become more likely and unrewarded ones less.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use mathrl::model::{next_token_logprobs, LogprobOptions, Trainable};
use mathrl::Policy;
use mathrl_learners::{
    grpo_loss, AdamW, AdamWConfig, AdvantageEstimator, GradAccumulator, GrpoLossConfig, LrSchedule,
    Optimizer, PolicyLossInputs, StepNormaliser, TrainStep, TrainStepConfig,
};

#[test]
fn grpo_steps_raise_the_likelihood_of_rewarded_completions() -> Result<()> {
    let device = Device::Cpu;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");
    let policy = Policy::load(dir, &device, Some(DType::F32), Trainable::Yes)?;
    // One group of 4 completions of the same 4-token prompt; tokens ids are arbitrary (< vocab).
    let ids: Vec<u32> = vec![
        5, 17, 42, 9, 100, 200, 300, 400, //
        5, 17, 42, 9, 101, 201, 301, 401, //
        5, 17, 42, 9, 102, 202, 302, 402, //
        5, 17, 42, 9, 103, 203, 303, 403,
    ];
    let input_ids = Tensor::from_vec(ids, (4, 8), &device)?;
    let attention = Tensor::ones((4, 8), DType::U32, &device)?;
    // Log-probs [4, 7]: entry t predicts token t+1; the completion is tokens 4..8 → entries 3..7.
    let mask = Tensor::from_vec([0f32, 0., 0., 1., 1., 1., 1.].repeat(4), (4, 7), &device)?;
    let rewards = [1.0f32, 0.0, 0.0, 1.0];
    let (adv, _) = AdvantageEstimator::Grpo.group(&rewards)?;
    let advantages = Tensor::new(adv.as_slice(), &device)?;

    let mut opt = AdamW::new(
        policy.vars(),
        AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut step = TrainStep::new(TrainStepConfig {
        schedule: LrSchedule::constant(1e-2),
        max_grad_norm: Some(1.0),
        ..Default::default()
    })?;
    let config = GrpoLossConfig::default();
    let sequence_logprob = |policy: &Policy| -> Result<Vec<f32>> {
        let lp = next_token_logprobs(
            policy.model(),
            &input_ids,
            &attention,
            LogprobOptions::default(),
        )?;
        Ok((lp * &mask)?.sum(1)?.to_vec1::<f32>()?)
    };
    let before = sequence_logprob(&policy)?;
    for _ in 0..3 {
        // Two micro-batches of two rows each.
        let halves = [mask.narrow(0, 0, 2)?, mask.narrow(0, 2, 2)?];
        let normaliser = StepNormaliser::from_masks(&[&halves[0], &halves[1]])?;
        let mut acc = GradAccumulator::new(opt.params());
        for (k, micro_mask) in halves.iter().enumerate() {
            let lp = next_token_logprobs(
                policy.model(),
                &input_ids.narrow(0, 2 * k, 2)?,
                &attention.narrow(0, 2 * k, 2)?,
                LogprobOptions::default(),
            )?;
            let out = grpo_loss(
                &config,
                &PolicyLossInputs {
                    logprobs: &lp,
                    old_logprobs: None,
                    ref_logprobs: None,
                    advantages: &advantages.narrow(0, 2 * k, 2)?,
                    completion_mask: micro_mask,
                },
                &normaliser,
            )?;
            assert_eq!(out.metrics.ratio_mean, 1.0);
            acc.backward(&out.loss)?;
        }
        let stats = step.apply(&mut opt, acc)?;
        assert!(stats.skipped.is_none() && stats.grad_norm.is_some_and(|n| n > 0.0));
    }
    let after = sequence_logprob(&policy)?;
    for (i, r) in rewards.iter().enumerate() {
        let moved = after[i] - before[i];
        assert!(
            if *r > 0.5 { moved > 0.0 } else { moved < 0.0 },
            "row {i}: {} → {}",
            before[i],
            after[i]
        );
    }
    assert_eq!(opt.step_count(), 3);
    // Per parameter: two moments, its step and its f32 master weights.
    assert_eq!(opt.state_tensors()?.len(), 1 + 4 * policy.vars().len());
    Ok(())
}
