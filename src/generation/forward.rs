//! The three forward passes of generation over the slot cache, each returning the next-token
//! logits of every row (on the host, but decode's, which stay on the device):
//!
//! - prefill: prompts of different lengths, right-padded into one batch, written from position 0
//!   of fresh slots. Cache positions and rotary positions coincide (0..len), exactly what
//!   transformers computes for a left-padded batch (position = cumsum(mask) − 1); padding sits
//!   after each prompt, where the next tokens overwrite it, so a slot never holds a hole.
//! - decode: one token for each of the sequences in slots 0..rows, each at its own position.
//! - extend: several tokens for one sequence (its last sampled token and a tool's output).

use candle_core::{DType, Tensor};

use super::kv_cache::SlotKvCache;
use crate::model::{masked_score, AttentionMask, Qwen2ForCausalLM};
use crate::Result;

/// Next-token logits of a batch, `[rows, vocab]` row-major, in f32.
#[derive(Debug, Clone)]
pub struct Logits {
    data: Vec<f32>,
    vocab: usize,
}

impl Logits {
    /// No rows.
    pub fn empty() -> Self {
        Self {
            data: Vec::new(),
            vocab: 0,
        }
    }

    /// Copies `[rows, vocab]` logits to the host.
    pub fn from_tensor(logits: &Tensor) -> Result<Self> {
        let (_, vocab) = logits.dims2()?;
        let data = logits
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self { data, vocab })
    }

    /// The logits of row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.vocab..(r + 1) * self.vocab]
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len() / self.vocab.max(1)
    }
}

/// Runs the prompts (one per row, into `slots`) through the model; logits at each last token.
pub fn prefill(
    model: &Qwen2ForCausalLM,
    cache: &SlotKvCache,
    prompts: &[&[u32]],
    slots: &[usize],
) -> Result<Logits> {
    let device = model.backbone().device();
    let rows = prompts.len();
    let t = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut ids = vec![0u32; rows * t];
    for (r, prompt) in prompts.iter().enumerate() {
        ids[r * t..r * t + prompt.len()].copy_from_slice(prompt);
    }
    let ids = Tensor::from_vec(ids, (rows, t), device)?;
    let positions = Tensor::arange(0u32, t as u32, device)?
        .unsqueeze(0)?
        .repeat((rows, 1))?;
    // Causal only: a real query q < len sees keys k <= q < len, never the padding after it.
    let mut bias = vec![masked_score(DType::F32); t * t];
    for q in 0..t {
        bias[q * t..=q * t + q].fill(0.0);
    }
    let bias = Tensor::from_vec(bias, (1, 1, t, t), device)?;
    let mut store = cache.fresh(slots)?;
    let hidden = model.backbone().forward_with(
        &ids,
        &positions,
        &AttentionMask::Bias(bias),
        Some(&mut store),
    )?;
    let last: Vec<u32> = prompts
        .iter()
        .enumerate()
        .map(|(r, p)| (r * t + p.len() - 1) as u32)
        .collect();
    let hidden = hidden
        .reshape((rows * t, ()))?
        .index_select(&Tensor::new(last, device)?, 0)?;
    Logits::from_tensor(&model.logits(&hidden)?)
}

/// Feeds `tokens[r]` to the sequence in slot r at position `positions[r]` (its cache length);
/// the next-token logits `[rows, vocab]` stay on the model's device (a decode step may sample
/// there).
pub fn decode(
    model: &Qwen2ForCausalLM,
    cache: &SlotKvCache,
    tokens: &[u32],
    positions: &[usize],
) -> Result<Tensor> {
    let device = model.backbone().device();
    let rows = tokens.len();
    let span = positions.iter().max().map_or(0, |p| p + 1);
    let ids = Tensor::new(tokens, device)?.unsqueeze(1)?;
    let pos: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
    let pos = Tensor::new(pos, device)?.unsqueeze(1)?;
    let mut bias = vec![masked_score(DType::F32); rows * span];
    for (r, &p) in positions.iter().enumerate() {
        bias[r * span..=r * span + p].fill(0.0);
    }
    let bias = Tensor::from_vec(bias, (rows, 1, 1, span), device)?;
    let mut store = cache.append(0, positions)?;
    let hidden =
        model
            .backbone()
            .forward_with(&ids, &pos, &AttentionMask::Bias(bias), Some(&mut store))?;
    model.logits(&hidden.squeeze(1)?)
}

/// Feeds `tokens` to the sequence in `slot` from position `start`; logits after the last one.
pub fn extend(
    model: &Qwen2ForCausalLM,
    cache: &SlotKvCache,
    slot: usize,
    start: usize,
    tokens: &[u32],
) -> Result<Logits> {
    let device = model.backbone().device();
    let t = tokens.len();
    let span = start + t;
    let ids = Tensor::new(tokens, device)?.unsqueeze(0)?;
    let pos = Tensor::arange(start as u32, span as u32, device)?.unsqueeze(0)?;
    let mut bias = vec![masked_score(DType::F32); t * span];
    for q in 0..t {
        bias[q * span..=q * span + start + q].fill(0.0);
    }
    let bias = Tensor::from_vec(bias, (1, 1, t, span), device)?;
    let offsets = [start];
    let mut store = cache.append(slot, &offsets)?;
    let hidden =
        model
            .backbone()
            .forward_with(&ids, &pos, &AttentionMask::Bias(bias), Some(&mut store))?;
    Logits::from_tensor(&model.logits(&hidden.narrow(1, t - 1, 1)?.squeeze(1)?)?)
}
