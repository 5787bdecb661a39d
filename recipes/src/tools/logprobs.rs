//! `logprobs`: per-token log-probabilities of given token ids, the parity tool for comparing a
//! trainer with an inference engine.
//!
//! IN.json is `{"input_ids": [[...], ...], "attention_mask": [[...], ...]}` (the mask is
//! optional: all ones); OUT.json is `{"logprobs": [[...], ...]}` where row r holds, for
//! t = 0 … T−2, log p(input_ids[r][t+1] | input_ids[r][..=t]). Entries whose target is padding
//! hold finite values of no meaning.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use mathrl::model::{next_token_logprobs, LogprobOptions, Trainable};
use mathrl::Policy;
use serde::Deserialize;

use crate::cli::Cli;
use crate::output::write_output;

/// Rows scored per forward pass, bounding memory on long inputs.
const ROWS_PER_BATCH: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Option<Vec<Vec<i64>>>,
}

/// Runs the recipe: `--model DIR --input IN.json --output OUT.json`.
pub fn run(cli: &Cli) -> Result<()> {
    let model_dir = cli.model.as_deref().context("logprobs needs --model DIR")?;
    let input = cli
        .input
        .as_deref()
        .context("logprobs needs --input IN.json")?;
    let output = cli
        .output
        .as_deref()
        .context("logprobs needs --output OUT.json")?;
    let device = mathrl::device::parse_device(&cli.device)?;
    let policy = Policy::load(model_dir, &device, cli.compute_dtype(), Trainable::No)?;
    let (ids, mask) = read_input(input, policy.config().vocab_size)?;
    let logprobs = score(&policy, &ids, &mask)?;
    let json = serde_json::json!({ "logprobs": logprobs });
    write_output(output, json.to_string().as_bytes())?;
    tracing::info!(rows = ids.len(), output = %output.display(), "wrote log-probs");
    Ok(())
}

/// Token-id rows and their attention-mask rows.
type Rows = (Vec<Vec<u32>>, Vec<Vec<u32>>);

/// Reads and validates IN.json; errors name the row at fault.
fn read_input(path: &Path, vocab_size: usize) -> Result<Rows> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let input: Input =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let width = input.input_ids.first().map_or(0, Vec::len);
    let mask = input
        .attention_mask
        .unwrap_or_else(|| input.input_ids.iter().map(|r| vec![1; r.len()]).collect());
    if mask.len() != input.input_ids.len() {
        bail!(
            "{}: attention_mask has {} rows, input_ids has {}",
            path.display(),
            mask.len(),
            input.input_ids.len()
        );
    }
    let mut ids = Vec::with_capacity(mask.len());
    let mut masks = Vec::with_capacity(mask.len());
    for (row, (id_row, mask_row)) in input.input_ids.iter().zip(&mask).enumerate() {
        if id_row.len() != width {
            bail!("{}: row {row} of input_ids has {} tokens, row 0 has {width} (rows must be padded to one length)", path.display(), id_row.len());
        }
        if mask_row.len() != width {
            bail!(
                "{}: row {row} of attention_mask has {} entries, input_ids has {width}",
                path.display(),
                mask_row.len()
            );
        }
        if let Some((t, id)) = id_row
            .iter()
            .enumerate()
            .find(|(_, &id)| id < 0 || id as usize >= vocab_size)
        {
            bail!("{}: row {row}, position {t}: token id {id} is outside the vocabulary (size {vocab_size})", path.display());
        }
        if let Some((t, m)) = mask_row.iter().enumerate().find(|(_, &m)| m != 0 && m != 1) {
            bail!(
                "{}: row {row}, position {t}: attention_mask value {m} is not 0 or 1",
                path.display()
            );
        }
        ids.push(id_row.iter().map(|&x| x as u32).collect());
        masks.push(mask_row.iter().map(|&x| x as u32).collect());
    }
    Ok((ids, masks))
}

fn score(policy: &Policy, ids: &[Vec<u32>], mask: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(ids.len());
    for (id_chunk, mask_chunk) in ids.chunks(ROWS_PER_BATCH).zip(mask.chunks(ROWS_PER_BATCH)) {
        let device = policy.device();
        let id_t = Tensor::new(id_chunk.to_vec(), device)?;
        let mask_t = Tensor::new(mask_chunk.to_vec(), device)?;
        let lp = next_token_logprobs(policy.model(), &id_t, &mask_t, LogprobOptions::default())?;
        out.extend(lp.to_vec2::<f32>()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("in.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bad_input_names_the_row() {
        let dir = tempfile::tempdir().unwrap();
        for (text, needle) in [
            (r#"{"input_ids": [[1,2,3],[4,5]]}"#, "row 1 of input_ids"),
            (
                r#"{"input_ids": [[1,2,3],[4,5,2000]]}"#,
                "row 1, position 2: token id 2000",
            ),
            (
                r#"{"input_ids": [[1,2,3]], "attention_mask": [[1,1]]}"#,
                "row 0 of attention_mask",
            ),
            (
                r#"{"input_ids": [[1,2,3]], "attention_mask": [[1,1,1],[1,1,1]]}"#,
                "attention_mask has 2 rows",
            ),
            (r#"{"input_ids": [[1,-2,3]]}"#, "row 0, position 1"),
            (
                r#"{"input_ids": [[1,2,3]], "mask": []}"#,
                "unknown field `mask`",
            ),
        ] {
            let err = format!(
                "{:#}",
                read_input(&write(dir.path(), text), 1024).unwrap_err()
            );
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
