//! The GRPO learner's rows and micro-batches: one row per trained completion, sorted by length,
//! cut into micro-batches by count and by padded tokens ([`micro_batch_ranges`]), each padded
//! into tensors with its prompts left-aligned against its completions; or, with
//! `grpo.pack_groups`, cut by group into packed rows (`mathrl::model::SharedPrefixBatch`).

use std::ops::Range;

use candle_core::{Device, Tensor};
use mathrl::model::{AttentionMask, Qwen2Model, SharedPrefixBatch, SharedPrefixRow};

use crate::micro_batch::micro_batch_ranges;
use crate::Result;

/// One completion ready to be padded: its prompt, tokens, behaviour log-probs, which tokens are
/// trained on, and its advantage.
pub(crate) struct Row<'a> {
    /// Index of the row's group in the step: rows of one group share `prompt`.
    pub group: usize,
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
    /// The rows' groups packed, with the flat indices of the hidden states before each
    /// completion token ([`SharedPrefixBatch::predicting_indices`]); `None`: the padded rows.
    pub packed: Option<(SharedPrefixBatch, Tensor)>,
}

impl MicroBatch {
    /// Token ids, positions and attention mask of the forward pass: the packed rows', or the
    /// padded rows'.
    pub fn forward_inputs(&self, backbone: &Qwen2Model) -> Result<(Tensor, Tensor, AttentionMask)> {
        Ok(match &self.packed {
            Some((p, _)) => (p.input_ids.clone(), p.positions.clone(), p.mask.clone()),
            None => {
                let (positions, bias) =
                    backbone.padded_inputs(&self.input_ids, &self.attention_mask)?;
                (self.input_ids.clone(), positions, AttentionMask::Bias(bias))
            }
        })
    }

    /// The final hidden states `[n, C + 1, d]` before each completion token (and after the
    /// last), picked out of the forward pass's `hidden` (from [`Self::forward_inputs`]).
    pub fn completion_hidden(&self, hidden: &Tensor) -> Result<Tensor> {
        let (p, c) = (self.prompt_width, self.completion_width);
        Ok(match &self.packed {
            Some((_, gather)) => {
                let (g, t, d) = hidden.dims3()?;
                let n = self.advantages.dim(0)?;
                hidden
                    .reshape((g * t, d))?
                    .index_select(gather, 0)?
                    .reshape((n, c + 1, d))?
            }
            // Completion token j sits at column P + j and is predicted by the state at P + j − 1.
            None => hidden.narrow(1, p - 1, c + 1)?,
        })
    }
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
        .map(|range| collate(&rows[range].iter().collect::<Vec<_>>(), device))
        .collect()
}

/// The step's rows as micro-batches of packed rows: each group's rows (consecutive in `rows`)
/// are cut into packed rows of at most `max_rows` completions and `max_tokens` tokens (a single
/// longer completion goes alone), which are sorted by length and then taken greedily into
/// micro-batches of at most `max_rows` completions and `max_tokens` padded tokens (packed rows
/// × the longest).
pub(crate) fn packed_micro_batches(
    rows: Vec<Row>,
    max_rows: usize,
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<MicroBatch>> {
    let (max_rows, max_tokens) = (max_rows.max(1), max_tokens.max(1));
    let mut units: Vec<(Range<usize>, usize)> = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let mut end = start + 1;
        let mut tokens = rows[start].prompt.len() + rows[start].completion.len();
        while end < rows.len()
            && rows[end].group == rows[start].group
            && end - start < max_rows
            && tokens + rows[end].completion.len() <= max_tokens
        {
            tokens += rows[end].completion.len();
            end += 1;
        }
        units.push((start..end, tokens));
        start = end;
    }
    units.sort_by_key(|(range, tokens)| (*tokens, range.start));

    let mut batches = Vec::new();
    let mut taken = 0;
    while taken < units.len() {
        let (mut end, mut completions, mut longest) = (taken, 0, 0);
        while end < units.len() {
            let (range, tokens) = &units[end];
            let longer = longest.max(*tokens);
            let fits =
                completions + range.len() <= max_rows && (end - taken + 1) * longer <= max_tokens;
            if end > taken && !fits {
                break;
            }
            completions += range.len();
            longest = longer;
            end += 1;
        }
        batches.push(collate_packed(&rows, &units[taken..end], device)?);
        taken = end;
    }
    Ok(batches)
}

/// Pads the rows of `units` (ranges of `rows`, one packed row each) into one [`MicroBatch`] with
/// its packed inputs.
fn collate_packed(
    rows: &[Row],
    units: &[(Range<usize>, usize)],
    device: &Device,
) -> Result<MicroBatch> {
    let ordered: Vec<&Row> = units
        .iter()
        .flat_map(|(range, _)| &rows[range.clone()])
        .collect();
    let mut batch = collate(&ordered, device)?;
    let packed: Vec<SharedPrefixRow> = units
        .iter()
        .map(|(range, _)| SharedPrefixRow {
            prefix: rows[range.start].prompt,
            suffixes: rows[range.clone()].iter().map(|r| r.completion).collect(),
        })
        .collect();
    let packed = SharedPrefixBatch::new(&packed, device)?;
    let gather = packed.predicting_indices(batch.completion_width)?;
    batch.packed = Some((packed, gather));
    Ok(batch)
}

/// Pads `rows` into one [`MicroBatch`] (pad id 0, masked everywhere).
fn collate(rows: &[&Row], device: &Device) -> Result<MicroBatch> {
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
        packed: None,
    })
}
