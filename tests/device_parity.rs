//! The model, the generation engine and the learners on the device named by `MATHRL_TEST_DEVICE`
//! (`cpu` by default; `scripts/gpu-check.sh` sets `cuda`): log-probs in f32 and in bf16 against
//! the reference fixtures, greedy generation, the behaviour log-probs of draws made on the device,
//! and GRPO and SFT steps whose losses match the CPU's. On the CPU the device sampler is forced
//! on, so CI runs every path a GPU takes but the kernels.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{
    f32_vec, fixture, fixture_json, max_abs_diff, sampled_logprobs, training_logprobs, u32_rows,
};
use mathrl::device::parse_device;
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::{next_token_logprobs, LogprobOptions, Trainable};
use mathrl::types::Completion;
use mathrl::{Metrics, Policy};
use mathrl_learners::{
    GrpoConfig, GrpoLearner, LrSchedule, RolloutBatch, ScoredGroup, SftConfig, SftExample,
    SftLearner,
};

/// f32 log-probs must match transformers' within this (as the CPU parity tests).
const F32_TOL: f32 = 1e-4;
/// bf16 weights and activations (8 significant bits) against the f32 reference: largest and
/// mean absolute log-prob error over the fixture's positions. The fixtures' log-probs lie near
/// ln(1/1024) ≈ -6.9, where one bf16 step of a logit is 2^-8 · 8 ≈ 0.03: the mean must stay
/// within two such steps (the CPU measures 0.02-0.04), the largest within seven.
const BF16_MAX_TOL: f32 = 0.2;
const BF16_MEAN_TOL: f32 = 0.06;

fn test_device() -> Device {
    let name = std::env::var("MATHRL_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    parse_device(&name).expect("MATHRL_TEST_DEVICE names a device this build supports")
}

fn load(name: &str, device: &Device, dtype: DType) -> Policy {
    Policy::load(fixture(name), device, Some(dtype), Trainable::No).expect("fixture loads")
}

/// The fixture's next-token log-probs from `policy` and from transformers, at the real positions.
fn logprobs_vs_reference(name: &str, policy: &Policy) -> (Vec<f32>, Vec<f32>) {
    let exp = fixture_json(name, "expected.json");
    let device = policy.device();
    let ids = Tensor::new(u32_rows(&exp["input_ids"]), device).unwrap();
    let mask = Tensor::new(u32_rows(&exp["attention_mask"]), device).unwrap();
    let ours: Vec<Vec<f32>> =
        next_token_logprobs(policy.model(), &ids, &mask, LogprobOptions::default())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2()
            .unwrap();
    let keep = u32_rows(&exp["next_token_logprobs_mask"]);
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for (row, m) in keep.iter().enumerate() {
        let reference = f32_vec(&exp["next_token_logprobs"][row]);
        for (t, _) in m.iter().enumerate().filter(|(_, &k)| k == 1) {
            got.push(ours[row][t]);
            want.push(reference[t]);
        }
    }
    (got, want)
}

#[test]
fn f32_logprobs_match_the_reference_on_the_test_device() {
    let device = test_device();
    for name in ["tiny-qwen2", "tiny-qwen2-untied"] {
        let (got, want) = logprobs_vs_reference(name, &load(name, &device, DType::F32));
        let diff = max_abs_diff(&got, &want);
        assert!(
            diff < F32_TOL,
            "{name} on {device:?}: f32 log-probs differ by {diff}"
        );
    }
}

#[test]
fn bf16_logprobs_stay_near_the_f32_reference_on_the_test_device() {
    let device = test_device();
    for name in ["tiny-qwen2", "tiny-qwen2-untied"] {
        let (got, want) = logprobs_vs_reference(name, &load(name, &device, DType::BF16));
        let max = max_abs_diff(&got, &want);
        let mean = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / got.len() as f32;
        assert!(
            max < BF16_MAX_TOL && mean < BF16_MEAN_TOL,
            "{name} on {device:?}: bf16 log-probs differ by {max} at most, {mean} on average"
        );
        // Guards the tolerance: bf16 must differ from f32 at all, or the bf16 path was not taken.
        assert!(max > 1e-4, "{name}: bf16 log-probs equal f32's ({max})");
    }
}

fn device_engine(policy: &Policy) -> Engine {
    Engine::from_policy(
        policy,
        EngineConfig {
            sample_on_device: Some(true),
            ..EngineConfig::default()
        },
    )
}

#[test]
fn greedy_generation_with_device_sampling_matches_the_reference() {
    let device = test_device();
    for name in ["tiny-qwen2", "tiny-qwen2-untied"] {
        let policy = load(name, &device, DType::F32);
        let greedy = &fixture_json(name, "expected.json")["greedy"];
        let prompt: Vec<u32> = u32_rows(&serde_json::json!([greedy["prompt"]])).remove(0);
        let expected: Vec<u32> = u32_rows(&serde_json::json!([greedy["output_ids"]])).remove(0);
        let mut params =
            SamplingParams::greedy(greedy["max_new_tokens"].as_u64().unwrap() as usize);
        params.stop_token_ids = Some(Vec::new());
        let out = device_engine(&policy)
            .generate(std::slice::from_ref(&prompt), &params)
            .unwrap();
        let c = &out.groups[0].completions[0];
        assert_eq!(
            [prompt.as_slice(), &c.token_ids].concat(),
            expected,
            "{name} on {device:?}: greedy"
        );
        if let Some(lp) = greedy.get("chosen_token_logprobs") {
            let diff = max_abs_diff(&sampled_logprobs(c), &f32_vec(lp));
            assert!(diff < F32_TOL, "{name}: greedy log-probs differ by {diff}");
        }
    }
}

#[test]
fn device_draws_report_the_training_forward_logprob() {
    let device = test_device();
    let policy = load("tiny-qwen2-untied", &device, DType::F32);
    let prompts = vec![vec![5, 17, 42], vec![9, 8, 7, 300, 301, 2, 77]];
    for (temperature, top_k, top_p) in [(0.7, 0, 1.0), (1.3, 20, 0.8)] {
        let params = SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: 5,
            n: 3,
            max_new_tokens: 12,
            stop_token_ids: Some(Vec::new()),
            ..Default::default()
        };
        let out = device_engine(&policy).generate(&prompts, &params).unwrap();
        let mut distinct = std::collections::BTreeSet::new();
        for group in &out.groups {
            for c in &group.completions {
                assert_eq!(c.token_ids.len(), 12);
                distinct.insert(c.token_ids.clone());
                let training = training_logprobs(&policy, group, c, temperature);
                let diff = max_abs_diff(&sampled_logprobs(c), &training);
                assert!(
                    diff < F32_TOL,
                    "T = {temperature}: behaviour vs training differ by {diff}"
                );
            }
        }
        // Sampling, not greedy: the six completions are not all one sequence.
        assert!(
            distinct.len() > 1,
            "T = {temperature}: every draw was the same"
        );
    }
}

/// Losses on the device must match the CPU's within this (f32; reductions run in other orders).
const LOSS_TOL: f64 = 1e-4;

fn trainable(device: &Device) -> Policy {
    Policy::load(
        fixture("tiny-qwen2"),
        device,
        Some(DType::F32),
        Trainable::Yes,
    )
    .expect("fixture loads")
}

#[test]
fn grpo_steps_on_the_test_device_match_the_cpu() {
    let device = test_device();
    let cpu_policy = trainable(&Device::Cpu);
    let params = SamplingParams {
        temperature: 1.0,
        seed: 11,
        n: 4,
        max_new_tokens: 6,
        stop_token_ids: Some(Vec::new()),
        ..Default::default()
    };
    let prompts = vec![vec![5, 17, 42], vec![9, 3, 250, 7]];
    let groups = Engine::from_policy(&cpu_policy, EngineConfig::default())
        .generate(&prompts, &params)
        .unwrap()
        .groups;
    // A reward that differs within each group, so the policy gradient is not zero.
    let reward = |c: &Completion| c.token_ids.iter().filter(|&&t| t % 2 == 0).count() as f32;
    let batch = RolloutBatch {
        groups: groups
            .into_iter()
            .map(|group| ScoredGroup {
                rewards: group.completions.iter().map(reward).collect(),
                group,
                verdicts: None,
            })
            .collect(),
    };
    let mut config = GrpoConfig::default();
    config.loss.beta = 0.04;
    config.train_step.schedule = LrSchedule::constant(1e-3);
    let mut cpu = GrpoLearner::new(cpu_policy, None, config, Metrics::null()).unwrap();
    let mut dev = GrpoLearner::new(trainable(&device), None, config, Metrics::null()).unwrap();
    for step in 1..=2 {
        let (a, b) = (
            cpu.step(batch.clone()).unwrap(),
            dev.step(batch.clone()).unwrap(),
        );
        assert!(a.loss.is_finite() && a.loss != 0.0, "step {step}: {a:?}");
        let (ka, kb) = (a.kl.unwrap(), b.kl.unwrap());
        assert!(
            (a.loss - b.loss).abs() < LOSS_TOL && (ka - kb).abs() < LOSS_TOL,
            "{device:?} step {step}: loss {} vs CPU {}, KL {kb} vs {ka}",
            b.loss,
            a.loss
        );
    }
}

#[test]
fn sft_steps_on_the_test_device_match_the_cpu() {
    let device = test_device();
    let examples: Vec<SftExample> = (0..4u32)
        .map(|i| SftExample {
            input_ids: (0..12).map(|t| (i * 37 + t * 11) % 500 + 3).collect(),
            assistant_mask: (0..12).map(|t| t >= 5).collect(),
        })
        .collect();
    let refs: Vec<&SftExample> = examples.iter().collect();
    let mut config = SftConfig::default();
    config.train_step.schedule = LrSchedule::constant(1e-3);
    let mut cpu = SftLearner::new(trainable(&Device::Cpu), config, Metrics::null()).unwrap();
    let mut dev = SftLearner::new(trainable(&device), config, Metrics::null()).unwrap();
    let mut losses = Vec::new();
    for step in 1..=2 {
        let (a, b) = (cpu.step(&refs).unwrap(), dev.step(&refs).unwrap());
        assert!(
            (a.loss - b.loss).abs() < LOSS_TOL,
            "{device:?} step {step}: loss {} vs CPU {}",
            b.loss,
            a.loss
        );
        losses.push(a.loss);
    }
    // The first update changed the weights: the second loss is another number.
    assert!(losses[1] < losses[0], "{losses:?}");
}
