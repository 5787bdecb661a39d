//! Reward-model parity with the reference implementations on `tests/fixtures/tiny-rm`
//! (Qwen2.5-Math-RM layout), `tests/fixtures/tiny-rm-seqcls` (transformers'
//! Qwen2ForSequenceClassification) and `rewards/tests/fixtures/rm-seqcls-gqa3` (another shape).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use mathrl::model::Trainable;
use mathrl_rewards::{RewardHeadKind, RewardModel};
use serde_json::Value;

/// Rewards, hidden states and token scores must match within this (float32).
const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let local = root.join("tests/fixtures").join(name);
    if local.is_dir() {
        local
    } else {
        root.join("../tests/fixtures").join(name)
    }
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap())
        .unwrap()
}

fn rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn rewards_of(rm: &RewardModel, exp: &Value) -> Vec<f32> {
    let ids = Tensor::new(rows(&exp["input_ids"]), &Device::Cpu).unwrap();
    let mask = Tensor::new(rows(&exp["attention_mask"]), &Device::Cpu).unwrap();
    rm.forward(&ids, &mask).unwrap().to_vec1().unwrap()
}

fn assert_close(got: &[f32], want: &Value, what: &str) {
    let want: Vec<f32> = want
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < TOL, "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn scores_match_the_reference_for_unpadded_right_and_left_padded_rows() {
    for (name, kind) in [
        ("tiny-rm", RewardHeadKind::Qwen25MathRm),
        ("tiny-rm-seqcls", RewardHeadKind::SequenceClassification),
        ("rm-seqcls-gqa3", RewardHeadKind::SequenceClassification),
    ] {
        let rm = RewardModel::load(fixture(name), &Device::Cpu, Some(DType::F32), Trainable::No)
            .unwrap();
        assert_eq!(rm.kind(), kind, "{name}");
        let exp = expected(name);
        assert_close(&rewards_of(&rm, &exp), &exp["rewards"], name);
        if let Some(pairs) = exp.get("pairs") {
            let ids = rows(&pairs["input_ids"]);
            let got = rm.score_ids(&ids, 4).unwrap();
            assert_close(&got, &pairs["rewards"], &format!("{name} pairs"));
        }
    }
}

#[test]
fn token_scores_match_at_every_real_position() {
    for name in ["tiny-rm", "tiny-rm-seqcls"] {
        let rm = RewardModel::load(fixture(name), &Device::Cpu, Some(DType::F32), Trainable::No)
            .unwrap();
        let exp = expected(name);
        let ids = Tensor::new(rows(&exp["input_ids"]), &Device::Cpu).unwrap();
        let mask = Tensor::new(rows(&exp["attention_mask"]), &Device::Cpu).unwrap();
        let scores: Vec<Vec<f32>> = rm.token_scores(&ids, &mask).unwrap().to_vec2().unwrap();
        let mut compared = 0;
        for (r, row) in exp["token_scores"].as_array().unwrap().iter().enumerate() {
            for (t, want) in row.as_array().unwrap().iter().enumerate() {
                if let Some(w) = want.as_f64() {
                    assert!(
                        (scores[r][t] - w as f32).abs() < TOL,
                        "{name} token score [{r}][{t}]"
                    );
                    compared += 1;
                }
            }
        }
        assert!(
            compared >= 25,
            "{name}: only {compared} token scores compared"
        );
    }
}

#[test]
fn save_and_reload_keeps_layout_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny-rm", "tiny-rm-seqcls"] {
        let rm = RewardModel::load(fixture(name), &Device::Cpu, Some(DType::F32), Trainable::No)
            .unwrap();
        let out = dir.path().join(name);
        rm.save(&out).unwrap();
        let again = RewardModel::load(&out, &Device::Cpu, Some(DType::F32), Trainable::No).unwrap();
        assert_eq!(again.kind(), rm.kind());
        let mut a: Vec<String> = rm.named_tensors().into_iter().map(|(n, _)| n).collect();
        let mut b: Vec<String> =
            candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu)
                .unwrap()
                .into_keys()
                .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let exp = expected(name);
        assert_eq!(rewards_of(&rm, &exp), rewards_of(&again, &exp));
    }
}

#[test]
fn rm_from_a_policy_shares_its_backbone_and_is_trainable() {
    let policy = mathrl::Policy::load(
        fixture("tiny-qwen2"),
        &Device::Cpu,
        Some(DType::F32),
        Trainable::No,
    )
    .unwrap();
    let rm =
        RewardModel::from_policy(&policy, RewardHeadKind::Qwen25MathRm, 7, Trainable::Yes).unwrap();
    let ids = Tensor::new(
        vec![vec![5u32, 17, 42, 99], vec![0, 5, 17, 42]],
        &Device::Cpu,
    )
    .unwrap();
    let mask = Tensor::new(vec![vec![1u32, 1, 1, 1], vec![0, 1, 1, 1]], &Device::Cpu).unwrap();
    let r = rm.forward(&ids, &mask).unwrap();
    let grads = r.sum_all().unwrap().backward().unwrap();
    let vars = rm.vars();
    assert!(vars.iter().any(|(n, _)| n == "score.2.bias"));
    assert!(!vars.iter().any(|(n, _)| n.starts_with("lm_head")));
    for (name, var) in vars {
        assert!(grads.get(&var).is_some(), "{name} got no gradient");
    }
    let err = RewardModel::load(fixture("tiny-qwen2"), &Device::Cpu, None, Trainable::No)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Qwen2ForCausalLM") && err.contains("not a reward model"),
        "{err}"
    );
}

#[test]
fn an_all_padding_row_is_an_error_naming_it() {
    let rm = RewardModel::load(
        fixture("tiny-rm"),
        &Device::Cpu,
        Some(DType::F32),
        Trainable::No,
    )
    .unwrap();
    let ids = Tensor::new(vec![vec![5u32, 6], vec![0, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(vec![vec![1u32, 1], vec![0, 0]], &Device::Cpu).unwrap();
    let err = rm.forward(&ids, &mask).err().unwrap().to_string();
    assert!(err.contains("row 1"), "{err}");
}

#[test]
fn a_group_sharing_its_prompt_scores_packed_as_padded_one_by_one() {
    for name in ["tiny-rm", "tiny-rm-seqcls", "rm-seqcls-gqa3"] {
        let rm = RewardModel::load(fixture(name), &Device::Cpu, Some(DType::F32), Trainable::No)
            .unwrap();
        // A 24-token prompt, then responses of 1 to 9 tokens; the last response is empty (the
        // sequence is the prompt itself).
        let prompt: Vec<u32> = (0..24).map(|i| (i * 7 + 3) % 97 + 1).collect();
        let group: Vec<Vec<u32>> = (0..6)
            .map(|r| {
                let response =
                    (0..(1 + r * 8 / 5) % 10).map(|j| ((r * 13 + j * 5) % 89 + 2) as u32);
                prompt.iter().copied().chain(response).collect()
            })
            .chain(std::iter::once(prompt.clone()))
            .collect();
        // Repeats, as a group's completions often are: each scored like its original.
        let group: Vec<Vec<u32>> = group
            .iter()
            .cloned()
            .chain([group[2].clone(), group[0].clone()])
            .collect();
        let packed_len = prompt.len() + group.iter().map(|s| s.len() - prompt.len()).sum::<usize>();
        let width = group.iter().map(Vec::len).max().unwrap();
        assert!(
            mathrl::model::packing_pays(rm.config(), group.len(), width, packed_len),
            "{name}: the case must take the packed path"
        );
        let packed = rm.score_ids(&group, group.len()).unwrap();
        let alone = rm.score_ids(&group, 1).unwrap();
        assert_eq!(packed.len(), group.len());
        for (i, (p, a)) in packed.iter().zip(&alone).enumerate() {
            assert!(
                (p - a).abs() < 1e-5,
                "{name} sequence {i}: packed {p} vs alone {a}"
            );
        }
        // Different responses score differently: the comparison is not of a constant.
        assert!(
            alone.iter().any(|&a| (a - alone[0]).abs() > 1e-4),
            "{name}: {alone:?}"
        );
    }
}
