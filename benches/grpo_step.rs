//! One GRPO optimisation step (policy and reference forward, backward, AdamW) on the ~60M random
//! config for 16 sequences of 32 prompt + 128 completion tokens, with peak heap memory; then the
//! same step in PyTorch (`benches/torch_grpo_step.py`, 2 threads) in the same run, for the ratio.
//!
//! `cargo bench --bench grpo_step` (results in BENCHMARKS.md). Set `MATHRL_BENCH_NO_TORCH=1` to
//! skip the PyTorch baseline.

mod common;

use std::time::Instant;

use candle_core::{DType, Device};
use common::{config_60m, mib, peak_bytes_of, python_baseline, CountingAlloc};
use mathrl::model::Trainable;
use mathrl::types::{Completion, FinishReason, Group};
use mathrl::{Metrics, Policy};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule, RolloutBatch, ScoredGroup};
use rand::{Rng, SeedableRng};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const GROUPS: usize = 2;
const GROUP_SIZE: usize = 8;
const PROMPT: usize = 32;
const COMPLETION: usize = 128;
const STEPS: usize = 3;

fn batch(vocab: usize, seed: u64) -> RolloutBatch {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ids = |n: usize| {
        (0..n)
            .map(|_| rng.random_range(3..vocab as u32))
            .collect::<Vec<_>>()
    };
    let groups = (0..GROUPS)
        .map(|g| {
            let prompt_ids = ids(PROMPT);
            let completions = (0..GROUP_SIZE)
                .map(|i| Completion::sampled(i, ids(COMPLETION), -3.0, FinishReason::Length))
                .collect();
            let rewards = (0..GROUP_SIZE).map(|i| (i % 2) as f32).collect();
            ScoredGroup {
                group: Group {
                    prompt_index: g,
                    prompt_ids,
                    completions,
                    policy_version: 0,
                },
                rewards,
                verdicts: None,
            }
        })
        .collect();
    RolloutBatch { groups }
}

fn main() {
    mathrl::device::pin_cpu_threads();
    let config = config_60m();
    let policy = Policy::random(&config, 0, &Device::Cpu, DType::F32, Trainable::Yes).unwrap();
    let mut grpo = GrpoConfig::default(); // β = 1e-3: the reference model is loaded and run
    grpo.train_step.schedule = LrSchedule::constant(1e-5);
    grpo.micro_batch_size = 16;
    grpo.log_entropy = false;
    let mut learner = GrpoLearner::new(policy, None, grpo, Metrics::null()).unwrap();
    learner.step(batch(config.vocab_size, 0)).unwrap(); // warm-up: optimiser state allocated
    let mut times = Vec::new();
    let mut peak = 0;
    for s in 0..STEPS {
        let b = batch(config.vocab_size, s as u64 + 1);
        let start = Instant::now();
        let (_, p) = peak_bytes_of(|| learner.step(b).unwrap());
        times.push(start.elapsed().as_secs_f64());
        peak = peak.max(p);
    }
    times.sort_by(f64::total_cmp);
    let candle_s = times[STEPS / 2];
    println!(
        "mathrl (candle): GRPO step, 60M, {} x ({PROMPT}+{COMPLETION}): median {candle_s:.2} s of {STEPS}, peak heap above weights+state {:.0} MiB",
        GROUPS * GROUP_SIZE,
        mib(peak)
    );
    let Some(text) = python_baseline("torch_grpo_step.py") else {
        return;
    };
    let torch_s: Option<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("median_s="))
        .and_then(|v| v.trim().parse().ok());
    if let Some(torch_s) = torch_s {
        println!("ratio mathrl / torch (time): {:.2}", candle_s / torch_s);
    }
}
