//! Peak memory of one GRPO step with and without activation recomputation
//! (`grpo.gradient_checkpointing`), on the random 60M config of the benchmarks (8 layers, hidden
//! 512, vocab 32,000) for 8 completions of 32 prompt + 480 completion tokens in one micro-batch,
//! f32 on the CPU, β = 0.
//!
//! `cargo run --release --example checkpointing_memory` (results in BENCHMARKS.md). Each mode runs
//! in a child process of its own, so that one mode's peak resident memory does not include pages
//! the allocator kept from the other. Each child first takes a one-token step, so that the AdamW
//! moments exist before the measured step; the figures are the measured step's peak heap
//! (counting allocator) and peak RSS (`VmHWM`, reset through `/proc/self/clear_refs`), both
//! above what was live before it; and the step's wall and CPU time (the CPU time is the steadier
//! on a shared machine).

#[path = "../benches/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device};
use common::{config_60m, mib, peak_bytes_of, process_cpu_ms, CountingAlloc};
use mathrl::model::Trainable;
use mathrl::types::{Completion, FinishReason, Group};
use mathrl::{Metrics, Policy};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule, RolloutBatch, ScoredGroup};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const COMPLETIONS: usize = 8;
const PROMPT: usize = 32;
const COMPLETION: usize = 480;
const MODES: [&str; 2] = ["stored", "recomputed"];

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("stored") => measure(false),
        Some("recomputed") => measure(true),
        _ => compare(),
    }
}

/// Runs each mode in a child process and prints both with the ratios.
fn compare() {
    let exe = std::env::current_exe().expect("the path of this program");
    let mut results = Vec::new();
    for mode in MODES {
        let out = Command::new(&exe)
            .arg(mode)
            .output()
            .expect("run the measurement");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{mode}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |key: &str| -> Option<f64> {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
        };
        println!("{mode}: {}", text.trim());
        results.push([
            field("peak_heap_mib"),
            field("peak_rss_mib"),
            field("step_s"),
            field("step_cpu_s"),
        ]);
    }
    let (stored, recomputed) = (results[0], results[1]);
    let measures = ["peak heap", "peak RSS", "step time", "step CPU time"];
    for (i, what) in measures.iter().enumerate() {
        if let (Some(a), Some(b)) = (stored[i], recomputed[i]) {
            println!("{what}: recomputed / stored = {:.2}", b / a);
        }
    }
}

/// One warm-up step and one measured step in this process.
fn measure(gradient_checkpointing: bool) {
    mathrl::device::pin_cpu_threads();
    let model = config_60m();
    let policy = Policy::random(&model, 0, &Device::Cpu, DType::F32, Trainable::Yes)
        .expect("a random policy");
    let mut config = GrpoConfig::default();
    config.loss.beta = 0.0;
    config.log_entropy = false;
    config.train_step.schedule = LrSchedule::constant(1e-5);
    config.micro_batch_size = COMPLETIONS;
    config.gradient_checkpointing = gradient_checkpointing;
    let mut learner = GrpoLearner::new(policy, None, config, Metrics::null()).expect("a learner");
    learner
        .step(batch(model.vocab_size, 2, 1, 0))
        .expect("the warm-up step");

    let batch = batch(model.vocab_size, COMPLETIONS, COMPLETION, 1);
    let rss_before = proc_status_mib("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (start, cpu_start) = (Instant::now(), process_cpu_ms());
    let (report, heap) = peak_bytes_of(|| learner.step(batch).expect("the measured step"));
    let seconds = start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, process_cpu_ms()) {
        (Some(a), Some(b)) => format!(" step_cpu_s={:.2}", (b - a) / 1000.0),
        _ => String::new(),
    };
    let rss = match (reset, proc_status_mib("VmHWM:"), rss_before) {
        (true, Some(peak), Some(before)) => format!(" peak_rss_mib={:.0}", peak - before),
        _ => String::new(),
    };
    println!(
        "peak_heap_mib={:.0}{rss} step_s={seconds:.2}{cpu} loss={:.6} grad_norm={:.6}",
        mib(heap),
        report.loss,
        report.grad_norm.unwrap_or(f64::NAN),
    );
}

/// One group of `n` completions of `length` random tokens after a 32-token prompt, rewards 0 and
/// 1 alternating.
fn batch(vocab: usize, n: usize, length: usize, seed: u64) -> RolloutBatch {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ids = |len: usize| -> Vec<u32> {
        (0..len)
            .map(|_| rng.random_range(3..vocab as u32))
            .collect()
    };
    let prompt_ids = ids(PROMPT);
    let completions = (0..n)
        .map(|i| Completion::sampled(i, ids(length), -3.0, FinishReason::Length))
        .collect();
    RolloutBatch {
        groups: vec![ScoredGroup {
            group: Group {
                prompt_index: 0,
                prompt_ids,
                completions,
                policy_version: 0,
            },
            rewards: (0..n).map(|i| (i % 2) as f32).collect(),
            verdicts: None,
        }],
    }
}

/// A `/proc/self/status` field given in kB, in MiB.
fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
