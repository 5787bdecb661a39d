//! Tool-integrated reasoning end to end: a scripted model writes a python block, the engine
//! pauses, the program runs in the real sandbox through `SandboxExecutor`, and the output block
//! is appended before generation resumes; then the eval runner in TIR mode over the same model.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::types::FinishReason;
use mathrl::{Policy, Tokenizer};
use mathrl_actors::tool::{PythonSandbox, SandboxConfig, SandboxExecutor};
use mathrl_recipes::eval::{evaluate, EvalItem, EvalMode, PromptFormat, Selection};
use mathrl_rewards::{Verdict, Verifier};
use serde_json::json;

/// Multi-character tokens of the scripted tokenizer, ids 1.. (id 0 is `<eos>`).
const SCRIPT_TOKENS: [&str; 7] = [
    "```python\n",
    "print(2+3)\n",
    "print(1/0)\n",
    "```\n",
    "```output",
    "\n```\n",
    "\\boxed{5}",
];

/// A tokenizer over printable ASCII and "\n" plus the script tokens, with a chat template that
/// renders only the last message (so a question "Q" is the whole prompt).
fn script_tokenizer(dir: &Path) -> Tokenizer {
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
    let first_char = SCRIPT_TOKENS.len() + 1;
    for (i, c) in (32u8..127).map(char::from).chain(['\n']).enumerate() {
        vocab.insert(c.to_string(), (first_char + i).into());
    }
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let config = json!({"eos_token": "<eos>", "chat_template": "{{ messages[-1]['content'] }}"});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    Tokenizer::from_dir(dir).unwrap()
}

fn id(tok: &Tokenizer, text: &str) -> u32 {
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids.len(), 1, "{text:?} is one token");
    ids[0]
}

/// A one-layer model whose attention and MLP add nothing, so the next token depends on the
/// current one only: each (from, to) pair makes `to` win by a wide logit margin.
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
        embed[i * hidden + i] = 1.0;
    }
    let mut head = vec![0f32; vocab * hidden];
    for &(from, to) in pairs {
        assert!((from as usize) < hidden);
        head[to as usize * hidden + from as usize] = 10.0;
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

/// The script: "Q" -> python block with `program` -> "```output"; after the tool's "\n```\n"
/// -> "\boxed{5}" -> `<eos>`.
fn script(tok: &Tokenizer, program: &str) -> Policy {
    let [py, _, _, close, trigger, out_close, boxed] = SCRIPT_TOKENS.map(|t| id(tok, t));
    let program = id(tok, program);
    bigram_policy(&[
        (id(tok, "Q"), py),
        (py, program),
        (program, close),
        (close, trigger),
        (out_close, boxed),
        (boxed, 0),
    ])
}

fn executor(timeout_ms: u64) -> Arc<SandboxExecutor> {
    let sandbox = PythonSandbox::new(SandboxConfig {
        timeout_ms,
        ..Default::default()
    })
    .unwrap();
    Arc::new(SandboxExecutor::new(Arc::new(sandbox)))
}

#[test]
fn a_python_block_gets_its_output_block_from_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let tok = script_tokenizer(dir.path());
    let params = SamplingParams {
        max_new_tokens: 64,
        ..Default::default()
    };
    for (program, output) in [
        ("print(2+3)\n", "5"),
        ("print(1/0)\n", "ZeroDivisionError: division by zero"),
    ] {
        let mut engine = Engine::from_policy(&script(&tok, program), EngineConfig::default())
            .with_tokenizer(tok.clone())
            .with_tool(executor(5000));
        let out = engine
            .generate(&[tok.encode("Q").unwrap()], &params)
            .unwrap();
        assert_eq!(out.stats.tool_calls, 1);
        let c = &out.groups[0].completions[0];
        assert_eq!(
            c.text.as_deref().unwrap(),
            format!("```python\n{program}```\n```output\n{output}\n```\n\\boxed{{5}}")
        );
        assert_eq!(
            (c.finish_reason, c.tool_calls),
            (FinishReason::StopToken, 1)
        );
        // The output block's tokens are marked as tool tokens, without a log-prob.
        let tool_tokens = tok.encode(&format!("\n{output}\n```\n")).unwrap();
        assert_eq!(
            c.tool_mask.iter().filter(|&&t| t).count(),
            tool_tokens.len()
        );
        assert_eq!(
            &c.token_ids[4..4 + tool_tokens.len()],
            tool_tokens.as_slice()
        );
        assert!(c
            .logprobs
            .iter()
            .zip(&c.tool_mask)
            .all(|(lp, &tool)| lp.is_none() == tool));
    }
}

/// Stand-in answer check for this test only: the last `\boxed{...}` equals the gold.
struct LastBoxedEquals;

impl Verifier for LastBoxedEquals {
    fn verify(&self, response: &str, gold: &str, _dataset: Option<&str>) -> Verdict {
        match mathrl_recipes::eval::datasets::last_boxed(response) {
            Some(answer) if answer == gold => Verdict::correct(answer.to_string()),
            Some(answer) => Verdict::incorrect(answer.to_string()),
            None => Verdict::unparseable(None, "no boxed answer"),
        }
    }
}

#[test]
fn the_eval_runner_in_tir_mode_runs_the_programs_and_checks_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let tok = script_tokenizer(dir.path());
    let policy = script(&tok, "print(2+3)\n");
    let item = |line: usize, gold: &str| EvalItem {
        dataset: "gsm8k".into(),
        line,
        question: "Q".into(),
        gold: gold.into(),
    };
    let items = [item(1, "5"), item(2, "6"), item(3, "5")];
    let mut mode = EvalMode::greedy_cot(64);
    mode.format = PromptFormat::Tir;
    mode.tool = Some(executor(5000));
    let result = evaluate(&policy, &tok, &items, &mode, &LastBoxedEquals, None).unwrap();
    assert_eq!(
        (result.mode.as_str(), result.n, result.correct),
        ("tir", 3, 2)
    );
    assert!((result.accuracy - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(result.per_dataset.len(), 1);
    let correct: Vec<bool> = result.records.iter().map(|r| r.correct).collect();
    assert_eq!(correct, [true, false, true]);
    assert!(result.records[0].response.contains("```output\n5\n```"));
    assert_eq!(result.records[1].extracted.as_deref(), Some("5"));

    // Maj@3 over identical samples picks the same answer; TIR without a tool is an error.
    mode.selection = Selection::Majority(3);
    let maj = evaluate(&policy, &tok, &items, &mode, &LastBoxedEquals, None).unwrap();
    assert_eq!((maj.mode.as_str(), maj.correct), ("tir-maj@3", 2));
    assert_eq!(maj.records[0].correct_samples, 3);
    mode.tool = None;
    let err = evaluate(&policy, &tok, &items, &mode, &LastBoxedEquals, None).unwrap_err();
    assert!(err.to_string().contains("tool executor"), "{err}");
}
