//! The `gpu-check` scenario: generation tokens/s and one GRPO step at a real model's shape on one
//! device, the GPU part of `scripts/gpu-check.sh`, which runs it next to `benches/torch_scale.py`
//! (transformers `generate` and a PyTorch GRPO step, same shape, batch and lengths) and records the
//! GPU's peak memory around each with nvidia-smi.
//!
//! `MATHRL_BENCH_DEVICE=cuda MATHRL_BENCH_SHAPE=1.5b cargo bench --features mathrl/cuda --bench scale`
//! (defaults: `cpu` and the `tiny` shape, which checks the bench's logic in seconds).
//! Weights are random, in the device's compute dtype (bf16 on a GPU) or `MATHRL_BENCH_DTYPE`. Prints
//! one JSON line per measurement, each tagged `"phase"` so the script can pair it with its memory
//! reading.

use std::time::Instant;

use candle_core::Device;
use mathrl::device::{default_dtype, parse_device, parse_dtype};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::types::{Completion, FinishReason, Group};
use mathrl::{Metrics, Policy};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule, RolloutBatch, ScoredGroup};
use rand::{Rng, SeedableRng};
use serde_json::json;

const PROMPT: usize = 32;
const NEW_TOKENS: usize = 128;
/// (prompts, completions per prompt) of the generation scenarios.
const SCENARIOS: [(usize, usize); 2] = [(8, 1), (2, 8)];
/// The GRPO step: groups × completions of `TRAIN_COMPLETION` tokens after a `PROMPT`-token prompt.
const GROUPS: usize = 2;
const GROUP_SIZE: usize = 8;
const TRAIN_COMPLETION: usize = 256;
const STEPS: usize = 3;

/// Qwen2.5-1.5B's shape (vocab 151,936, hidden 1,536, 28 layers, 12 heads / 2 KV, intermediate
/// 8,960, tied embeddings), or a tiny one of the same form.
pub fn shape(name: &str) -> Qwen2Config {
    let (vocab, hidden, layers, heads, kv, inter) = match name {
        "1.5b" => (151_936, 1536, 28, 12, 2, 8960),
        "0.5b" => (151_936, 896, 24, 14, 2, 4864),
        _ => (1024, 64, 2, 4, 2, 128),
    };
    Qwen2Config {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        max_position_embeddings: 4096,
        rope_theta: 1_000_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        torch_dtype: Some("bfloat16".into()),
        bos_token_id: None,
        eos_token_ids: vec![],
        pad_token_id: None,
        architecture: None,
        num_labels: None,
    }
}

fn random_ids(rng: &mut impl Rng, vocab: usize, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(3..vocab as u32)).collect()
}

fn batch(vocab: usize, seed: u64) -> RolloutBatch {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let groups = (0..GROUPS)
        .map(|g| ScoredGroup {
            group: Group {
                prompt_index: g,
                prompt_ids: random_ids(&mut rng, vocab, PROMPT),
                completions: (0..GROUP_SIZE)
                    .map(|i| {
                        let ids = random_ids(&mut rng, vocab, TRAIN_COMPLETION);
                        Completion::sampled(i, ids, -3.0, FinishReason::Length)
                    })
                    .collect(),
                policy_version: 0,
            },
            rewards: (0..GROUP_SIZE).map(|i| (i % 2) as f32).collect(),
            verdicts: None,
        })
        .collect();
    RolloutBatch { groups }
}

/// Waits for the device's queued work, so wall-clock times cover it.
fn sync(device: &Device) {
    device.synchronize().expect("device synchronises");
}

pub fn run() {
    let device_name = std::env::var("MATHRL_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let shape_name = std::env::var("MATHRL_BENCH_SHAPE").unwrap_or_else(|_| "tiny".into());
    let device = parse_device(&device_name).expect("MATHRL_BENCH_DEVICE is a device");
    let dtype = match std::env::var("MATHRL_BENCH_DTYPE") {
        Ok(name) => parse_dtype(&name).expect("MATHRL_BENCH_DTYPE is a dtype"),
        Err(_) => default_dtype(&device),
    };
    let config = shape(&shape_name);
    let start = Instant::now();
    let policy = Policy::random(&config, 0, &device, dtype, Trainable::Yes).unwrap();
    sync(&device);
    println!(
        "{}",
        json!({"phase": "load", "shape": shape_name, "device": device_name,
               "dtype": format!("{dtype:?}"), "params": policy.num_parameters(),
               "seconds": start.elapsed().as_secs_f64()})
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for (prompts, n) in SCENARIOS {
        let ids: Vec<Vec<u32>> = (0..prompts)
            .map(|_| random_ids(&mut rng, config.vocab_size, PROMPT))
            .collect();
        let mut engine = Engine::from_policy(&policy, EngineConfig::default());
        let params = |max_new_tokens| SamplingParams {
            n,
            temperature: 1.0,
            max_new_tokens,
            stop_token_ids: Some(vec![]),
            seed: 1,
            ..Default::default()
        };
        engine.generate(&ids, &params(4)).unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..2 {
            let start = Instant::now();
            let out = engine.generate(&ids, &params(NEW_TOKENS)).unwrap();
            sync(&device);
            best = best.min(start.elapsed().as_secs_f64());
            assert_eq!(out.stats.sampled_tokens, prompts * n * NEW_TOKENS);
        }
        println!(
            "{}",
            json!({"phase": format!("generate {prompts}x{n}"),
                   "tokens_per_s": (prompts * n * NEW_TOKENS) as f64 / best, "seconds": best})
        );
    }

    let mut grpo = GrpoConfig::default(); // β = 1e-3: a reference model is kept and run
    grpo.train_step.schedule = LrSchedule::constant(1e-5);
    grpo.micro_batch_size = GROUPS * GROUP_SIZE;
    grpo.log_entropy = false;
    let mut learner = GrpoLearner::new(policy, None, grpo, Metrics::null()).unwrap();
    learner.step(batch(config.vocab_size, 0)).unwrap(); // warm-up: optimiser state allocated
    sync(&device);
    let mut times = Vec::new();
    for s in 0..STEPS {
        let b = batch(config.vocab_size, s as u64 + 1);
        let start = Instant::now();
        let report = learner.step(b).unwrap();
        sync(&device);
        times.push(start.elapsed().as_secs_f64());
        assert!(report.loss.is_finite(), "step {s}: loss {}", report.loss);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"phase": "grpo step", "sequences": GROUPS * GROUP_SIZE,
               "tokens": GROUPS * GROUP_SIZE * (PROMPT + TRAIN_COMPLETION),
               "median_seconds": times[STEPS / 2]})
    );
}
