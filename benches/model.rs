//! Training forward+backward and the chunked log-prob pass of the Qwen2 model, on the tiny fixture
//! and on the ~60M-parameter config, with peak heap memory.
//!
//! `cargo bench --bench model` (results in BENCHMARKS.md).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{config_60m, mib, peak_bytes_of, CountingAlloc};
use criterion::{criterion_group, criterion_main, Criterion};
use mathrl::model::{next_token_logprobs, LogprobOptions, Qwen2Config, Trainable};
use mathrl::Policy;
use rand::{Rng, SeedableRng};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn batch(vocab: usize, b: usize, t: usize) -> (Tensor, Tensor) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let ids: Vec<u32> = (0..b * t)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap();
    let mask = Tensor::ones((b, t), DType::U32, &Device::Cpu).unwrap();
    (ids, mask)
}

fn train_step(policy: &Policy, ids: &Tensor, mask: &Tensor) {
    let lp = next_token_logprobs(policy.model(), ids, mask, LogprobOptions::default()).unwrap();
    let loss = lp.mean_all().unwrap().neg().unwrap();
    let grads = loss.backward().unwrap();
    std::hint::black_box(grads);
}

fn score(policy: &Policy, ids: &Tensor, mask: &Tensor, chunk: usize) {
    let options = LogprobOptions {
        temperature: 1.0,
        chunk_positions: chunk,
    };
    std::hint::black_box(next_token_logprobs(policy.model(), ids, mask, options).unwrap());
}

fn bench_config(c: &mut Criterion, label: &str, config: &Qwen2Config, b: usize, t: usize) {
    let trainable = Policy::random(config, 0, &Device::Cpu, DType::F32, Trainable::Yes).unwrap();
    let frozen = Policy::random(config, 0, &Device::Cpu, DType::F32, Trainable::No).unwrap();
    let (ids, mask) = batch(config.vocab_size, b, t);
    let params = trainable.num_parameters();

    let ((), train_peak) = peak_bytes_of(|| train_step(&trainable, &ids, &mask));
    let ((), chunked_peak) = peak_bytes_of(|| score(&frozen, &ids, &mask, 256));
    let ((), whole_peak) = peak_bytes_of(|| score(&frozen, &ids, &mask, usize::MAX));
    println!(
        "{label}: {:.1}M params, batch {b}x{t}: peak heap train fwd+bwd {:.1} MiB, \
         log-probs chunk 256 {:.1} MiB, unchunked {:.1} MiB",
        params as f64 / 1e6,
        mib(train_peak),
        mib(chunked_peak),
        mib(whole_peak)
    );

    let mut group = c.benchmark_group(label);
    group.sample_size(10);
    group.bench_function("train_forward_backward", |bench| {
        bench.iter(|| train_step(&trainable, &ids, &mask))
    });
    group.bench_function("logprobs_chunk256_no_grad", |bench| {
        bench.iter(|| score(&frozen, &ids, &mask, 256))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let tiny = Qwen2Config::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-qwen2/config.json"
    ))
    .unwrap();
    bench_config(c, "tiny-qwen2", &tiny, 4, 64);
    bench_config(c, "qwen2-60m", &config_60m(), 4, 128);
}

criterion_group!(model, benches);
criterion_main!(model);
