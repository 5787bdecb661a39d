//! Activation recomputation (gradient checkpointing) gives the gradients of the stored-activation
//! backward pass, for every weight of the tiny fixtures (tied and untied heads), and a GRPO or SFT
//! learner step with `gradient_checkpointing` gives the same weights as one without.

mod common;

use candle_core::{DType, Device};
use common::{fixture, max_abs_diff, padded_batch};
use mathrl::model::{
    loss_and_gradients, token_logprobs, Activations, AttentionMask, LogprobOptions, Trainable,
};
use mathrl::types::{Completion, FinishReason, Group};
use mathrl::{Metrics, Policy};
use mathrl_learners::{
    GrpoConfig, GrpoLearner, LossAggregation, LrSchedule, RolloutBatch, ScoredGroup, SftConfig,
    SftExample, SftLearner,
};

fn tiny(name: &str) -> Policy {
    Policy::load(
        fixture(name),
        &Device::Cpu,
        Some(DType::F32),
        Trainable::Yes,
    )
    .unwrap()
}

/// Per-parameter gradients `(name, values)` of the masked next-token NLL of the batch.
fn gradients(policy: &Policy, activations: Activations) -> (f64, Vec<(String, Vec<f32>)>) {
    let (ids, mask) = padded_batch();
    let ids = ids
        .clamp(0u32, policy.config().vocab_size as u32 - 1)
        .unwrap();
    let backbone = policy.model().backbone();
    let (positions, bias) = backbone.padded_inputs(&ids, &mask).unwrap();
    let bias = AttentionMask::Bias(bias);
    let target_mask = mask.narrow(1, 1, 11).unwrap().to_dtype(DType::F32).unwrap();
    let out = loss_and_gradients(backbone, &ids, &positions, &bias, activations, |hidden| {
        let lp = token_logprobs(policy.model(), hidden, &ids, LogprobOptions::default())?;
        Ok::<_, mathrl::Error>(((lp.logprobs * &target_mask)?.sum_all()?.neg()? / 20.0)?)
    })
    .unwrap();
    let grads = policy
        .vars()
        .into_iter()
        .map(|(name, var)| {
            let g = out
                .grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{activations:?}: {name} got no gradient"));
            (name, g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect();
    (out.loss, grads)
}

#[test]
fn recomputed_gradients_equal_the_stored_ones() {
    for name in ["tiny-qwen2", "tiny-qwen2-untied"] {
        let policy = tiny(name);
        let (stored_loss, stored) = gradients(&policy, Activations::Stored);
        let (recomputed_loss, recomputed) = gradients(&policy, Activations::Recomputed);
        assert_eq!(stored_loss, recomputed_loss, "{name}: the loss");
        assert_eq!(stored.len(), recomputed.len());
        for ((param, a), (_, b)) in stored.iter().zip(&recomputed) {
            // Every weight, in every layer, gets a gradient; a layer left out of the recomputed
            // backward pass (or a layer input gradient not passed on) would fail here.
            assert!(
                a.iter().any(|&x| x != 0.0),
                "{name}: {param} has a zero gradient"
            );
            let scale = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let diff = max_abs_diff(a, b);
            // The tied embedding sums its lookup and LM-head contributions in another order.
            let tolerance = if param.contains("embed_tokens") {
                1e-6 * scale
            } else {
                1e-6
            };
            assert!(
                diff <= tolerance,
                "{name}: {param} differs by {diff} (largest gradient {scale})"
            );
        }
    }
}

fn completion(ids: &[u32]) -> Completion {
    Completion::sampled(0, ids.to_vec(), -3.0, FinishReason::StopToken)
}

/// Two groups of four completions of different lengths, with spread-out rewards.
fn rollout_batch() -> RolloutBatch {
    let group = |prompt_index: usize, prompt: &[u32], completions: &[&[u32]], rewards: [f32; 4]| {
        ScoredGroup {
            group: Group {
                prompt_index,
                prompt_ids: prompt.to_vec(),
                completions: completions.iter().map(|c| completion(c)).collect(),
                policy_version: 0,
            },
            rewards: rewards.to_vec(),
            verdicts: None,
        }
    };
    RolloutBatch {
        groups: vec![
            group(
                0,
                &[5, 17, 42],
                &[&[7, 8, 9], &[100, 200], &[300, 301, 302, 303, 304], &[9]],
                [1.0, 0.0, 0.5, 0.2],
            ),
            group(
                1,
                &[9, 3, 250, 7, 11],
                &[
                    &[1, 2],
                    &[3, 4, 5, 6],
                    &[640, 12, 13],
                    &[77, 78, 79, 80, 81, 82],
                ],
                [0.0, 1.0, 0.3, 0.9],
            ),
        ],
    }
}

fn weights(policy: &Policy) -> Vec<(String, Vec<f32>)> {
    policy
        .named_tensors()
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// Largest weight difference between two learners' policies, with the parameter's name.
fn largest_weight_difference(a: &Policy, b: &Policy) -> (String, f32) {
    weights(a)
        .iter()
        .zip(weights(b))
        .map(|((name, x), (_, y))| (name.clone(), max_abs_diff(x, &y)))
        .fold((String::new(), 0.0), |m, d| if d.1 > m.1 { d } else { m })
}

#[test]
fn a_grpo_step_with_checkpointing_gives_the_same_weights() {
    let mut policies = Vec::new();
    for gradient_checkpointing in [false, true] {
        let mut config = GrpoConfig::default();
        config.loss.beta = 0.04;
        config.loss.aggregation = LossAggregation::Grpo;
        config.train_step.schedule = LrSchedule::constant(1e-3);
        // ε = 1: the first AdamW update is ≈ lr·g, so the comparison is of gradients (not of
        // lr·sign(g), which hides them).
        config.optimizer.eps = 1.0;
        config.micro_batch_size = 3;
        config.gradient_checkpointing = gradient_checkpointing;
        let mut learner =
            GrpoLearner::new(tiny("tiny-qwen2"), None, config, Metrics::null()).unwrap();
        let report = learner.step(rollout_batch()).unwrap();
        assert!(report.updates[0].skipped.is_none(), "{report:?}");
        policies.push((report, learner));
    }
    let ((a, learner_a), (b, learner_b)) = (&policies[0], &policies[1]);
    assert_eq!(a.loss, b.loss);
    assert!(a.kl.is_some() && a.kl == b.kl && a.entropy == b.entropy);
    let norms = (a.grad_norm.unwrap(), b.grad_norm.unwrap());
    assert_same_step(norms, learner_a.policy(), learner_b.policy());
}

#[test]
fn an_sft_step_with_checkpointing_gives_the_same_weights() {
    let example = |ids: &[u32], prompt: usize| SftExample {
        input_ids: ids.to_vec(),
        assistant_mask: (0..ids.len()).map(|i| i >= prompt).collect(),
    };
    let examples = [
        example(&[5, 17, 42, 7, 8, 9, 10], 3),
        example(&[9, 3, 250, 7, 100, 200, 300, 301, 302], 4),
        example(&[600, 12, 1, 2], 2),
    ];
    let refs: Vec<&SftExample> = examples.iter().collect();
    let mut learners = Vec::new();
    for gradient_checkpointing in [false, true] {
        let config = SftConfig {
            train_step: mathrl_learners::TrainStepConfig {
                schedule: LrSchedule::constant(1e-3),
                max_grad_norm: Some(1.0),
                ..Default::default()
            },
            optimizer: mathrl_learners::AdamWConfig {
                eps: 1.0,
                ..SftConfig::default().optimizer
            },
            micro_batch_size: 2,
            gradient_checkpointing,
            ..SftConfig::default()
        };
        let mut learner = SftLearner::new(tiny("tiny-qwen2"), config, Metrics::null()).unwrap();
        let report = learner.step(&refs).unwrap();
        learners.push((report, learner));
    }
    let ((a, learner_a), (b, learner_b)) = (&learners[0], &learners[1]);
    assert_eq!(a.loss, b.loss);
    assert_eq!(a.rows, 3);
    let norms = (a.update.grad_norm.unwrap(), b.update.grad_norm.unwrap());
    assert_same_step(norms, learner_a.policy(), learner_b.policy());
}

/// Two learner steps from the tiny policy, without and with recomputation, had the same gradient
/// norm and left the same weights, and those weights moved (the comparison is not of two
/// untouched models).
fn assert_same_step((norm_a, norm_b): (f64, f64), a: &Policy, b: &Policy) {
    assert!(
        (norm_a - norm_b).abs() <= 1e-6 * norm_a,
        "{norm_a} vs {norm_b}"
    );
    let (param, diff) = largest_weight_difference(a, b);
    assert!(diff <= 1e-7, "{param} differs by {diff}");
    let (_, moved) = largest_weight_difference(a, &tiny("tiny-qwen2"));
    assert!(moved > 1e-5, "the step moved the weights by {moved}");
}
