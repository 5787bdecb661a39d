//! Parity of the Qwen2 model with the reference implementation (transformers) on
//! `tests/fixtures/tiny-qwen2` and `tests/fixtures/tiny-qwen2-untied`, plus save/load round trips
//! and the weight-loading errors.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{f32_vec, fixture, fixture_json, max_abs_diff, u32_rows};
use mathrl::model::{next_token_logprobs, LogprobOptions, Trainable};
use mathrl::Policy;
use serde_json::Value;

/// Logits and log-probs must match transformers within this (float32; the reference's own
/// sdpa-vs-eager difference is ~5e-6).
const TOL: f32 = 1e-4;

fn load(name: &str) -> Policy {
    Policy::load(fixture(name), &Device::Cpu, Some(DType::F32), Trainable::No)
        .expect("fixture loads")
}

fn batch(rows: &[Vec<u32>]) -> Tensor {
    Tensor::new(rows.to_vec(), &Device::Cpu).unwrap()
}

/// Logits of `row` at the positions where `mask` is 1, flattened.
fn real_logits(logits: &Tensor, row: usize, mask: &[u32]) -> Vec<f32> {
    let rows: Vec<Vec<f32>> = logits.get(row).unwrap().to_vec2().unwrap();
    rows.into_iter()
        .zip(mask)
        .filter(|(_, &m)| m == 1)
        .flat_map(|(r, _)| r)
        .collect()
}

fn expected_logits(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|pos| f32_vec(pos))
        .collect()
}

fn check_fixture(name: &str) {
    let policy = load(name);
    let exp = fixture_json(name, "expected.json");
    let ids = u32_rows(&exp["input_ids"]);
    let mask = u32_rows(&exp["attention_mask"]);
    let out = policy.model().forward(&batch(&ids), &batch(&mask)).unwrap();
    let v = policy.config().vocab_size;
    assert_eq!(out.logits.dims(), &[ids.len(), ids[0].len(), v]);

    for (row, row_mask) in mask.iter().enumerate() {
        // Real query positions only; the reference with default positions and with HF generate's
        // cumsum positions agree there.
        let expected: Vec<f32> = expected_logits(&exp["logits"][row])
            .into_iter()
            .zip(row_mask)
            .filter(|(_, &m)| m == 1)
            .flat_map(|(r, _)| r)
            .collect();
        let diff = max_abs_diff(&real_logits(&out.logits, row, row_mask), &expected);
        assert!(diff < TOL, "{name} row {row}: logits differ by {diff}");
    }
    if let Some(cumsum) = exp.get("logits_row1_cumsum_positions") {
        let expected: Vec<f32> = expected_logits(cumsum)
            .into_iter()
            .zip(&mask[1])
            .filter(|(_, &m)| m == 1)
            .flat_map(|(r, _)| r)
            .collect();
        let diff = max_abs_diff(&real_logits(&out.logits, 1, &mask[1]), &expected);
        assert!(
            diff < TOL,
            "{name} left-padded row (cumsum positions): logits differ by {diff}"
        );
    }

    let lp = next_token_logprobs(
        policy.model(),
        &batch(&ids),
        &batch(&mask),
        LogprobOptions::default(),
    )
    .unwrap();
    let lp: Vec<Vec<f32>> = lp.to_vec2().unwrap();
    let lp_mask = u32_rows(&exp["next_token_logprobs_mask"]);
    for key in [
        "next_token_logprobs",
        "next_token_logprobs_cumsum_positions",
    ] {
        let Some(expected) = exp.get(key) else {
            continue;
        };
        for (row, m) in lp_mask.iter().enumerate() {
            let e = f32_vec(&expected[row]);
            for (t, &keep) in m.iter().enumerate() {
                if keep == 1 {
                    let d = (lp[row][t] - e[t]).abs();
                    assert!(
                        d < TOL,
                        "{name} {key}[{row}][{t}]: {} vs {} ({d})",
                        lp[row][t],
                        e[t]
                    );
                }
            }
        }
    }
}

#[test]
fn tiny_qwen2_matches_transformers_logits_and_logprobs() {
    check_fixture("tiny-qwen2");
}

#[test]
fn untied_gqa3_checkpoint_matches_transformers() {
    check_fixture("tiny-qwen2-untied");
}

#[test]
fn right_padding_gives_the_unpadded_logits() {
    let policy = load("tiny-qwen2");
    let exp = fixture_json("tiny-qwen2", "expected.json");
    let full = u32_rows(&exp["input_ids"])[0].clone();
    let keep = full.len() - 3;
    let mut ids = full[..keep].to_vec();
    ids.extend([0, 0, 0]);
    let mask: Vec<u32> = (0..full.len()).map(|i| u32::from(i < keep)).collect();
    let out = policy
        .model()
        .forward(&batch(&[ids]), &batch(&[mask.clone()]))
        .unwrap();
    let expected: Vec<f32> = expected_logits(&exp["logits"][0])
        .into_iter()
        .take(keep)
        .flatten()
        .collect();
    let diff = max_abs_diff(&real_logits(&out.logits, 0, &mask), &expected);
    assert!(diff < TOL, "right-padded row differs by {diff}");
}

#[test]
fn chunked_logprobs_equal_unchunked_and_respect_temperature() {
    let policy = load("tiny-qwen2");
    let exp = fixture_json("tiny-qwen2", "expected.json");
    let ids = batch(&u32_rows(&exp["input_ids"]));
    let mask = batch(&u32_rows(&exp["attention_mask"]));
    let whole = LogprobOptions {
        temperature: 0.7,
        chunk_positions: 10_000,
    };
    let chunked = LogprobOptions {
        temperature: 0.7,
        chunk_positions: 5,
    };
    let a: Vec<Vec<f32>> = next_token_logprobs(policy.model(), &ids, &mask, whole)
        .unwrap()
        .to_vec2()
        .unwrap();
    let b: Vec<Vec<f32>> = next_token_logprobs(policy.model(), &ids, &mask, chunked)
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(a, b);
    // At temperature 0.7 the log-prob is log_softmax(logits / 0.7) of the reference logits.
    let logits = expected_logits(&exp["logits"][0]);
    let target = u32_rows(&exp["input_ids"])[0][1] as usize;
    let scaled: Vec<f64> = logits[0].iter().map(|&x| x as f64 / 0.7).collect();
    let max = scaled.iter().cloned().fold(f64::MIN, f64::max);
    let lse = max + scaled.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    assert!((a[0][0] as f64 - (scaled[target] - lse)).abs() < 1e-4);
}

#[test]
fn save_then_load_gives_identical_logits_names_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny-qwen2", "tiny-qwen2-untied"] {
        let policy = load(name);
        let out_dir = dir.path().join(name);
        policy.save(&out_dir).unwrap();
        let again = Policy::load(&out_dir, &Device::Cpu, Some(DType::F32), Trainable::No).unwrap();

        let original =
            candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)
                .unwrap();
        let saved = candle_core::safetensors::load(out_dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
        let mut a: Vec<(String, Vec<usize>)> = original
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        let mut b: Vec<(String, Vec<usize>)> = saved
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: saved tensor names/shapes differ");

        let exp = fixture_json(name, "expected.json");
        let ids = batch(&u32_rows(&exp["input_ids"]));
        let mask = batch(&u32_rows(&exp["attention_mask"]));
        let x: Vec<f32> = policy
            .model()
            .forward(&ids, &mask)
            .unwrap()
            .logits
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let y: Vec<f32> = again
            .model()
            .forward(&ids, &mask)
            .unwrap()
            .logits
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name}: logits not bit-identical"
        );
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(
            config["tie_word_embeddings"],
            Value::Bool(policy.config().tie_word_embeddings)
        );
    }
}

fn copy_fixture(name: &str, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), to.join(f)).unwrap();
    }
}

#[test]
fn missing_or_misshaped_tensors_are_errors_naming_the_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = candle_core::safetensors::load(
        fixture("tiny-qwen2").join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();

    let missing = dir.path().join("missing");
    copy_fixture("tiny-qwen2", &missing);
    let mut some = tensors.clone();
    some.remove("model.layers.1.mlp.up_proj.weight");
    candle_core::safetensors::save(&some, missing.join("model.safetensors")).unwrap();
    let err = Policy::load(&missing, &Device::Cpu, None, Trainable::No)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("missing"),
        "{err}"
    );

    let misshaped = dir.path().join("misshaped");
    copy_fixture("tiny-qwen2", &misshaped);
    let mut bad = tensors.clone();
    bad.insert(
        "model.norm.weight".into(),
        Tensor::zeros(63, DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&bad, misshaped.join("model.safetensors")).unwrap();
    let err = Policy::load(&misshaped, &Device::Cpu, None, Trainable::No)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.norm.weight") && err.contains("[63]") && err.contains("[64]"),
        "{err}"
    );

    let err = Policy::load(
        dir.path().join("nowhere"),
        &Device::Cpu,
        None,
        Trainable::No,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn sharded_checkpoints_load_like_single_files() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = candle_core::safetensors::load(
        fixture("tiny-qwen2").join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    std::fs::copy(
        fixture("tiny-qwen2").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let (mut a, mut b) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    let mut weight_map = serde_json::Map::new();
    for (i, (name, t)) in tensors.into_iter().enumerate() {
        let file = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        weight_map.insert(name.clone(), file.into());
        if i % 2 == 0 {
            a.insert(name, t)
        } else {
            b.insert(name, t)
        };
    }
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let sharded = Policy::load(dir.path(), &Device::Cpu, None, Trainable::No).unwrap();
    let single = load("tiny-qwen2");
    let ids = batch(&[vec![5, 17, 42, 99]]);
    let mask = batch(&[vec![1, 1, 1, 1]]);
    let x = sharded
        .model()
        .forward(&ids, &mask)
        .unwrap()
        .logits
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let y = single
        .model()
        .forward(&ids, &mask)
        .unwrap()
        .logits
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(x, y);
}
