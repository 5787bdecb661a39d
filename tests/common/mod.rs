//! Helpers shared by the system tests: fixture paths and JSON readers.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use candle_core::{DType, Tensor};
use mathrl::model::{next_token_logprobs, LogprobOptions};
use mathrl::types::{Completion, Group};
use mathrl::Policy;
use serde_json::Value;

/// `tests/fixtures/<name>`, under `MATHRL_REPO_DIR` when set (test binaries built on one machine
/// and run from another checkout, as `scripts/gpu-check.sh` does).
pub fn fixture(name: &str) -> PathBuf {
    std::env::var_os("MATHRL_REPO_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures")
        .join(name)
}

/// Parses `tests/fixtures/<dir>/<file>` as JSON.
pub fn fixture_json(dir: &str, file: &str) -> Value {
    let path = fixture(dir).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of arrays of integers as rows of u32.
pub fn u32_rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_u64().expect("int") as u32)
                .collect()
        })
        .collect()
}

/// A JSON array of numbers as f32 (nulls become NaN).
pub fn f32_vec(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32))
        .collect()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The behaviour log-probs a completion carries, one per sampled token.
pub fn sampled_logprobs(c: &Completion) -> Vec<f32> {
    c.logprobs
        .iter()
        .map(|l| l.expect("sampled token"))
        .collect()
}

/// The training forward's log-probs of a completion's tokens at `temperature`, on the policy's
/// device: what its behaviour log-probs must equal.
pub fn training_logprobs(
    policy: &Policy,
    group: &Group,
    c: &Completion,
    temperature: f64,
) -> Vec<f32> {
    let device = policy.device();
    let ids = [group.prompt_ids.as_slice(), &c.token_ids].concat();
    let input = Tensor::new(vec![ids.clone()], device).unwrap();
    let mask = Tensor::ones((1, ids.len()), DType::U32, device).unwrap();
    let options = LogprobOptions {
        temperature,
        ..Default::default()
    };
    let lp: Vec<f32> = next_token_logprobs(policy.model(), &input, &mask, options)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    lp[group.prompt_ids.len() - 1..].to_vec()
}

/// A fixed left- and right-padded batch of 3 rows × 12 tokens (ids up to 700, within both tiny
/// fixtures' vocabularies) and its attention mask.
pub fn padded_batch() -> (Tensor, Tensor) {
    let ids = vec![
        vec![11u32, 250, 3, 77, 500, 12, 9, 640, 31, 2, 700, 45],
        vec![0, 0, 0, 88, 19, 402, 7, 615, 44, 301, 5, 66],
        vec![13, 14, 15, 16, 17, 18, 19, 20, 21, 0, 0, 0],
    ];
    let mask: Vec<Vec<u32>> = ids
        .iter()
        .enumerate()
        .map(|(r, row)| {
            (0..row.len())
                .map(|t| u32::from(!((r == 1 && t < 3) || (r == 2 && t >= 9))))
                .collect()
        })
        .collect();
    (
        Tensor::new(ids, &candle_core::Device::Cpu).unwrap(),
        Tensor::new(mask, &candle_core::Device::Cpu).unwrap(),
    )
}
