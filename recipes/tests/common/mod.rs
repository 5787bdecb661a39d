//! Models for end-to-end tests: a tokenizer with multi-character script tokens and a one-layer
//! "bigram" policy whose next token depends on the current one only; a tiny random policy with
//! the procedural tokenizer; and what the tests read back from a run's output.
#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::{Policy, Tokenizer};
use mathrl_recipes::tiny_bootstrap::{policy_config, TinyModelConfig};
use serde_json::json;

/// A chat template of the user and assistant turns concatenated (system turns dropped): the
/// prefix property holds, and a question "Q" is the whole prompt.
pub const CONCAT_TEMPLATE: &str =
    "{% for m in messages %}{% if m['role'] != 'system' %}{{ m['content'] }}{% endif %}{% endfor %}";

/// The JSON values of the lines of `path`.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Multi-character tokens of the scripted tokenizer, ids 1.. (id 0 is `<eos>`).
pub const SCRIPT_TOKENS: [&str; 7] = [
    "```python\n",
    "print(2+3)\n",
    "print(1/0)\n",
    "```\n",
    "```output",
    "\n```\n",
    "\\boxed{5}",
];

/// A tokenizer over printable ASCII and "\n" plus the script tokens, with `chat_template`,
/// written to `dir` (`tokenizer.json`, `tokenizer_config.json`).
pub fn script_tokenizer(dir: &Path, chat_template: &str) -> Tokenizer {
    script_tokenizer_with(dir, chat_template, &[])
}

/// [`script_tokenizer`] with `extra` multi-character tokens after the script tokens.
pub fn script_tokenizer_with(dir: &Path, chat_template: &str, extra: &[&str]) -> Tokenizer {
    let mut vocab = serde_json::Map::new();
    let mut added = vec![
        json!({"id": 0, "content": "<eos>", "special": true, "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": false}),
    ];
    vocab.insert("<eos>".into(), 0.into());
    for (i, t) in SCRIPT_TOKENS.iter().chain(extra).enumerate() {
        vocab.insert(t.to_string(), (i + 1).into());
        added.push(
            json!({"id": i + 1, "content": t, "special": false, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false}),
        );
    }
    let first_char = SCRIPT_TOKENS.len() + extra.len() + 1;
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
    let config = json!({"eos_token": "<eos>", "chat_template": chat_template});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    Tokenizer::from_dir(dir).unwrap()
}

pub fn id(tok: &Tokenizer, text: &str) -> u32 {
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids.len(), 1, "{text:?} is one token");
    ids[0]
}

/// A one-layer model whose attention and MLP add nothing, so the next token depends on the
/// current one only: each (from, to) pair makes `to` win by a wide logit margin.
pub fn bigram_policy(pairs: &[(u32, u32)]) -> Policy {
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

/// The TIR script "Q" -> "```python\n" -> "print(2+3)\n" -> "```\n" -> "```output"; after the
/// tool's "\n```\n" -> "\boxed{5}" -> `<eos>`, saved with its tokenizer (`chat_template`) in
/// `dir` for the recipes to load.
pub fn save_python_script(dir: &Path, chat_template: &str) -> Tokenizer {
    let tokenizer_dir = dir.with_extension("tokenizer");
    std::fs::create_dir_all(&tokenizer_dir).unwrap();
    let tok = script_tokenizer(&tokenizer_dir, chat_template);
    let [py, program, _, close, trigger, out_close, boxed] = SCRIPT_TOKENS.map(|t| id(&tok, t));
    bigram_policy(&[
        (id(&tok, "Q"), py),
        (py, program),
        (program, close),
        (close, trigger),
        (out_close, boxed),
        (boxed, 0),
    ])
    .with_side_files_from(&tokenizer_dir)
    .save(dir)
    .unwrap();
    tok
}

/// A random policy of `layers` layers (hidden 32) with the procedural tokenizer, saved in `dir`.
pub fn tiny_procedural_policy(dir: &Path, layers: usize) {
    let tokenizer_dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/procedural-tokenizer");
    let tokenizer = Tokenizer::from_dir(&tokenizer_dir).unwrap();
    let model = TinyModelConfig {
        hidden_size: 32,
        num_hidden_layers: layers,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        intermediate_size: 64,
        max_position_embeddings: 256,
    };
    let config = policy_config(&model, tokenizer.vocab_size(), 2, 0);
    Policy::random(&config, 0, &Device::Cpu, DType::F32, Trainable::No)
        .unwrap()
        .with_side_files_from(tokenizer_dir)
        .save(dir)
        .unwrap();
}

/// TensorBoard event files directly in `dir`.
pub fn event_file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents")
        })
        .count()
}

/// The scalars tagged `tag` in the TensorBoard event files directly in `dir`, as (step, value),
/// read back the way TensorBoard does: TFRecord frames (length, CRC, data, CRC) of protobuf
/// `Event { step = 2, summary = 5: Summary { value = 1: [Value { tag = 1, simple_value = 2 }] } }`.
pub fn event_scalars(dir: &Path, tag: &str) -> Vec<(u64, f32)> {
    let mut scalars = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let is_events = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents"));
        if !is_events {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut rest = &bytes[..];
        while rest.len() >= 12 {
            let length = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let event = &rest[12..12 + length];
            rest = &rest[16 + length..];
            let fields = proto_fields(event);
            let step = fields.iter().find(|f| f.0 == 2).map_or(0, |f| f.1.varint());
            for summary in fields.iter().filter(|f| f.0 == 5) {
                for value in proto_fields(summary.1.bytes()).iter().filter(|f| f.0 == 1) {
                    let value = proto_fields(value.1.bytes());
                    let named = value
                        .iter()
                        .any(|f| f.0 == 1 && f.1.bytes() == tag.as_bytes());
                    if let (true, Some(simple)) = (named, value.iter().find(|f| f.0 == 2)) {
                        scalars.push((step, simple.1.fixed32()));
                    }
                }
            }
        }
    }
    scalars
}

/// One protobuf field's value on the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(f32),
}

impl<'a> Wire<'a> {
    fn varint(&self) -> u64 {
        match self {
            Wire::Varint(v) => *v,
            _ => panic!("not a varint"),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        match self {
            Wire::Bytes(b) => b,
            _ => panic!("not a length-delimited field"),
        }
    }

    fn fixed32(&self) -> f32 {
        match self {
            Wire::Fixed32(v) => *v,
            _ => panic!("not a fixed32"),
        }
    }
}

/// The (field number, value) pairs of one protobuf message.
fn proto_fields(mut bytes: &[u8]) -> Vec<(u64, Wire<'_>)> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes[0];
            *bytes = &bytes[1..];
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        value
    }
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut bytes)),
            1 => {
                bytes = &bytes[8..];
                Wire::Fixed64
            }
            2 => {
                let length = varint(&mut bytes) as usize;
                let (data, rest) = bytes.split_at(length);
                bytes = rest;
                Wire::Bytes(data)
            }
            5 => {
                let value = f32::from_le_bytes(bytes[..4].try_into().unwrap());
                bytes = &bytes[4..];
                Wire::Fixed32(value)
            }
            wire => panic!("unexpected wire type {wire}"),
        };
        fields.push((key >> 3, value));
    }
    fields
}
