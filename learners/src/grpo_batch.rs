//! The GRPO learner's rows and micro-batches: one row per trained completion, sorted by length,
//! cut into micro-batches by count and by padded tokens ([`micro_batch_ranges`]), each padded
//! into tensors with its prompts left-aligned against its completions.

use candle_core::{Device, Tensor};

use crate::micro_batch::micro_batch_ranges;
use crate::Result;

/// One completion ready to be padded: its prompt, tokens, behaviour log-probs, which tokens are
/// trained on, and its advantage.
pub(crate) struct Row<'a> {
    pub prompt: &'a [u32],
    pub completion: &'a [u32],
    pub behaviour: Vec<f32>,
    pub trained: Vec<bool>,
    pub advantage: f32,
}

/// A micro-batch of rows as tensors: prompts left-padded to `prompt_width`, completions
/// right-padded to `completion_width`, so completion token j of every row sits at column
/// `prompt_width + j`.
pub(crate) struct MicroBatch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub prompt_width: usize,
    pub completion_width: usize,
    /// `[n, C]` f32, 1 on trained tokens.
    pub completion_mask: Tensor,
    /// `[n, C]` f32, the sampler's log-probs (0 where not trained).
    pub behaviour: Tensor,
    /// `[n]` f32.
    pub advantages: Tensor,
    /// Flat indices `row * C + j` of the trained tokens.
    pub trained_positions: Tensor,
}

/// The step's rows as micro-batches of at most `max_rows` rows and `max_tokens` padded tokens
/// (a longer single row goes alone). Rows are sorted by completion length first, so rows of
/// similar length share a micro-batch and each pads to its own longest row rather than the
/// batch's (one runaway completion would otherwise pad every row to its length).
///
/// A micro-batch pads to its longest prompt plus its longest completion; the budget counts each
/// row as the step's longest prompt plus its completion, which is never less, so the budget holds.
pub(crate) fn micro_batches(
    mut rows: Vec<Row>,
    max_rows: usize,
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<MicroBatch>> {
    rows.sort_by_key(|r| (r.completion.len(), r.prompt.len()));
    let prompt_width = rows.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let lengths: Vec<usize> = rows
        .iter()
        .map(|r| prompt_width + r.completion.len())
        .collect();
    micro_batch_ranges(&lengths, max_rows, max_tokens)
        .into_iter()
        .map(|range| collate(&rows[range], device))
        .collect()
}

/// Pads `rows` into one [`MicroBatch`] (pad id 0, masked everywhere).
fn collate(rows: &[Row], device: &Device) -> Result<MicroBatch> {
    let n = rows.len();
    let p = rows.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let c = rows.iter().map(|r| r.completion.len()).max().unwrap_or(0);
    let width = p + c;
    let mut ids = vec![0u32; n * width];
    let mut attention = vec![0u32; n * width];
    let mut mask = vec![0f32; n * c];
    let mut behaviour = vec![0f32; n * c];
    let mut trained_positions = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let line = i * width;
        let offset = p - row.prompt.len();
        ids[line + offset..line + p].copy_from_slice(row.prompt);
        attention[line + offset..line + p].fill(1);
        ids[line + p..line + p + row.completion.len()].copy_from_slice(row.completion);
        attention[line + p..line + p + row.completion.len()].fill(1);
        for (j, &trained) in row.trained.iter().enumerate() {
            if trained {
                mask[i * c + j] = 1.0;
                behaviour[i * c + j] = row.behaviour[j];
                trained_positions.push((i * c + j) as u32);
            }
        }
    }
    let advantages: Vec<f32> = rows.iter().map(|r| r.advantage).collect();
    let positions = trained_positions.len();
    Ok(MicroBatch {
        input_ids: Tensor::from_vec(ids, (n, width), device)?,
        attention_mask: Tensor::from_vec(attention, (n, width), device)?,
        prompt_width: p,
        completion_width: c,
        completion_mask: Tensor::from_vec(mask, (n, c), device)?,
        behaviour: Tensor::from_vec(behaviour, (n, c), device)?,
        advantages: Tensor::from_vec(advantages, n, device)?,
        trained_positions: Tensor::from_vec(trained_positions, positions, device)?,
    })
}
