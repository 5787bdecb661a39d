//! The `cpu-proof` scenario (issue 16, item 5): the exact Qwen2.5-0.5B shape on this CPU with the
//! real Qwen2.5 tokenizer. One phase per process, so that the peak resident memory read at the end
//! (`VmHWM` in /proc/self/status) is that phase's alone; `scripts/bench-0.5b.sh` runs them all next
//! to `benches/torch_scale.py --scenario cpu-proof`, which mirrors every phase in PyTorch.
//!
//! ```text
//! MATHRL_BENCH_SCENARIO=cpu-proof MATHRL_BENCH_PHASE=grpo MATHRL_BENCH_DTYPE=bf16 \
//!     cargo bench --bench scale
//! ```
//!
//! Phases (`MATHRL_BENCH_PHASE`):
//! - `prepare`: writes the random-weight model once as a Hugging Face directory (bf16 safetensors,
//!   as Qwen2.5-0.5B ships, with the tokenizer files); later runs reuse it.
//! - `load`: `Policy::load` of that directory in the compute dtype (trainable).
//! - `generate`: 4 prompts × (64 prompt + 128 new tokens), T = 1, stop tokens off, after a 4-token
//!   warm-up.
//! - `grpo`: one GRPO step (policy and reference forward, backward, AdamW) over one group of 8
//!   completions of 256 tokens after a 64-token prompt, β = 1e-3, micro-batch 8. In bf16 the
//!   weights are bf16 and AdamW keeps f32 master copies (`AdamWConfig::master_weights`).
//!
//! Settings: `MATHRL_BENCH_DTYPE` f32 (default) or bf16; `MATHRL_BENCH_MODEL_DIR` (default
//! `target/bench-cache/qwen2.5-0.5b-random`, with `-l{layers}-v{vocab}` when shrunk);
//! `MATHRL_BENCH_TOKENIZER` (default the repository's copy, `tests/fixtures/qwen2.5-tokenizer`,
//! the same files as `../shared/data/qwen2.5-tokenizer`). `MATHRL_BENCH_LAYERS` and
//! `MATHRL_BENCH_VOCAB` shrink the model for a quick check of the logic; with a smaller vocabulary
//! the tokenizer's ids are folded into it (id mod vocab).
//!
//! Prompts and completions are real text: a GSM8K-style question in the chat template, repeated
//! until it is at least 64 tokens, of which the last 64 are kept (so each prompt ends with the
//! assistant header); completions are windows of a worked solution repeated. The PyTorch side
//! builds the same ids and both print their sum, which the script compares.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device};
use mathrl::device::parse_dtype;
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::memory::{LearnerShape, MemoryPlan, PlanInput, RolloutShape};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::types::{Completion, FinishReason, Group};
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule, RolloutBatch, ScoredGroup};
use serde_json::{json, Value};

/// Prompt tokens, in generation and in the GRPO step.
const PROMPT_TOKENS: usize = 64;
/// New tokens per generated sequence.
const NEW_TOKENS: usize = 128;
/// Completions in the GRPO step (one group) and their length.
const GROUP_SIZE: usize = 8;
const COMPLETION_TOKENS: usize = 256;
/// Offset in tokens between consecutive completions' windows of the solution text.
const COMPLETION_STRIDE: usize = 16;
const BETA: f64 = 1e-3;

/// The generation prompts; the GRPO step uses the first. Must match `QUESTIONS` in
/// benches/torch_scale.py.
const QUESTIONS: [&str; 4] = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. How much more money does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
];
/// The completions' text. Must match `SOLUTION` in benches/torch_scale.py.
const SOLUTION: &str = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\nSo the answer is \\boxed{72}.";

/// What every phase reads from the environment.
struct Settings {
    phase: String,
    dtype: DType,
    config: Qwen2Config,
    model_dir: PathBuf,
    tokenizer_dir: PathBuf,
}

pub fn run() -> Result<()> {
    let rss_at_start = status_mib("VmRSS");
    let s = settings()?;
    let mut line = match s.phase.as_str() {
        "prepare" => prepare(&s)?,
        "load" => load(&s)?,
        "generate" => generate(&s)?,
        "grpo" => grpo(&s)?,
        other => bail!(
            "MATHRL_BENCH_PHASE=`{other}` is not a phase: expected prepare, load, generate or grpo"
        ),
    };
    line["impl"] = "mathrl".into();
    line["phase"] = s.phase.clone().into();
    line["dtype"] = format!("{:?}", s.dtype).to_lowercase().into();
    line["layers"] = s.config.num_hidden_layers.into();
    line["vocab"] = s.config.vocab_size.into();
    line["rss_at_start_mib"] = rss_at_start.into();
    line["peak_rss_mib"] = status_mib("VmHWM").into();
    println!("{line}");
    Ok(())
}

fn settings() -> Result<Settings> {
    let var = |name: &str| std::env::var(name).ok();
    let number = |name: &str| -> Result<Option<usize>> {
        var(name)
            .map(|v| {
                v.parse()
                    .with_context(|| format!("{name}=`{v}` is not a number"))
            })
            .transpose()
    };
    let mut config = super::gpu_check::shape("0.5b");
    let layers = number("MATHRL_BENCH_LAYERS")?;
    let vocab = number("MATHRL_BENCH_VOCAB")?;
    config.num_hidden_layers = layers.unwrap_or(config.num_hidden_layers);
    config.vocab_size = vocab.unwrap_or(config.vocab_size);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut default_dir = "qwen2.5-0.5b-random".to_string();
    if layers.is_some() || vocab.is_some() {
        default_dir += &format!("-l{}-v{}", config.num_hidden_layers, config.vocab_size);
    }
    let dtype_name = var("MATHRL_BENCH_DTYPE").unwrap_or_else(|| "f32".into());
    Ok(Settings {
        phase: var("MATHRL_BENCH_PHASE").context("MATHRL_BENCH_PHASE is not set")?,
        dtype: parse_dtype(&dtype_name).context("MATHRL_BENCH_DTYPE")?,
        model_dir: var("MATHRL_BENCH_MODEL_DIR").map_or_else(
            || repo.join("target/bench-cache").join(default_dir),
            PathBuf::from,
        ),
        tokenizer_dir: var("MATHRL_BENCH_TOKENIZER").map_or_else(
            || repo.join("tests/fixtures/qwen2.5-tokenizer"),
            PathBuf::from,
        ),
        config,
    })
}

/// A field of /proc/self/status in MiB (`VmHWM`: peak resident memory; `VmRSS`: now).
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Writes the random model once; a directory with the same shape is reused.
fn prepare(s: &Settings) -> Result<Value> {
    let weights = s.model_dir.join("model.safetensors");
    if weights.is_file() {
        let found = Qwen2Config::from_model_dir(&s.model_dir)?;
        if (found.num_hidden_layers, found.vocab_size)
            == (s.config.num_hidden_layers, s.config.vocab_size)
        {
            return Ok(json!({"reused": true, "dir": s.model_dir}));
        }
    }
    let start = Instant::now();
    // Generated in f32 and saved in the config's dtype (bf16), as the real checkpoint is.
    let policy = Policy::random(&s.config, 0, &Device::Cpu, DType::F32, Trainable::No)?
        .with_side_files_from(&s.tokenizer_dir);
    policy
        .save(&s.model_dir)
        .with_context(|| format!("writing {}", s.model_dir.display()))?;
    Ok(
        json!({"reused": false, "dir": s.model_dir, "params": policy.num_parameters(),
              "seconds": start.elapsed().as_secs_f64(),
              "file_bytes": std::fs::metadata(&weights)?.len()}),
    )
}

fn load_policy(s: &Settings, trainable: Trainable) -> Result<Policy> {
    Policy::load(&s.model_dir, &Device::Cpu, Some(s.dtype), trainable).with_context(|| {
        format!(
            "loading {} (run MATHRL_BENCH_PHASE=prepare first)",
            s.model_dir.display()
        )
    })
}

fn load(s: &Settings) -> Result<Value> {
    let start = Instant::now();
    let policy = load_policy(s, Trainable::Yes)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(json!({"seconds": seconds, "params": policy.num_parameters()}))
}

/// `ids` folded into a vocabulary of `vocab` (the identity at the real size).
fn fold(ids: &[u32], vocab: usize) -> Vec<u32> {
    ids.iter().map(|&id| id % vocab as u32).collect()
}

/// The last `PROMPT_TOKENS` ids of `question`, repeated until long enough, in the chat template.
fn prompt_ids(tokenizer: &Tokenizer, question: &str, vocab: usize) -> Result<Vec<u32>> {
    let mut text = question.to_string();
    loop {
        let ids = tokenizer.encode(&tokenizer.question_prompt(&text, None)?)?;
        if ids.len() >= PROMPT_TOKENS {
            return Ok(fold(&ids[ids.len() - PROMPT_TOKENS..], vocab));
        }
        text = format!("{text} {question}");
    }
}

/// `GROUP_SIZE` windows of `COMPLETION_TOKENS` ids of the solution text repeated, each starting
/// `COMPLETION_STRIDE` tokens after the previous.
fn completion_ids(tokenizer: &Tokenizer, vocab: usize) -> Result<Vec<Vec<u32>>> {
    let needed = COMPLETION_TOKENS + (GROUP_SIZE - 1) * COMPLETION_STRIDE;
    let mut text = SOLUTION.to_string();
    let ids = loop {
        let ids = tokenizer.encode(&text)?;
        if ids.len() >= needed {
            break ids;
        }
        text = format!("{text}\n{SOLUTION}");
    };
    Ok((0..GROUP_SIZE)
        .map(|i| fold(&ids[i * COMPLETION_STRIDE..][..COMPLETION_TOKENS], vocab))
        .collect())
}

fn checksum(ids: &[Vec<u32>]) -> u64 {
    ids.iter().flatten().map(|&id| u64::from(id)).sum()
}

fn generate(s: &Settings) -> Result<Value> {
    let policy = load_policy(s, Trainable::No)?;
    let rss_after_load = status_mib("VmRSS");
    let tokenizer = Tokenizer::from_dir(&s.tokenizer_dir)?;
    let prompts = QUESTIONS
        .iter()
        .map(|q| prompt_ids(&tokenizer, q, s.config.vocab_size))
        .collect::<Result<Vec<_>>>()?;
    let mut engine = Engine::from_policy(&policy, EngineConfig::default());
    let params = |max_new_tokens| SamplingParams {
        n: 1,
        temperature: 1.0,
        max_new_tokens,
        stop_token_ids: Some(vec![]),
        seed: 1,
        ..Default::default()
    };
    engine.generate(&prompts, &params(4))?;
    let start = Instant::now();
    let out = engine.generate(&prompts, &params(NEW_TOKENS))?;
    let seconds = start.elapsed().as_secs_f64();
    let tokens = prompts.len() * NEW_TOKENS;
    ensure!(
        out.stats.sampled_tokens == tokens,
        "sampled {} tokens, expected {tokens}",
        out.stats.sampled_tokens
    );
    Ok(
        json!({"seconds": seconds, "tokens_per_s": tokens as f64 / seconds,
              "prompts": prompts.len(), "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS,
              "prefill_ms": out.stats.prefill_ms, "decode_ms": out.stats.decode_ms,
              "kv_cache_bytes": out.stats.kv_cache_bytes,
              "rss_after_load_mib": rss_after_load, "ids_checksum": checksum(&prompts)}),
    )
}

fn grpo(s: &Settings) -> Result<Value> {
    let policy = load_policy(s, Trainable::Yes)?;
    let tokenizer = Tokenizer::from_dir(&s.tokenizer_dir)?;
    let prompt = prompt_ids(&tokenizer, QUESTIONS[0], s.config.vocab_size)?;
    let completions = completion_ids(&tokenizer, s.config.vocab_size)?;
    let ids_checksum = checksum(std::slice::from_ref(&prompt)) + checksum(&completions);

    let mut config = GrpoConfig::default();
    config.loss.beta = BETA; // > 0: the learner keeps and runs a frozen reference copy
    config.rollout.group_size = GROUP_SIZE;
    config.rollout.max_new_tokens = COMPLETION_TOKENS;
    config.micro_batch_size = GROUP_SIZE;
    config.log_entropy = false; // PyTorch's step computes none
    config.train_step.schedule = LrSchedule::constant(1e-5);
    // What the memory plan (`mathrl::memory`, as `qwen25-math-rl` prints it) expects this step to
    // hold, next to the peak it measures: the learner side only, no rollout actors.
    let plan = MemoryPlan::new(&PlanInput {
        dtype: s.dtype,
        master_weights: Some(config.optimizer.master_weights && s.dtype != DType::F32),
        reference_model: true,
        rollout: RolloutShape {
            actors: 0,
            group_size: GROUP_SIZE,
            prompt_tokens: PROMPT_TOKENS,
            max_new_tokens: COMPLETION_TOKENS,
            ..RolloutShape::default()
        },
        learner: LearnerShape {
            micro_batch_sequences: GROUP_SIZE,
            micro_batch_tokens: Some(config.micro_batch_tokens),
            gradient_checkpointing: config.gradient_checkpointing,
            packed_groups: config.pack_groups,
        },
        ..PlanInput::new(s.config.clone())
    });
    eprintln!("{}", plan.table(None));
    let planned_mib = plan.total_on("cpu") as f64 / (1024.0 * 1024.0);
    let mut learner = GrpoLearner::new(policy, None, config, Metrics::null())?;
    ensure!(learner.reference().is_some(), "β > 0 keeps a reference");
    let rss_before_step = status_mib("VmRSS");

    let group = Group {
        prompt_index: 0,
        prompt_ids: prompt,
        completions: completions
            .into_iter()
            .enumerate()
            .map(|(i, token_ids)| Completion::sampled(i, token_ids, -3.0, FinishReason::Length))
            .collect(),
        policy_version: 0,
    };
    let batch = RolloutBatch {
        groups: vec![ScoredGroup {
            group,
            rewards: (0..GROUP_SIZE).map(|i| (i % 2) as f32).collect(),
            verdicts: None,
        }],
    };
    let start = Instant::now();
    let report = learner.step(batch)?;
    let seconds = start.elapsed().as_secs_f64();
    ensure!(report.loss.is_finite(), "loss {}", report.loss);
    Ok(
        json!({"seconds": seconds, "loss": report.loss, "kl": report.kl,
              "grad_norm": report.grad_norm, "sequences": GROUP_SIZE,
              "tokens": GROUP_SIZE * (PROMPT_TOKENS + COMPLETION_TOKENS),
              "rss_before_step_mib": rss_before_step, "ids_checksum": ids_checksum,
              "planned_mib": planned_mib}),
    )
}
