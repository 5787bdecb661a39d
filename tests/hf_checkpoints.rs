//! Checkpoints as users have them: tiny models in the exact layouts of Qwen2.5-Math-1.5B-Instruct,
//! Qwen2.5-Math-7B-Instruct and Qwen2.5-Math-RM-72B (`tests/fixtures/qwen2.5-math-hub`: bf16
//! shards with an index, Hub-form config.json, generation_config.json's eos list, the chat
//! template in chat_template.jinja only) load, render prompts, stop, save, and compute what
//! transformers computes on them.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{f32_vec, fixture, fixture_json, u32_rows};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::{next_token_logprobs, LogprobOptions, Trainable};
use mathrl::types::FinishReason;
use mathrl::{ChatMessage, Policy, Tokenizer};
use mathrl_rewards::RewardModel;
use serde_json::Value;

const HUB: &str = "qwen2.5-math-hub";
const INSTRUCT: &str = "Qwen2.5-Math-1.5B-Instruct";
const INSTRUCT_7B: &str = "Qwen2.5-Math-7B-Instruct";
const RM: &str = "Qwen2.5-Math-RM-72B";

/// f32 compute on the bf16 weights: the same numbers as transformers' up to summation order.
const F32_TOL: f32 = 1e-4;
/// bf16 compute: both sides round every activation to 8 bits of mantissa, in different orders.
const BF16_TOL: f32 = 0.1;

fn model_fixture(name: &str) -> std::path::PathBuf {
    fixture(HUB).join(name)
}

/// A copy of fixture model `name` in `dir`, with the Qwen2.5 tokenizer.json (kept once, in
/// `tests/fixtures/qwen2.5-tokenizer`) beside it as a downloaded model has it.
fn downloaded(name: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(model_fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        fixture("qwen2.5-tokenizer").join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
}

fn load(dir: &Path, dtype: DType) -> Policy {
    Policy::load(dir, &Device::Cpu, Some(dtype), Trainable::No).expect("fixture loads")
}

fn tensor(rows: &[Vec<u32>]) -> Tensor {
    Tensor::new(rows.to_vec(), &Device::Cpu).unwrap()
}

/// Compares the next-token log-probs of `policy` with `expected[key]` at real positions.
fn check_logprobs(policy: &Policy, expected: &Value, key: &str, tol: f32) {
    let ids = u32_rows(&expected["input_ids"]);
    let mask = u32_rows(&expected["attention_mask"]);
    let lp = next_token_logprobs(
        policy.model(),
        &tensor(&ids),
        &tensor(&mask),
        LogprobOptions::default(),
    )
    .unwrap();
    let lp: Vec<Vec<f32>> = lp.to_vec2().unwrap();
    let mut worst = 0f32;
    for (row, m) in mask.iter().enumerate() {
        let e = f32_vec(&expected[key][row]);
        // Position t predicts token t+1: compared where both are real tokens.
        for t in (0..e.len()).filter(|&t| m[t] == 1 && m[t + 1] == 1) {
            worst = worst.max((lp[row][t] - e[t]).abs());
        }
    }
    assert!(worst < tol, "{key}: log-probs differ by up to {worst}");
}

#[test]
fn the_qwen25_math_chat_template_renders_as_transformers_renders_it() {
    let dir = tempfile::tempdir().unwrap();
    downloaded(INSTRUCT, dir.path());
    let config = std::fs::read_to_string(dir.path().join("tokenizer_config.json")).unwrap();
    assert!(
        !config.contains("chat_template"),
        "the template must come from the .jinja file"
    );
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    let expected = fixture_json(HUB, "renderings.json");
    let renderings = expected["renderings"].as_array().unwrap();
    assert!(renderings.len() >= 10);
    for (i, case) in renderings.iter().enumerate() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
        let text = tokenizer
            .apply_chat_template(&messages, add_generation_prompt)
            .unwrap();
        assert_eq!(text, case["text"].as_str().unwrap(), "rendering {i}");
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            tokenizer.encode(&text).unwrap(),
            ids,
            "ids of rendering {i}"
        );
    }
}

#[test]
fn a_model_with_its_template_only_in_chat_template_jinja_loads_renders_and_saves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    downloaded(INSTRUCT, &dir);
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let prompt = tokenizer.question_prompt("What is $1+1$?", None).unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\nPlease reason step by step"),
        "{prompt}"
    );

    let policy = load(&dir, DType::F32);
    // config.json names <|im_end|>; generation_config.json adds <|endoftext|>.
    assert_eq!(policy.config().eos_token_ids, vec![151645, 151643]);
    assert!(policy.config().tie_word_embeddings);
    let saved = tmp.path().join("saved");
    policy.save(&saved).unwrap();
    for file in [
        "chat_template.jinja",
        "generation_config.json",
        "tokenizer_config.json",
    ] {
        assert_eq!(
            std::fs::read(saved.join(file)).unwrap(),
            std::fs::read(dir.join(file)).unwrap(),
            "{file} is copied on save"
        );
    }
    let again = Tokenizer::from_dir(&saved).unwrap();
    assert_eq!(
        again.question_prompt("What is $1+1$?", None).unwrap(),
        prompt
    );
    // Tied, so saved without lm_head, in the config's bf16.
    let reloaded = load(&saved, DType::F32);
    assert!(reloaded.config().tie_word_embeddings);
    assert!(!reloaded
        .named_tensors()
        .iter()
        .any(|(n, _)| n == "lm_head.weight"));
    check_logprobs(
        &reloaded,
        &fixture_json(&format!("{HUB}/{INSTRUCT}"), "expected.json"),
        "next_token_logprobs_f32",
        F32_TOL,
    );
}

#[test]
fn sharded_bf16_instruct_layouts_match_transformers_in_f32_and_bf16() {
    for name in [INSTRUCT, INSTRUCT_7B] {
        let expected = fixture_json(&format!("{HUB}/{name}"), "expected.json");
        let dir = model_fixture(name);
        assert!(expected["shards"].as_array().unwrap().len() >= 2, "{name}");
        check_logprobs(
            &load(&dir, DType::F32),
            &expected,
            "next_token_logprobs_f32",
            F32_TOL,
        );
        check_logprobs(
            &load(&dir, DType::BF16),
            &expected,
            "next_token_logprobs_bf16",
            BF16_TOL,
        );
    }
    let untied = load(&model_fixture(INSTRUCT_7B), DType::F32);
    assert!(!untied.config().tie_word_embeddings);
    assert!(untied
        .named_tensors()
        .iter()
        .any(|(n, _)| n == "lm_head.weight"));
}

#[test]
fn a_head_missing_from_the_weights_is_tied_even_when_config_json_does_not_say_so() {
    let dir = tempfile::tempdir().unwrap();
    downloaded(INSTRUCT, dir.path());
    let path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config
        .as_object_mut()
        .unwrap()
        .remove("tie_word_embeddings");
    std::fs::write(&path, config.to_string()).unwrap();
    let policy = load(dir.path(), DType::F32);
    assert!(policy.config().tie_word_embeddings);
    check_logprobs(
        &policy,
        &fixture_json(&format!("{HUB}/{INSTRUCT}"), "expected.json"),
        "next_token_logprobs_f32",
        F32_TOL,
    );
}

#[test]
fn the_rm_72b_layout_scores_as_the_reference_qwen2_for_reward_model() {
    let expected = fixture_json(&format!("{HUB}/{RM}"), "expected.json");
    let ids = u32_rows(&expected["input_ids"]);
    let mask = u32_rows(&expected["attention_mask"]);
    for (dtype, key, tol) in [
        (DType::F32, "scores_f32", F32_TOL),
        (DType::BF16, "scores_bf16", BF16_TOL),
    ] {
        let rm =
            RewardModel::load(model_fixture(RM), &Device::Cpu, Some(dtype), Trainable::No).unwrap();
        let scores: Vec<f32> = rm
            .forward(&tensor(&ids), &tensor(&mask))
            .unwrap()
            .to_vec1()
            .unwrap();
        let diff = common::max_abs_diff(&scores, &f32_vec(&expected[key]));
        assert!(diff < tol, "{key}: scores differ by {diff}");
    }
}

#[test]
fn generation_config_eos_ids_stop_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    downloaded(INSTRUCT, &dir);
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let text = tokenizer.question_prompt("What is $1+1$?", None).unwrap();
    let prompt = vec![tokenizer.encode(&text).unwrap()];
    let greedy = |dir: &Path, stop: Option<Vec<u32>>| {
        let mut engine = Engine::from_policy(&load(dir, DType::F32), EngineConfig::default());
        let params = SamplingParams {
            stop_token_ids: stop,
            ..SamplingParams::greedy(8)
        };
        let out = engine.generate(&prompt, &params).unwrap();
        out.groups[0].completions[0].clone()
    };
    let free = greedy(&dir, Some(vec![]));
    assert_eq!(free.token_ids.len(), 8);
    // The tiny random model never says <|im_end|> or <|endoftext|>; make generation_config.json
    // name the latest new token of its greedy completion as a stop id, as Qwen2.5 lists
    // <|endoftext|> there.
    let tokens = &free.token_ids;
    let last_new = (0..tokens.len())
        .rev()
        .find(|&k| !tokens[..k].contains(&tokens[k]))
        .unwrap();
    let generation = serde_json::json!({"eos_token_id": [151645, tokens[last_new]]});
    std::fs::write(dir.join("generation_config.json"), generation.to_string()).unwrap();
    let stopped = greedy(&dir, None);
    assert_eq!(
        stopped.token_ids,
        tokens[..=last_new].to_vec(),
        "{tokens:?}"
    );
    assert_eq!(stopped.finish_reason, FinishReason::StopToken);
    // Without generation_config.json only config.json's and the tokenizer's ids stop it.
    std::fs::remove_file(dir.join("generation_config.json")).unwrap();
    assert_eq!(greedy(&dir, None).token_ids, free.token_ids);
}

#[test]
fn a_shard_missing_from_the_index_is_named_with_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    downloaded(INSTRUCT_7B, &dir);
    std::fs::remove_file(dir.join("model-00002-of-00005.safetensors")).unwrap();
    let err = Policy::load(&dir, &Device::Cpu, None, Trainable::No)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.safetensors.index.json")
            && err.contains("1 of 5 shards missing (model-00002-of-00005.safetensors)")
            && err.contains("copy the checkpoint again"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}
