//! Generated tokens/s of the rollout engine on the ~60M random config — 8 prompts × 32 tokens →
//! 128 new tokens each, and groups (2 prompts × n = 8) — sampling at temperature 1 with stop
//! tokens off, with peak heap memory; then Hugging Face `generate` on the same config, batch and
//! lengths (`benches/hf_generate.py`, torch on 2 threads) in the same run, for the ratio. mathrl
//! runs each scenario twice: with the f32 weights, and with `EngineConfig::bf16_weights`.
//!
//! `cargo bench --bench generation` (results in BENCHMARKS.md). Set `MATHRL_BENCH_NO_TORCH=1` to
//! skip the transformers baseline.

mod common;

use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use common::{config_60m, mib, peak_bytes_of, process_cpu_ms, python_baseline, CountingAlloc};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::Trainable;
use mathrl::Policy;
use rand::{Rng, SeedableRng};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const PROMPT: usize = 32;
const NEW_TOKENS: usize = 128;
const REPEATS: usize = 3;

/// (prompts, completions per prompt) of each scenario, as in `hf_generate.py`.
const SCENARIOS: [(usize, usize); 2] = [(8, 1), (2, 8)];

/// The engine's weights in each measurement: as the model's (f32), and with
/// `EngineConfig::bf16_weights`.
const WEIGHTS: [(&str, bool); 2] = [("f32", false), ("bf16", true)];

fn main() {
    mathrl::device::pin_cpu_threads();
    let config = config_60m();
    let policy = Policy::random(&config, 0, &Device::Cpu, DType::F32, Trainable::No).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut results = Vec::new();
    for (prompts, n) in SCENARIOS {
        let ids: Vec<Vec<u32>> = (0..prompts)
            .map(|_| {
                (0..PROMPT)
                    .map(|_| rng.random_range(3..config.vocab_size as u32))
                    .collect()
            })
            .collect();
        let mut per_weights = Vec::new();
        for (weights, bf16_weights) in WEIGHTS {
            let engine_config = EngineConfig {
                bf16_weights,
                ..EngineConfig::default()
            };
            let (tokens_per_s, best, peak, split) =
                measure(Engine::from_policy(&policy, engine_config), &ids, n);
            println!(
                "mathrl (candle), {weights} weights: {prompts} prompts x {PROMPT} tokens, n={n}, {NEW_TOKENS} new tokens: best {best:.2} s of {REPEATS} = {tokens_per_s:.0} tokens/s, peak heap above weights {:.0} MiB",
                mib(peak)
            );
            println!("  best run: {split}");
            per_weights.push(tokens_per_s);
        }
        println!(
            "  bf16 weights / f32 weights (tokens/s): {:.2}",
            per_weights[1] / per_weights[0]
        );
        results.push(per_weights);
    }
    // A pool that busy-waits keeps burning CPU after the work is done (OpenMP's default did,
    // 30-50x slowdowns on a shared 2-core machine); rayon's and candle's pools must sleep.
    let idle = Duration::from_secs(1);
    if let Some(before) = process_cpu_ms() {
        std::thread::sleep(idle);
        let burnt = process_cpu_ms().unwrap_or(before) - before;
        println!(
            "CPU time used by the thread pools in {} ms idle after generating: {burnt:.0} ms",
            idle.as_millis()
        );
    }
    let Some(text) = python_baseline("hf_generate.py") else {
        return;
    };
    let torch: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["tokens_per_s"].as_f64())
        .collect();
    for (((prompts, n), ours), theirs) in SCENARIOS.iter().zip(&results).zip(&torch) {
        for ((weights, _), ours) in WEIGHTS.iter().zip(ours) {
            println!(
                "ratio mathrl ({weights} weights) / transformers (tokens/s), {prompts} prompts n={n}: {:.2}",
                ours / theirs
            );
        }
    }
}

/// Best of `REPEATS` generations of `n` completions per prompt of `ids` after a warm-up: tokens
/// per second, its seconds, the peak heap above the weights and where its time went.
fn measure(mut engine: Engine, ids: &[Vec<u32>], n: usize) -> (f64, f64, usize, String) {
    let params = |seed| SamplingParams {
        n,
        temperature: 1.0,
        max_new_tokens: NEW_TOKENS,
        stop_token_ids: Some(vec![]),
        seed,
        ..Default::default()
    };
    let warm_up = SamplingParams {
        max_new_tokens: 4,
        ..params(0)
    };
    engine.generate(ids, &warm_up).unwrap();
    let mut best = f64::INFINITY;
    let mut peak = 0;
    let mut split = String::new();
    for r in 0..REPEATS {
        let start = Instant::now();
        let (out, p) = peak_bytes_of(|| engine.generate(ids, &params(r as u64 + 1)).unwrap());
        let seconds = start.elapsed().as_secs_f64();
        if seconds < best {
            let s = &out.stats;
            split = format!(
                "prefill {:.0} ms, {} decode steps {:.0} ms, sampling {:.0} ms",
                s.prefill_ms, s.decode_steps, s.decode_ms, s.sample_ms
            );
            best = seconds;
        }
        peak = peak.max(p);
        assert_eq!(out.stats.sampled_tokens, ids.len() * n * NEW_TOKENS);
        assert_eq!(
            out.stats.prefills,
            ids.len(),
            "one prefill per prompt, shared by its group"
        );
    }
    let tokens_per_s = (ids.len() * n * NEW_TOKENS) as f64 / best;
    (tokens_per_s, best, peak, split)
}
