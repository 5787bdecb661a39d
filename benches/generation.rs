//! Generated tokens/s of the rollout engine on the ~60M random config — 8 prompts × 32 tokens →
//! 128 new tokens each, and groups (2 prompts × n = 8) — sampling at temperature 1 with stop
//! tokens off, with peak heap memory; then Hugging Face `generate` on the same config, batch and
//! lengths (`benches/hf_generate.py`, torch on 2 threads) in the same run, for the ratio.
//!
//! `cargo bench --bench generation` (results in BENCHMARKS.md). Set `MATHRL_BENCH_NO_TORCH=1` to
//! skip the transformers baseline.

mod common;

use std::time::Instant;

use candle_core::{DType, Device};
use common::{config_60m, mib, peak_bytes_of, python_baseline, CountingAlloc};
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

fn main() {
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
        let mut engine = Engine::from_policy(&policy, EngineConfig::default());
        let params = |seed| SamplingParams {
            n,
            temperature: 1.0,
            max_new_tokens: NEW_TOKENS,
            stop_token_ids: Some(vec![]),
            seed,
            ..Default::default()
        };
        engine
            .generate(
                &ids,
                &SamplingParams {
                    max_new_tokens: 4,
                    ..params(0)
                },
            )
            .unwrap();
        let mut best = f64::INFINITY;
        let mut peak = 0;
        for r in 0..REPEATS {
            let start = Instant::now();
            let (out, p) = peak_bytes_of(|| engine.generate(&ids, &params(r as u64 + 1)).unwrap());
            best = best.min(start.elapsed().as_secs_f64());
            peak = peak.max(p);
            assert_eq!(out.stats.sampled_tokens, prompts * n * NEW_TOKENS);
            assert_eq!(
                out.stats.prefills, prompts,
                "one prefill per prompt, shared by its group"
            );
        }
        let tokens_per_s = (prompts * n * NEW_TOKENS) as f64 / best;
        println!(
            "mathrl (candle): {prompts} prompts x {PROMPT} tokens, n={n}, {NEW_TOKENS} new tokens: best {best:.2} s of {REPEATS} = {tokens_per_s:.0} tokens/s, peak heap above weights {:.0} MiB",
            mib(peak)
        );
        results.push(tokens_per_s);
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
        println!(
            "ratio mathrl / transformers (tokens/s), {prompts} prompts n={n}: {:.2}",
            ours / theirs
        );
    }
}
