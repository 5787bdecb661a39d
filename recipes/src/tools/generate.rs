//! `generate`: sample completions for the prompts of a JSONL file.
//!
//! `mathrl --recipe generate --model DIR --input IN.jsonl --output OUT.jsonl
//! [--set n=4 --set temperature=0.7 --set tir=true ...] [--seed S]`
//!
//! Each input line has `"prompt"` or `"question"` (text; rendered with the chat template, with the
//! template's default system prompt unless the line gives `"system"`, or the TIR system prompt
//! with `tir = true`), or `"prompt_ids"` (token ids, used as is). Without a tokenizer in DIR only
//! `"prompt_ids"` is accepted. Each output line repeats the input line and adds `"completions"`:
//! a list of `{"text", "token_ids", "logprobs", "finish_reason"}` (with `tir`, also `"tool_mask"`
//! and `"tool_calls"`; tool-output tokens have a `null` log-prob).

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mathrl::data::read_jsonl_numbered;
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::Trainable;
use mathrl::tokenizer::ChatMessage;
use mathrl::types::Completion;
use mathrl::{Policy, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::Cli;
use crate::driver::prepare;
use crate::eval::prompts::TIR_SYSTEM;
use crate::output::OutputFile;
use crate::run::progress_bar;

/// Settings of the `generate` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// Completions per prompt.
    pub n: usize,
    /// Softmax temperature; 0 = greedy.
    pub temperature: f64,
    /// Nucleus mass; 1 = off.
    pub top_p: f64,
    /// Most likely tokens kept; 0 = off.
    pub top_k: usize,
    /// Most new tokens per completion (tool output included).
    pub max_new_tokens: usize,
    /// Strings that end a completion.
    pub stop_strings: Vec<String>,
    /// Tool-integrated reasoning: python blocks run in the sandbox and their output is appended.
    pub tir: bool,
    /// Most tool calls per completion (the reference: 4).
    pub max_tool_calls: usize,
    /// Wall-clock limit of one TIR program in milliseconds (the reference: 5 s); overrides
    /// `tool.timeout_ms`.
    pub tool_timeout_ms: u64,
    /// The TIR sandbox: limits and isolation layers (`tool.allow_weaker_isolation = true` runs
    /// with missing layers, with a warning).
    pub tool: mathrl_sandbox::SandboxConfig,
    /// Prompts per generation call (bounds memory; samples of one call share the KV cache).
    /// The samples depend on it: each call's streams are seeded with `seed + call index`.
    pub prompts_per_batch: usize,
    /// Limits of the generation engine.
    pub engine: EngineConfig,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        let sampling = SamplingParams::default();
        Self {
            n: sampling.n,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k,
            max_new_tokens: sampling.max_new_tokens,
            stop_strings: Vec::new(),
            tir: false,
            max_tool_calls: sampling.max_tool_calls,
            tool_timeout_ms: 5000,
            tool: mathrl_sandbox::SandboxConfig::default(),
            prompts_per_batch: 64,
            engine: EngineConfig::default(),
        }
    }
}

impl GenerateConfig {
    /// The engine's sampling parameters for `seed`.
    pub fn sampling(&self, seed: u64) -> SamplingParams {
        SamplingParams {
            n: self.n,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed,
            max_new_tokens: self.max_new_tokens,
            stop_token_ids: None,
            stop_strings: self.stop_strings.clone(),
            max_tool_calls: self.max_tool_calls,
        }
    }
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<GenerateConfig>(cli, "generate")? else {
        return Ok(());
    };
    let config = &recipe.config;
    let model_dir = recipe.model_dir()?;
    let input = cli
        .input
        .as_deref()
        .context("generate needs --input IN.jsonl")?;
    let output = cli
        .output
        .as_deref()
        .context("generate needs --output OUT.jsonl")?;
    let params = config.sampling(cli.seed);
    params.validate()?;
    let tokenizer = if Tokenizer::exists_in(model_dir) {
        Some(Tokenizer::from_dir(model_dir)?)
    } else {
        None
    };
    if config.tir && tokenizer.is_none() {
        bail!("tir = true needs a tokenizer in {}", model_dir.display());
    }
    let lines = read_jsonl_numbered::<Value>(input)?;
    let prompts = lines
        .iter()
        .map(|(n, line)| {
            prompt_ids(line, tokenizer.as_ref(), config.tir)
                .with_context(|| format!("{}:{n}", input.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let device = mathrl::device::parse_device(&cli.device)?;
    let policy = Policy::load(model_dir, &device, cli.compute_dtype(), Trainable::No)?;
    let mut engine = Engine::from_policy(&policy, config.engine.clone());
    if let Some(tokenizer) = &tokenizer {
        engine = engine.with_tokenizer(tokenizer.clone());
    }
    if config.tir {
        let sandbox = crate::tools::python::tir_sandbox(&mathrl_sandbox::SandboxConfig {
            timeout_ms: config.tool_timeout_ms,
            ..config.tool.clone()
        })?;
        engine = engine.with_tool(Arc::new(mathrl_sandbox::SandboxExecutor::new(sandbox)));
    }
    let mut out = OutputFile::create(output)?;
    let bar = progress_bar(prompts.len() as u64, "generate");
    let mut tokens = 0usize;
    let batch = config.prompts_per_batch.max(1);
    for (chunk_index, chunk) in prompts.chunks(batch).enumerate() {
        // The engine derives each sample's stream from (seed, index in the call), so each chunk
        // gets its own seed: samples are reproducible for a given seed and `prompts_per_batch`.
        let chunk_params = SamplingParams {
            seed: params.seed.wrapping_add(chunk_index as u64),
            ..params.clone()
        };
        let generated = engine.generate(chunk, &chunk_params)?;
        for (group, (_, line)) in generated.groups.iter().zip(&lines[chunk_index * batch..]) {
            let mut line = line.clone();
            line["completions"] = group
                .completions
                .iter()
                .map(|c| completion_json(c, tokenizer.as_ref(), config.tir))
                .collect::<Result<Vec<_>>>()?
                .into();
            tokens += group
                .completions
                .iter()
                .map(|c| c.token_ids.len())
                .sum::<usize>();
            writeln!(out, "{line}")?;
            bar.inc(1);
        }
    }
    out.commit()?;
    bar.finish_and_clear();
    tracing::info!(prompts = prompts.len(), tokens, output = %output.display(), "wrote completions");
    Ok(())
}

/// The prompt token ids of one input line.
fn prompt_ids(line: &Value, tokenizer: Option<&Tokenizer>, tir: bool) -> Result<Vec<u32>> {
    if let Some(ids) = line.get("prompt_ids") {
        let ids: Vec<u32> = serde_json::from_value(ids.clone())
            .context("`prompt_ids` must be a list of token ids")?;
        if ids.is_empty() {
            bail!("`prompt_ids` is empty");
        }
        return Ok(ids);
    }
    let text = ["prompt", "question"]
        .iter()
        .find_map(|key| line.get(*key))
        .context("each line needs `prompt`, `question` or `prompt_ids`")?
        .as_str()
        .context("`prompt` / `question` must be a string")?;
    let tokenizer = tokenizer.context(
        "a text prompt needs a tokenizer in the model directory; give `prompt_ids` instead",
    )?;
    let system = match line.get("system") {
        Some(s) => Some(s.as_str().context("`system` must be a string")?),
        None if tir => Some(TIR_SYSTEM),
        None => None,
    };
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = system {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", text));
    Ok(tokenizer.encode(&tokenizer.apply_chat_template(&messages, true)?)?)
}

fn completion_json(c: &Completion, tokenizer: Option<&Tokenizer>, tir: bool) -> Result<Value> {
    let text = match (&c.text, tokenizer) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(tokenizer)) => Some(tokenizer.decode(&c.token_ids, true)?),
        (None, None) => None,
    };
    let mut json = serde_json::json!({
        "text": text,
        "token_ids": c.token_ids,
        "logprobs": c.logprobs,
        "finish_reason": c.finish_reason.as_str(),
    });
    if tir {
        json["tool_mask"] = serde_json::json!(c.tool_mask);
        json["tool_calls"] = c.tool_calls.into();
    }
    Ok(json)
}
