//! The generation engine against the reference (transformers' greedy `generate` on the tiny
//! fixtures), against the training forward (behaviour log-probs), and on its own promises:
//! seeded determinism whatever the batching, one prefill per group, continuous batching equal to
//! unbatched generation, the KV budget, stop strings and tool-integrated reasoning.

mod common;

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use common::{f32_vec, fixture, fixture_json, sampled_logprobs, training_logprobs, u32_rows};
use mathrl::generation::{Engine, EngineConfig, GenerateOutput, SamplingParams, ToolExecutor};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::types::{Completion, FinishReason};
use mathrl::{Policy, Tokenizer};
use serde_json::json;

/// Log-probs must match the reference within this (float32).
const TOL: f32 = 1e-4;

fn load(name: &str) -> Policy {
    Policy::load(fixture(name), &Device::Cpu, Some(DType::F32), Trainable::No)
        .expect("fixture loads")
}

fn engine(policy: &Policy, max_live_sequences: usize) -> Engine {
    Engine::from_policy(
        policy,
        EngineConfig {
            max_live_sequences,
            ..EngineConfig::default()
        },
    )
}

fn no_stop(params: SamplingParams) -> SamplingParams {
    SamplingParams {
        stop_token_ids: Some(vec![]),
        ..params
    }
}

fn completions(out: &GenerateOutput) -> Vec<&Completion> {
    out.groups.iter().flat_map(|g| &g.completions).collect()
}

fn assert_same_completions(a: &GenerateOutput, b: &GenerateOutput, what: &str) {
    let (a, b) = (completions(a), completions(b));
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.token_ids, y.token_ids, "{what}: completion {i}");
        assert_eq!(x.finish_reason, y.finish_reason, "{what}: completion {i}");
        let diff = common::max_abs_diff(&sampled_logprobs(x), &sampled_logprobs(y));
        assert!(
            diff < 1e-5,
            "{what}: completion {i} log-probs differ by {diff}"
        );
    }
}

/// Rows of a left-padded batch without their padding.
fn unpad(ids: &[Vec<u32>], mask: &[Vec<u32>]) -> Vec<Vec<u32>> {
    ids.iter()
        .zip(mask)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, &m)| m == 1)
                .map(|(&t, _)| t)
                .collect()
        })
        .collect()
}

fn check_greedy_parity(name: &str) {
    let policy = load(name);
    let exp = fixture_json(name, "expected.json");
    let greedy = &exp["greedy"];
    let prompt: Vec<u32> = greedy["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let max_new = greedy["max_new_tokens"].as_u64().unwrap() as usize;
    let expected: Vec<u32> = greedy["output_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let params = no_stop(SamplingParams::greedy(max_new));
    let out = engine(&policy, 8)
        .generate(std::slice::from_ref(&prompt), &params)
        .unwrap();
    let c = &out.groups[0].completions[0];
    assert_eq!(
        [prompt.as_slice(), &c.token_ids].concat(),
        expected,
        "{name}: greedy"
    );
    assert_eq!(c.finish_reason, FinishReason::Length);
    if let Some(lp) = greedy.get("chosen_token_logprobs") {
        let diff = common::max_abs_diff(&sampled_logprobs(c), &f32_vec(lp));
        assert!(diff < TOL, "{name}: greedy log-probs differ by {diff}");
    }

    let batch = &exp["greedy_batch_left_padded"];
    let prompts = unpad(
        &u32_rows(&batch["input_ids"]),
        &u32_rows(&batch["attention_mask"]),
    );
    let expected = unpad(
        &u32_rows(&batch["output_ids"]),
        &u32_rows(&batch["attention_mask"])
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.resize(
                    m.len() + batch["max_new_tokens"].as_u64().unwrap() as usize,
                    1,
                );
                m
            })
            .collect::<Vec<_>>(),
    );
    let params = no_stop(SamplingParams::greedy(
        batch["max_new_tokens"].as_u64().unwrap() as usize,
    ));
    let out = engine(&policy, 8).generate(&prompts, &params).unwrap();
    assert_eq!(
        out.stats.prefill_batches, 1,
        "both prompts prefilled in one batch"
    );
    for (row, group) in out.groups.iter().enumerate() {
        let ids = [group.prompt_ids.as_slice(), &group.completions[0].token_ids].concat();
        assert_eq!(ids, expected[row], "{name}: left-padded batch row {row}");
    }
}

#[test]
fn greedy_matches_the_reference_tied() {
    check_greedy_parity("tiny-qwen2");
}

#[test]
fn greedy_matches_the_reference_untied_gqa() {
    check_greedy_parity("tiny-qwen2-untied");
}

#[test]
fn behaviour_logprobs_equal_the_training_forward_at_the_sampling_temperature() {
    let policy = load("tiny-qwen2-untied");
    let prompts = vec![vec![5, 17, 42], vec![9, 8, 7, 300, 301, 2, 77]];
    for params in [
        SamplingParams {
            temperature: 0.7,
            seed: 3,
            n: 2,
            max_new_tokens: 16,
            ..Default::default()
        },
        // Truncation changes what is drawn, not the log-prob reported (taken before truncation).
        SamplingParams {
            temperature: 1.3,
            top_k: 20,
            top_p: 0.8,
            seed: 4,
            n: 2,
            max_new_tokens: 16,
            ..Default::default()
        },
    ] {
        let out = engine(&policy, 8)
            .generate(&prompts, &no_stop(params.clone()))
            .unwrap();
        for group in &out.groups {
            for c in &group.completions {
                let training = training_logprobs(&policy, group, c, params.temperature);
                let diff = common::max_abs_diff(&sampled_logprobs(c), &training);
                assert!(
                    diff < TOL,
                    "T = {}: behaviour vs training log-probs differ by {diff}",
                    params.temperature
                );
            }
        }
    }
}

/// `bf16_weights` samples exactly as an f32 model holding the bf16-rounded projection and head
/// weights would (the panel kernel widens them to f32), through the decode steps and, with a
/// prompt of more than 16 tokens, a larger prefill; and not as the f32 model.
#[test]
fn bf16_weights_sample_as_the_f32_model_of_their_rounded_values() {
    for name in ["tiny-qwen2", "tiny-qwen2-untied"] {
        let policy = load(name);
        let rounded = policy
            .model()
            .to_panels(DType::BF16)
            .and_then(|m| m.to_panels(DType::F32))
            .unwrap();
        assert_eq!(rounded.lm_head().unwrap().dtype(), DType::F32);
        let prompts = vec![(1..=20).collect::<Vec<u32>>(), vec![400, 5, 6]];
        let params = no_stop(SamplingParams {
            seed: 7,
            n: 4,
            max_new_tokens: 12,
            ..Default::default()
        });
        let bf16 = Engine::from_policy(
            &policy,
            EngineConfig {
                bf16_weights: true,
                ..EngineConfig::default()
            },
        )
        .generate(&prompts, &params)
        .unwrap();
        let widened = Engine::new(rounded, EngineConfig::default())
            .generate(&prompts, &params)
            .unwrap();
        assert_same_completions(&bf16, &widened, name);
        let f32_out = engine(&policy, 64).generate(&prompts, &params).unwrap();
        // Over each pair's common start (a rounding may flip a draw; the contexts agree there).
        let drift = completions(&bf16)
            .iter()
            .zip(completions(&f32_out))
            .map(|(a, b)| {
                let same = a
                    .token_ids
                    .iter()
                    .zip(&b.token_ids)
                    .take_while(|(x, y)| x == y);
                let (a, b) = (sampled_logprobs(a), sampled_logprobs(b));
                let n = same.count();
                common::max_abs_diff(&a[..n], &b[..n])
            })
            .fold(0f32, f32::max);
        // Rounding the weights moves the log-probs a little: by a measurable amount, not much.
        assert!(
            drift > 1e-6 && drift < 0.1,
            "{name}: bf16 vs f32 drift {drift}"
        );
    }
}

#[test]
fn a_seed_gives_the_same_completions_whatever_the_batch_size() {
    let policy = load("tiny-qwen2");
    let prompts: Vec<Vec<u32>> = vec![
        vec![1, 2, 3],
        vec![400, 5],
        vec![7, 8, 9, 10, 11, 12],
        vec![33],
    ];
    let params = no_stop(SamplingParams {
        seed: 11,
        n: 3,
        max_new_tokens: 12,
        top_p: 0.95,
        ..Default::default()
    });
    let reference = engine(&policy, 64).generate(&prompts, &params).unwrap();
    let again = engine(&policy, 64).generate(&prompts, &params).unwrap();
    assert_same_completions(&reference, &again, "same call twice");
    for max_live in [1, 2, 5] {
        let other = engine(&policy, max_live)
            .generate(&prompts, &params)
            .unwrap();
        assert_same_completions(
            &reference,
            &other,
            &format!("max_live_sequences {max_live}"),
        );
        assert!(other.stats.peak_live_sequences <= max_live);
    }
    let other_seed = engine(&policy, 64)
        .generate(&prompts, &SamplingParams { seed: 12, ..params })
        .unwrap();
    assert_ne!(
        completions(&reference)[0].token_ids,
        completions(&other_seed)[0].token_ids
    );
}

#[test]
fn a_group_shares_one_prefill_of_its_prompt() {
    let policy = load("tiny-qwen2");
    let prompts = vec![vec![5, 17, 42, 99, 3, 8], vec![100, 200]];
    let params = no_stop(SamplingParams {
        seed: 5,
        n: 4,
        max_new_tokens: 10,
        ..Default::default()
    });
    // With room for all samples at once, and with 3 slots (samples of a prompt wait for slots
    // and start from a held copy of the prompt's cache).
    let mut results = Vec::new();
    for max_live in [64, 3] {
        let out = engine(&policy, max_live)
            .generate(&prompts, &params)
            .unwrap();
        assert_eq!(
            out.stats.prefills, 2,
            "max_live {max_live}: one prefill per prompt"
        );
        assert_eq!(out.stats.prefill_tokens, 8);
        assert_eq!(
            out.stats.prefix_copies, 6,
            "max_live {max_live}: the other 3 samples of each copy it"
        );
        for group in &out.groups {
            let distinct: std::collections::HashSet<&Vec<u32>> =
                group.completions.iter().map(|c| &c.token_ids).collect();
            assert_eq!(distinct.len(), 4, "four different completions");
            assert!(group
                .completions
                .iter()
                .enumerate()
                .all(|(j, c)| c.sample_index == j));
        }
        results.push(out);
    }
    assert_same_completions(
        &results[0],
        &results[1],
        "held prefix vs shared slot copies",
    );
}

#[test]
fn continuous_batching_with_two_slots_equals_unbatched_generation() {
    let policy = load("tiny-qwen2");
    let prompts: Vec<Vec<u32>> = [1usize, 37, 4, 60, 12]
        .iter()
        .enumerate()
        .map(|(p, &len)| {
            (0..len)
                .map(|t| ((p * 131 + t * 17) % 1000) as u32 + 1)
                .collect()
        })
        .collect();
    // Many stop tokens, so completions end at very different lengths.
    let params = SamplingParams {
        seed: 2,
        max_new_tokens: 40,
        stop_token_ids: Some((0..1024).step_by(30).collect()),
        ..Default::default()
    };
    let batched = engine(&policy, 2).generate(&prompts, &params).unwrap();
    assert_eq!(batched.stats.peak_live_sequences, 2);
    let lengths: Vec<usize> = completions(&batched)
        .iter()
        .map(|c| c.token_ids.len())
        .collect();
    assert!(
        lengths.iter().max().unwrap() - lengths.iter().min().unwrap() >= 10,
        "lengths {lengths:?}"
    );
    assert!(
        batched.stats.decode_steps < lengths.iter().sum::<usize>(),
        "slots were shared by the decode steps"
    );
    // Unbatched: one sequence at a time.
    let unbatched = engine(&policy, 1).generate(&prompts, &params).unwrap();
    assert_eq!(unbatched.stats.peak_live_sequences, 1);
    assert_same_completions(&unbatched, &batched, "2 slots vs 1");
}

#[test]
fn the_kv_budget_limits_slots_and_a_prompt_that_cannot_fit_is_a_clear_error() {
    let policy = load("tiny-qwen2");
    // 2 layers x (k, v) x 2 KV heads x 16 dims x 4 bytes = 512 bytes per position.
    let prompts = vec![vec![1; 10], vec![2; 30]];
    let params = no_stop(SamplingParams {
        max_new_tokens: 9,
        ..Default::default()
    });
    let per_slot = (30 + 9 + 1) * 512;
    let mut e = Engine::from_policy(
        &policy,
        EngineConfig {
            kv_cache_bytes: per_slot,
            ..EngineConfig::default()
        },
    );
    let out = e.generate(&prompts, &params).unwrap();
    assert_eq!(
        (
            out.stats.slots,
            out.stats.peak_live_sequences,
            out.stats.kv_cache_bytes
        ),
        (1, 1, per_slot)
    );
    let mut e = Engine::from_policy(
        &policy,
        EngineConfig {
            kv_cache_bytes: per_slot - 1,
            ..EngineConfig::default()
        },
    );
    let err = e.generate(&prompts, &params).unwrap_err().to_string();
    assert!(
        err.contains("prompt 1 (30 tokens)") && err.contains("kv_cache_bytes"),
        "{err}"
    );
}

#[test]
fn malformed_prompts_are_errors_naming_the_prompt() {
    let policy = load("tiny-qwen2");
    let mut e = engine(&policy, 4);
    let err = e
        .generate(&[vec![1], vec![]], &SamplingParams::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt 1 is empty"), "{err}");
    let err = e
        .generate(&[vec![1, 5000]], &SamplingParams::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt 0, position 1: token id 5000"), "{err}");
    let err = e.generate(
        &[vec![1]],
        &SamplingParams {
            stop_strings: vec!["x".into()],
            ..Default::default()
        },
    );
    assert!(err.unwrap_err().to_string().contains("need a tokenizer"));
}

// ---- Tool-integrated reasoning, on a scripted model -------------------------------------------

/// Multi-character tokens of the scripted tokenizer, ids 1.. (id 0 is `<eos>`).
const SCRIPT_TOKENS: [&str; 7] = [
    "```python\n",
    "print(2+3)\n",
    "```\n",
    "```output",
    "\n```\n",
    "\\boxed{5}",
    "R",
];

/// A tokenizer over printable ASCII and "\n", plus the script tokens as added tokens.
fn script_tokenizer() -> Tokenizer {
    let mut vocab = serde_json::Map::new();
    let mut added = vec![
        json!({"id": 0, "content": "<eos>", "special": true, "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": false}),
    ];
    vocab.insert("<eos>".into(), 0.into());
    for (i, t) in SCRIPT_TOKENS.iter().enumerate() {
        vocab.insert(t.to_string(), (i + 1).into());
        added.push(
            json!({"id": i + 1, "content": t, "special": false, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false}),
        );
    }
    for (i, c) in (32u8..127).map(char::from).chain(['\n']).enumerate() {
        vocab.insert(c.to_string(), (8 + i).into());
    }
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
    });
    let inner = tokenizers::Tokenizer::from_bytes(tokenizer.to_string().as_bytes()).unwrap();
    Tokenizer::new(inner, &json!({"eos_token": "<eos>"})).unwrap()
}

/// A one-layer model whose attention and MLP add nothing, so the next token depends on the
/// current one only: each (from, to) pair makes `to` win by a logit margin of 80.
fn bigram_policy(pairs: &[(u32, u32)]) -> Policy {
    let (vocab, hidden, inter) = (128, 64, 32);
    let config = Qwen2Config::from_json(&json!({
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false
    }))
    .unwrap();
    let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    let ones = |n: usize| Tensor::ones(n, DType::F32, &Device::Cpu).unwrap();
    let mut embed = vec![0f32; vocab * hidden];
    for i in 0..hidden {
        embed[i * hidden + i] = 1.0; // token i < 64 is the unit vector e_i
    }
    let mut head = vec![0f32; vocab * hidden];
    for &(from, to) in pairs {
        assert!((from as usize) < hidden);
        head[to as usize * hidden + from as usize] = 10.0; // x 8 after RMSNorm of a unit vector
    }
    let l = "model.layers.0";
    let mut tensors = vec![
        (
            "model.embed_tokens.weight".to_string(),
            Tensor::from_vec(embed, (vocab, hidden), &Device::Cpu).unwrap(),
        ),
        (
            "lm_head.weight".to_string(),
            Tensor::from_vec(head, (vocab, hidden), &Device::Cpu).unwrap(),
        ),
        ("model.norm.weight".to_string(), ones(hidden)),
        (format!("{l}.input_layernorm.weight"), ones(hidden)),
        (format!("{l}.post_attention_layernorm.weight"), ones(hidden)),
        (
            format!("{l}.self_attn.q_proj.weight"),
            zeros(&[hidden, hidden]),
        ),
        (format!("{l}.self_attn.q_proj.bias"), zeros(&[hidden])),
        (format!("{l}.self_attn.k_proj.weight"), zeros(&[32, hidden])),
        (format!("{l}.self_attn.k_proj.bias"), zeros(&[32])),
        (format!("{l}.self_attn.v_proj.weight"), zeros(&[32, hidden])),
        (format!("{l}.self_attn.v_proj.bias"), zeros(&[32])),
        (
            format!("{l}.self_attn.o_proj.weight"),
            zeros(&[hidden, hidden]),
        ),
        (format!("{l}.mlp.gate_proj.weight"), zeros(&[inter, hidden])),
        (format!("{l}.mlp.up_proj.weight"), zeros(&[inter, hidden])),
        (format!("{l}.mlp.down_proj.weight"), zeros(&[hidden, inter])),
    ];
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Policy::from_tensors(&config, tensors, &Device::Cpu, DType::F32, Trainable::No).unwrap()
}

fn id(tok: &Tokenizer, text: &str) -> u32 {
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids.len(), 1, "{text:?} is one token");
    ids[0]
}

/// The script: "Q" -> python block -> "```output"; after the tool's "\n```\n" -> "\boxed{5}" ->
/// `<eos>` (or, with `again`, another python block, forever).
fn script(tok: &Tokenizer, again: bool) -> Policy {
    let [py, print, close, trigger, out_close, boxed, r] = SCRIPT_TOKENS.map(|t| id(tok, t));
    let after_output = if again { py } else { boxed };
    bigram_policy(&[
        (id(tok, "Q"), py),
        (py, print),
        (print, close),
        (close, trigger),
        (trigger, r),
        (out_close, after_output),
        (boxed, 0),
    ])
}

/// Evaluates "print(2+3)" (the last line of the program); records every program.
#[derive(Default)]
struct FakePython {
    programs: Mutex<Vec<String>>,
}

impl ToolExecutor for FakePython {
    fn execute(&self, code: &str) -> String {
        self.programs.lock().unwrap().push(code.to_string());
        match code.trim().lines().last() {
            Some("print(2+3)") => "5".to_string(),
            _ => format!("SyntaxError: cannot run {code:?}"),
        }
    }
}

fn tir_engine(again: bool) -> (Engine, Arc<FakePython>, Tokenizer) {
    let tok = script_tokenizer();
    let python = Arc::new(FakePython::default());
    let engine = Engine::from_policy(&script(&tok, again), EngineConfig::default())
        .with_tokenizer(tok.clone())
        .with_tool(python.clone());
    (engine, python, tok)
}

/// The one completion of `prompt` under `params`.
fn first_completion(engine: &mut Engine, prompt: &[u32], params: &SamplingParams) -> Completion {
    engine.generate(&[prompt.to_vec()], params).unwrap().groups[0].completions[0].clone()
}

#[test]
fn a_tool_call_appends_the_output_block_as_masked_tokens_and_generation_resumes() {
    let (mut engine, python, tok) = tir_engine(false);
    let prompt = tok.encode("Q").unwrap();
    let params = SamplingParams {
        n: 3,
        seed: 1,
        max_new_tokens: 64,
        ..Default::default()
    };
    let out = engine.generate(&[prompt], &params).unwrap();
    assert_eq!(out.stats.tool_calls, 3);
    for c in &out.groups[0].completions {
        assert_eq!(
            c.text.as_deref(),
            Some("```python\nprint(2+3)\n```\n```output\n5\n```\n\\boxed{5}")
        );
        assert_eq!(
            (c.finish_reason, c.tool_calls),
            (FinishReason::StopToken, 1)
        );
        let tool_ids = tok.encode("\n5\n```\n").unwrap();
        assert_eq!(tool_ids.len(), 3);
        let expected_mask = [false, false, false, false, true, true, true, false, false];
        assert_eq!(c.tool_mask, expected_mask);
        assert_eq!(&c.token_ids[4..7], tool_ids.as_slice());
        assert!(c
            .logprobs
            .iter()
            .zip(&c.tool_mask)
            .all(|(lp, &tool)| lp.is_none() == tool));
        assert!(
            c.logprobs.iter().flatten().all(|&lp| lp > -1e-3),
            "the script is near-certain"
        );
    }
    assert_eq!(*python.programs.lock().unwrap(), vec!["print(2+3)\n"; 3]);
}

#[test]
fn tool_calls_stop_at_the_limit() {
    let (mut engine, python, _) = tir_engine(true);
    let prompt = engine.tokenizer().unwrap().encode("Q").unwrap();
    let params = SamplingParams {
        max_tool_calls: 2,
        max_new_tokens: 64,
        ..Default::default()
    };
    let c = first_completion(&mut engine, &prompt, &params);
    assert_eq!(
        (c.finish_reason, c.tool_calls),
        (FinishReason::ToolCallLimit, 2)
    );
    assert_eq!(c.text.as_deref().unwrap().matches("```output").count(), 3);
    // The second program keeps the first (successful) one, without its print, as the reference.
    assert_eq!(python.programs.lock().unwrap()[1], "\nprint(2+3)\n");

    let none = SamplingParams {
        max_tool_calls: 0,
        max_new_tokens: 64,
        ..Default::default()
    };
    let c = first_completion(&mut engine, &prompt, &none);
    assert_eq!(
        (c.finish_reason, c.token_ids.len()),
        (FinishReason::ToolCallLimit, 4)
    );

    // A tool output longer than the room left is cut and the completion ends.
    let short = SamplingParams {
        max_new_tokens: 5,
        ..Default::default()
    };
    let c = first_completion(&mut engine, &prompt, &short);
    assert_eq!(
        (c.finish_reason, c.token_ids.len()),
        (FinishReason::Length, 5)
    );
    assert_eq!(c.tool_mask, [false, false, false, false, true]);
}

#[test]
fn stop_strings_end_a_completion_and_the_trigger_without_a_tool_is_one() {
    let tok = script_tokenizer();
    let mut engine = Engine::from_policy(&script(&tok, false), EngineConfig::default())
        .with_tokenizer(tok.clone());
    let prompt = tok.encode("Q").unwrap();
    let params = SamplingParams {
        stop_strings: vec!["(2+".into()],
        ..Default::default()
    };
    let c = first_completion(&mut engine, &prompt, &params);
    assert_eq!(
        (c.finish_reason, c.text.as_deref()),
        (FinishReason::StopString, Some("```python\nprint(2+3)\n"))
    );
    let params = SamplingParams {
        stop_strings: vec!["```output".into()],
        ..Default::default()
    };
    let c = first_completion(&mut engine, &prompt, &params);
    assert_eq!(
        (c.finish_reason, c.token_ids.len()),
        (FinishReason::StopString, 4)
    );
    // Without stop strings the trigger is plain text and the script runs into "R R R ...".
    let params = SamplingParams {
        max_new_tokens: 8,
        stop_token_ids: Some(vec![]),
        ..Default::default()
    };
    let c = first_completion(&mut engine, &prompt, &params);
    assert_eq!(c.finish_reason, FinishReason::Length);
}
