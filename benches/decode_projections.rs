//! The projections of a decode step on the 60M config: Q, K, V and gate, up as one
//! `skinny_matmuls` pass each against one `skinny_matmul` per weight (what a decode step did
//! before), alternating in one run, median of rounds.
//!
//! `cargo bench --bench decode_projections` (results in BENCHMARKS.md).

mod common;

use std::time::Instant;

use candle_core::{Device, Tensor};
use common::config_60m;
use mathrl::model::fused::{skinny_matmul, skinny_matmuls};

const ROUNDS: usize = 15;
const CALLS: usize = 200;

fn randn(rows: usize, cols: usize) -> Tensor {
    Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap()
}

/// Microseconds per call of `f`, median over rounds, `CALLS` calls a round.
fn median_us(rounds: &mut [f64]) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn main() {
    mathrl::device::pin_cpu_threads();
    let c = config_60m();
    let (d, hd) = (c.hidden_size, c.hidden_size / c.num_attention_heads);
    let q = randn(c.num_attention_heads * hd, d);
    let k = randn(c.num_key_value_heads * hd, d);
    let v = randn(c.num_key_value_heads * hd, d);
    let gate = randn(c.intermediate_size, d);
    let up = randn(c.intermediate_size, d);
    println!(
        "| rows | Q/K/V: 3 calls | 1 call | speed-up | gate/up: 2 calls | 1 call | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|");
    for rows in [1, 8, 16] {
        let x = randn(rows, d);
        let mut times = [vec![], vec![], vec![], vec![]];
        for _ in 0..ROUNDS {
            let mut time = |slot: usize, f: &dyn Fn()| {
                let start = Instant::now();
                for _ in 0..CALLS {
                    f();
                }
                times[slot].push(start.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
            };
            time(0, &|| {
                for w in [&q, &k, &v] {
                    std::hint::black_box(skinny_matmul(&x, w).unwrap());
                }
            });
            time(1, &|| {
                std::hint::black_box(skinny_matmuls(&x, [&q, &k, &v]).unwrap());
            });
            time(2, &|| {
                for w in [&gate, &up] {
                    std::hint::black_box(skinny_matmul(&x, w).unwrap());
                }
            });
            time(3, &|| {
                std::hint::black_box(skinny_matmuls(&x, [&gate, &up]).unwrap());
            });
        }
        let [a, b, g, u] = times.map(|mut t| median_us(&mut t));
        println!(
            "| {rows} | {a:.1} µs | {b:.1} µs | {:.2}× | {g:.1} µs | {u:.1} µs | {:.2}× |",
            a / b,
            g / u
        );
    }
}
