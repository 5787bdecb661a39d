//! Benchmarks at a real model's shape, in two scenarios chosen by `MATHRL_BENCH_SCENARIO`:
//!
//! - `gpu-check` (the default): generation and a GRPO step on one device, next to
//!   `benches/torch_scale.py`; the speed part of `scripts/gpu-check.sh` ([`gpu_check`]).
//! - `cpu-proof`: the exact Qwen2.5-0.5B shape on this CPU, one phase per process (load,
//!   generation, a GRPO step in f32 or bf16 mixed precision) so that each peak RSS is that
//!   phase's; `scripts/bench-0.5b.sh` runs every phase and PyTorch's ([`cpu_proof`]).
//!
//! Neither runs in `cargo test`; `cargo bench --bench scale` runs the scenario named.

mod cpu_proof;
mod gpu_check;

fn main() {
    mathrl::device::pin_cpu_threads();
    let scenario =
        std::env::var("MATHRL_BENCH_SCENARIO").unwrap_or_else(|_| "gpu-check".to_string());
    match scenario.as_str() {
        "gpu-check" => gpu_check::run(),
        "cpu-proof" => {
            if let Err(e) = cpu_proof::run() {
                eprintln!("scale bench, cpu-proof: {e:#}");
                std::process::exit(1);
            }
        }
        other => {
            eprintln!(
                "MATHRL_BENCH_SCENARIO=`{other}` is not a scenario: expected gpu-check or cpu-proof"
            );
            std::process::exit(2);
        }
    }
}
