//! A whole GRPO step (sample + score + learn) of `qwen25-math-rl` against TRL's `GRPOTrainer`
//! (`benches/trl_grpo.py`) in the same run, in the setting of issue 21:
//!
//! - the random ~60M Qwen2 of `config_60m` (hidden 512, 8 layers, 8 heads / 2 KV, intermediate
//!   1,408, vocab 32,000, untied), saved as a Hugging Face directory with a word-level tokenizer
//!   whose chat template passes the question through;
//! - 2 prompts of 32 words (32 tokens) × 4 completions of 64 new tokens per step (no stop token),
//!   temperature 1, β = 0.04, ε = 0.2, DAPO aggregation, gradient checkpointing on (TRL's
//!   default and the recipe's with `--model`), checker-only reward;
//! - the recipe on its actor runtime (2 rollout and 2 reward actors) in three variants
//!   ([`VARIANTS`]), the step time its `time/step_seconds`; TRL's from a callback around each
//!   optimisation step; both the median of the steps after the first.
//!
//! `cargo bench --bench whole_step` (results in BENCHMARKS.md). `MATHRL_BENCH_NO_TORCH=1` skips
//! TRL; `MATHRL_WHOLE_STEP_STEPS` sets the steps of each (default 6); `MATHRL_BENCH_KEEP=1` keeps
//! the model, the prompts and the runs' directories (metrics.jsonl) for a closer look.

mod common;

use std::fs;
use std::path::Path;

use candle_core::{DType, Device};
use clap::Parser;
use common::{config_60m, python_baseline_with};
use mathrl::model::Trainable;
use mathrl::Policy;
use mathrl_recipes::cli::Cli;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The recipe's runs: padded rows (the default with `--model`), packed groups, and packed groups
/// sampled with bf16 weights, whose log-probs the learner's importance ratio corrects.
const VARIANTS: [(&str, &[&str]); 3] = [
    ("padded rows", &[]),
    ("pack_groups", &["grpo.pack_groups=true"]),
    (
        "pack_groups, bf16 rollout weights",
        &[
            "grpo.pack_groups=true",
            "trainer.engine.bf16_weights=true",
            "grpo.old_logprobs=\"behaviour\"",
        ],
    ),
];

const PROMPT_WORDS: usize = 32;
const PROMPTS: usize = 64;

/// The policy, a word-level tokenizer (`<pad>`, `<eos>`, then `w2` … `w31999`) and a chat
/// template that passes the question through.
fn write_model(dir: &Path) {
    let config = config_60m();
    Policy::random(&config, 0, &Device::Cpu, DType::F32, Trainable::No)
        .unwrap()
        .save(dir)
        .unwrap();
    let mut vocab = serde_json::Map::new();
    vocab.insert("<pad>".into(), 0.into());
    vocab.insert("<eos>".into(), 1.into());
    for id in 2..config.vocab_size {
        vocab.insert(format!("w{id}"), id.into());
    }
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<pad>"), special(1, "<eos>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<pad>"},
    });
    fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "model_max_length": config.max_position_embeddings,
        "chat_template": "{% for message in messages %}{{ message['content'] }}{% endfor %}",
    });
    fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )
    .unwrap();
}

/// Prompts of `PROMPT_WORDS` random words with a gold answer.
fn write_prompts(path: &Path, vocab: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let lines: Vec<String> = (0..PROMPTS)
        .map(|_| {
            let words: Vec<String> = (0..PROMPT_WORDS)
                .map(|_| format!("w{}", rng.random_range(2..vocab)))
                .collect();
            json!({"question": words.join(" "), "answer": "7"}).to_string()
        })
        .collect();
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn median_after_first(mut xs: Vec<f64>) -> f64 {
    xs.remove(0);
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// `time/step_seconds` of every step of a recipe run.
fn step_seconds(output: &Path) -> Vec<f64> {
    fs::read_to_string(output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["tag"] == "time/step_seconds")
        .map(|v| v["value"].as_f64().unwrap())
        .collect()
}

fn main() {
    mathrl::device::pin_cpu_threads();
    let steps: usize = std::env::var("MATHRL_WHOLE_STEP_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    println!("model, prompts and runs under {}", dir.path().display());
    let model = dir.path().join("model");
    fs::create_dir(&model).unwrap();
    write_model(&model);
    let prompts = dir.path().join("prompts.jsonl");
    write_prompts(&prompts, config_60m().vocab_size);
    let mut medians = Vec::new();
    for (variant, extra) in VARIANTS {
        let output = dir.path().join(format!("run-{}", medians.len()));
        let mut sets: Vec<String> = vec![
            format!("steps={steps}"),
            "trainer.prompts_per_step=2".into(),
            "grpo.rollout.group_size=4".into(),
            "grpo.rollout.max_new_tokens=64".into(),
            "trainer.sampling.stop_token_ids=[]".into(),
            "grpo.loss.beta=0.04".into(),
            "grpo.loss.aggregation=\"dapo\"".into(),
            "grpo.micro_batch_size=8".into(),
            "decontaminate=false".into(),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        let mut args: Vec<String> = ["mathrl", "--recipe", "qwen25-math-rl", "--model"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(model.display().to_string());
        args.extend(["--data".into(), prompts.display().to_string()]);
        args.extend(["--output".into(), output.display().to_string()]);
        for set in &sets {
            args.extend(["--set".into(), set.clone()]);
        }
        let cli = Cli::parse_from(&args);
        let recipe = mathrl_recipes::find_recipe("qwen25-math-rl").unwrap();
        (recipe.run)(&cli).unwrap();
        let ours = step_seconds(&output);
        assert_eq!(ours.len(), steps, "{ours:?}");
        let median = median_after_first(ours.clone());
        println!(
            "mathrl ({variant}): whole GRPO step, 60M, 2 prompts x 4 x (32 + 64): median {median:.2} s of steps 2-{steps} {ours:.2?}"
        );
        medians.push((variant, median));
    }

    if std::env::var_os("MATHRL_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
    let Some(text) = python_baseline_with(
        "trl_grpo.py",
        &[
            &model.display().to_string(),
            &prompts.display().to_string(),
            "--steps",
            &steps.to_string(),
        ],
    ) else {
        return;
    };
    let trl: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let trl_s = trl["median_step_s"].as_f64().unwrap();
    for (variant, ours_s) in medians {
        println!(
            "TRL GRPOTrainer: median {trl_s:.2} s; mathrl ({variant}) is {:.2}x TRL's speed",
            trl_s / ours_s
        );
    }
}
