//! `rm-score`: reward-model scores, at the token level (parity checks) or for (question, response)
//! pairs through the chat template.
//!
//! IN is either a JSON file `{"input_ids": [[...]], "attention_mask": [[...]]}` (OUT =
//! `{"rewards": [...]}`) or JSONL lines with `"question"` and `"response"` (OUT repeats each line
//! with `"reward"` added).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use mathrl::data::read_jsonl_numbered;
use mathrl::model::Trainable;
use mathrl::Tokenizer;
use mathrl_rewards::RewardModel;
use serde_json::Value;

use crate::cli::Cli;
use crate::output::{write_output, OutputFile};

/// Sequences scored per forward pass.
const BATCH: usize = 8;

/// Runs the recipe: `--rm DIR --input IN --output OUT`.
pub fn run(cli: &Cli) -> Result<()> {
    let rm_dir = cli.rm.as_deref().context("rm-score needs --rm DIR")?;
    let input = cli.input.as_deref().context("rm-score needs --input IN")?;
    let output = cli
        .output
        .as_deref()
        .context("rm-score needs --output OUT")?;
    let device = mathrl::device::parse_device(&cli.device)?;
    let rm = RewardModel::load(rm_dir, &device, cli.compute_dtype(), Trainable::No)?;
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let written = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v.get("input_ids").is_some() => score_token_file(&rm, &v, input, output)?,
        _ => {
            let tokenizer = Tokenizer::from_dir(rm_dir).with_context(|| {
                format!(
                    "question/response input needs a tokenizer in {}",
                    rm_dir.display()
                )
            })?;
            score_pairs_file(&rm, &tokenizer, input, output)?
        }
    };
    tracing::info!(scored = written, output = %output.display(), "wrote rewards");
    Ok(())
}

fn score_token_file(rm: &RewardModel, v: &Value, input: &Path, output: &Path) -> Result<usize> {
    let rows = |key: &str| -> Result<Vec<Vec<u32>>> {
        serde_json::from_value(v[key].clone()).with_context(|| {
            format!(
                "{}: `{key}` must be a list of lists of token ids",
                input.display()
            )
        })
    };
    let ids = rows("input_ids")?;
    let mask = if v.get("attention_mask").is_some() {
        rows("attention_mask")?
    } else {
        ids.iter().map(|r| vec![1; r.len()]).collect()
    };
    let vocab = rm.config().vocab_size;
    for (r, (i, m)) in ids.iter().zip(&mask).enumerate() {
        if i.len() != m.len() || i.len() != ids[0].len() {
            bail!(
                "{}: row {r}: input_ids and attention_mask must all have {} entries",
                input.display(),
                ids[0].len()
            );
        }
        if let Some(bad) = i.iter().find(|&&t| t as usize >= vocab) {
            bail!(
                "{}: row {r}: token id {bad} is outside the vocabulary (size {vocab})",
                input.display()
            );
        }
    }
    if mask.len() != ids.len() {
        bail!(
            "{}: attention_mask has {} rows, input_ids has {}",
            input.display(),
            mask.len(),
            ids.len()
        );
    }
    let mut rewards = Vec::with_capacity(ids.len());
    for (i, m) in ids.chunks(BATCH).zip(mask.chunks(BATCH)) {
        let (i, m) = (
            Tensor::new(i.to_vec(), rm.device())?,
            Tensor::new(m.to_vec(), rm.device())?,
        );
        rewards.extend(rm.forward(&i, &m)?.to_vec1::<f32>()?);
    }
    write_output(
        output,
        serde_json::json!({ "rewards": rewards })
            .to_string()
            .as_bytes(),
    )?;
    Ok(rewards.len())
}

fn score_pairs_file(
    rm: &RewardModel,
    tokenizer: &Tokenizer,
    input: &Path,
    output: &Path,
) -> Result<usize> {
    let mut lines = Vec::new();
    for (n, v) in read_jsonl_numbered::<Value>(input)? {
        let field = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .with_context(|| format!("{}:{n}: missing string field `{key}`", input.display()))
        };
        let (q, r) = (field("question")?, field("response")?);
        lines.push((v, q, r));
    }
    let mut out = OutputFile::create(output)?;
    for chunk in lines.chunks(BATCH) {
        let pairs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|(_, q, r)| (q.as_str(), r.as_str()))
            .collect();
        let rewards = rm.score_pairs(tokenizer, &pairs, BATCH)?;
        for ((v, _, _), reward) in chunk.iter().zip(rewards) {
            let mut v = v.clone();
            v["reward"] = reward.into();
            writeln!(out, "{v}")?;
        }
    }
    out.commit()?;
    Ok(lines.len())
}
