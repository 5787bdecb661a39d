//! The projections of a decode step on the 60M config: Q, K, V and gate, up as one
//! `skinny_matmuls` pass each against one `skinny_matmul` per weight (what a decode step did
//! before), alternating in one run, median of rounds; then the LM head and all eight layers'
//! projections with f32 against bf16 weights (`EngineConfig::bf16_weights`), each weight
//! read once per call as in a decode step, by the skinny kernel from the weights as loaded and by
//! the panel kernel from the rollout engine's panels (`PanelWeight`).
//!
//! `cargo bench --bench decode_projections` (results in BENCHMARKS.md).

mod common;

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use common::config_60m;
use mathrl::model::fused::{panel_matmuls, skinny_matmul, skinny_matmuls, PanelWeight};

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
    weight_dtypes();
}

/// The decode step's weight matmuls (every layer's own weights, so that they stream from memory
/// as in a real step, and the LM head) with f32 and with bf16 weights, alternating rounds.
fn weight_dtypes() {
    let c = config_60m();
    let (d, i) = (c.hidden_size, c.intermediate_size);
    let kv = c.num_key_value_heads * (d / c.num_attention_heads);
    let layer = || {
        [
            randn(d, d),
            randn(kv, d),
            randn(kv, d),
            randn(d, d),
            randn(i, d),
            randn(i, d),
        ]
    };
    let f32_layers: Vec<[Tensor; 6]> = (0..c.num_hidden_layers).map(|_| layer()).collect();
    let downs: Vec<Tensor> = (0..c.num_hidden_layers).map(|_| randn(d, i)).collect();
    let head = randn(c.vocab_size, d);
    let bf16 = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
    let bf16_layers: Vec<[Tensor; 6]> = f32_layers.iter().map(|l| l.each_ref().map(bf16)).collect();
    let bf16_downs: Vec<Tensor> = downs.iter().map(bf16).collect();
    let bf16_head = bf16(&head);
    let bytes = |ws: &[[Tensor; 6]], downs: &[Tensor], head: &Tensor| -> f64 {
        let size = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as f64;
        ws.iter().flatten().chain(downs).map(size).sum::<f64>() + size(head)
    };
    let panels = |dtype: DType| -> (Vec<[PanelWeight; 6]>, Vec<PanelWeight>, PanelWeight) {
        let p = |t: &Tensor| PanelWeight::new(t, dtype).unwrap();
        (
            f32_layers.iter().map(|l| l.each_ref().map(p)).collect(),
            downs.iter().map(p).collect(),
            p(&head),
        )
    };
    let (f32_panels, bf16_panels) = (panels(DType::F32), panels(DType::BF16));
    println!();
    println!("| rows | f32 weights | bf16 weights | bf16 / f32 time | f32 GB/s | bf16 GB/s | f32 panels | bf16 panels | bf16 panels / f32 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for rows in [1, 8, 16] {
        let x = randn(rows, d);
        let xi = randn(rows, i);
        let step = |ws: &[[Tensor; 6]], downs: &[Tensor], head: &Tensor| {
            for ([q, k, v, o, g, u], down) in ws.iter().zip(downs) {
                std::hint::black_box(skinny_matmuls(&x, [q, k, v]).unwrap());
                std::hint::black_box(skinny_matmul(&x, o).unwrap());
                std::hint::black_box(skinny_matmuls(&x, [g, u]).unwrap());
                std::hint::black_box(skinny_matmul(&xi, down).unwrap());
            }
            std::hint::black_box(skinny_matmul(&x, head).unwrap());
        };
        let panel_step =
            |(ws, downs, head): &(Vec<[PanelWeight; 6]>, Vec<PanelWeight>, PanelWeight)| {
                for ([q, k, v, o, g, u], down) in ws.iter().zip(downs) {
                    std::hint::black_box(panel_matmuls(&x, [q, k, v]).unwrap());
                    std::hint::black_box(panel_matmuls(&x, [o]).unwrap());
                    std::hint::black_box(panel_matmuls(&x, [g, u]).unwrap());
                    std::hint::black_box(panel_matmuls(&xi, [down]).unwrap());
                }
                std::hint::black_box(panel_matmuls(&x, [head]).unwrap());
            };
        let mut times = [vec![], vec![], vec![], vec![]];
        for _ in 0..ROUNDS {
            for (slot, times) in times.iter_mut().enumerate() {
                let start = Instant::now();
                for _ in 0..CALLS / 20 {
                    match slot {
                        0 => step(&f32_layers, &downs, &head),
                        1 => step(&bf16_layers, &bf16_downs, &bf16_head),
                        2 => panel_step(&f32_panels),
                        _ => panel_step(&bf16_panels),
                    }
                }
                times.push(start.elapsed().as_secs_f64() * 1e6 / (CALLS / 20) as f64);
            }
        }
        let [f, b, fp, bp] = times.map(|mut t| median_us(&mut t));
        let gbs = |bytes: f64, us: f64| bytes / us / 1e3;
        println!(
            "| {rows} | {:.2} ms | {:.2} ms | {:.2} | {:.1} | {:.1} | {:.2} ms | {:.2} ms | {:.2} |",
            f / 1e3,
            b / 1e3,
            b / f,
            gbs(bytes(&f32_layers, &downs, &head), f),
            gbs(bytes(&bf16_layers, &bf16_downs, &bf16_head), b),
            fp / 1e3,
            bp / 1e3,
            bp / f,
        );
    }
}
