//! Per-token log-probabilities of given tokens, computed a chunk of positions at a time.
//!
//! Qwen's vocabulary has 151,936 entries: a full `[8, 1024, V]` f32 logits tensor is 5 GB. On the
//! CPU only one `[chunk, V]` block of logits exists at a time, with or without gradients (see
//! `head_logprobs`); on other devices each chunk's graph lives until the backward pass, so the
//! saving there is in the no-gradient paths (rollout scoring, reference models).

use candle_core::{DType, Tensor, D};

use super::fused::head_logprobs;
use super::Qwen2ForCausalLM;
use crate::Result;

/// How log-probs are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogprobOptions {
    /// Logits are divided by this before the softmax (the sampling temperature; 1 = none).
    pub temperature: f64,
    /// Positions per block of logits.
    pub chunk_positions: usize,
}

impl Default for LogprobOptions {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            chunk_positions: 1024,
        }
    }
}

/// Log-probabilities `[B, T-1]` (f32) of each next token: entry `[b, t]` is
/// `log p(input_ids[b, t+1] | input_ids[b, ..=t])`. Entries whose target is padding hold
/// finite values of no meaning.
pub fn next_token_logprobs(
    model: &Qwen2ForCausalLM,
    input_ids: &Tensor,
    attention_mask: &Tensor,
    options: LogprobOptions,
) -> Result<Tensor> {
    let hidden = model.backbone().forward(input_ids, attention_mask)?;
    logprobs_of_hidden(model, &hidden, input_ids, options)
}

/// Like [`next_token_logprobs`], from final-norm hidden states `[B, T, hidden]` already computed.
pub fn logprobs_of_hidden(
    model: &Qwen2ForCausalLM,
    hidden: &Tensor,
    input_ids: &Tensor,
    options: LogprobOptions,
) -> Result<Tensor> {
    Ok(token_logprobs(model, hidden, input_ids, options)?.logprobs)
}

/// Next-token log-probs `[B, T-1]` (as [`logprobs_of_hidden`]) and, on the CPU, the entropy of
/// each next-token distribution `[B, T-1]` (no gradient), which the fused pass gets for free.
#[derive(Debug, Clone)]
pub struct TokenLogprobs {
    /// Log-probs of the next tokens, differentiable.
    pub logprobs: Tensor,
    /// Entropies (nats) of the same distributions; `None` off the CPU.
    pub entropy: Option<Tensor>,
}

/// Log-probs (and, on the CPU, entropies) of the next tokens from final-norm hidden states. On
/// the CPU the LM head, log-softmax and gather are one fused op (`head_logprobs`) that never
/// keeps a block of logits; elsewhere candle's ops run a chunk of positions at a time.
pub fn token_logprobs(
    model: &Qwen2ForCausalLM,
    hidden: &Tensor,
    input_ids: &Tensor,
    options: LogprobOptions,
) -> Result<TokenLogprobs> {
    let (b, t, d) = hidden.dims3()?;
    if t < 2 {
        let empty = Tensor::zeros((b, 0), DType::F32, hidden.device())?;
        return Ok(TokenLogprobs {
            logprobs: empty.clone(),
            entropy: Some(empty),
        });
    }
    let rows = b * (t - 1);
    let hidden = hidden.narrow(1, 0, t - 1)?.reshape((rows, d))?;
    let targets = input_ids.narrow(1, 1, t - 1)?.to_dtype(DType::U32)?;
    let chunk = options.chunk_positions.max(1);
    if hidden.device().is_cpu() {
        let targets = targets.flatten_all()?.to_vec1::<u32>()?;
        let out = head_logprobs(
            &hidden,
            &model.lm_head()?,
            &targets,
            options.temperature,
            chunk,
        )?;
        return Ok(TokenLogprobs {
            logprobs: out.logprobs.reshape((b, t - 1))?,
            entropy: Some(out.entropy.reshape((b, t - 1))?),
        });
    }
    let targets = targets.reshape((rows, 1))?;
    let mut pieces = Vec::with_capacity(rows.div_ceil(chunk));
    for start in (0..rows).step_by(chunk) {
        let len = chunk.min(rows - start);
        let logits = model
            .logits(&hidden.narrow(0, start, len)?)?
            .to_dtype(DType::F32)?;
        let logits = if options.temperature != 1.0 {
            (logits / options.temperature)?
        } else {
            logits
        };
        pieces.push(gather_log_softmax(
            &logits,
            &targets.narrow(0, start, len)?,
        )?);
    }
    Ok(TokenLogprobs {
        logprobs: Tensor::cat(&pieces, 0)?.reshape((b, t - 1))?,
        entropy: None,
    })
}

/// `log_softmax(logits)[i, targets[i]]` for logits `[N, V]`, targets `[N, 1]`; returns `[N]`.
/// Never materialises the full log-softmax.
pub fn gather_log_softmax(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(targets, D::Minus1)?;
    Ok((picked - log_sum)?.squeeze(D::Minus1)?)
}
