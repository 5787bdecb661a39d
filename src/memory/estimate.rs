//! The arithmetic of the plan: parameter counts of the Qwen2 shapes and the activation estimate
//! of a learner micro-batch.

use crate::model::Qwen2Config;

/// Parameters of one decoder layer: q/k/v projections with bias, o_proj without, the SwiGLU MLP
/// (gate, up, down) and two RMSNorm gains.
fn decoder_layer_parameters(c: &Qwen2Config) -> u64 {
    let h = c.hidden_size as u64;
    let kv = (c.num_key_value_heads * c.head_dim()) as u64;
    let i = c.intermediate_size as u64;
    let q = h * h + h;
    let k_and_v = 2 * (h * kv + kv);
    let o = h * h;
    let mlp = 3 * h * i;
    let norms = 2 * h;
    q + k_and_v + o + mlp + norms
}

/// Parameters of the backbone: embedding, decoder layers, final norm.
fn backbone_parameters(c: &Qwen2Config) -> u64 {
    let embedding = (c.vocab_size * c.hidden_size) as u64;
    embedding + c.num_hidden_layers as u64 * decoder_layer_parameters(c) + c.hidden_size as u64
}

/// Parameters of a Qwen2 causal LM (`Qwen2ForCausalLM`): the backbone and, unless tied to the
/// embedding, the LM head.
pub fn causal_lm_parameters(c: &Qwen2Config) -> u64 {
    let head = if c.tie_word_embeddings {
        0
    } else {
        (c.vocab_size * c.hidden_size) as u64
    };
    backbone_parameters(c) + head
}

/// Parameters of a reward model on the Qwen2 backbone, by its config's architecture:
/// `Qwen2ForRewardModel` (Qwen2.5-Math-RM) has a hidden→hidden→1 head with biases, the others
/// (`Qwen2ForSequenceClassification`) one hidden→1 row without bias.
pub fn reward_model_parameters(c: &Qwen2Config) -> u64 {
    let h = c.hidden_size as u64;
    let head = if c.architecture.as_deref() == Some("Qwen2ForRewardModel") {
        h * h + h + h + 1
    } else {
        h
    };
    backbone_parameters(c) + head
}

/// Elements one token keeps for the backward pass in one decoder layer, in a sequence of
/// `sequence_tokens` tokens (H hidden, K = kv heads × head dim, I intermediate, A query heads,
/// S the sequence length):
///
/// ```text
///   2H       the layer input (kept by the input RMSNorm) and its normed output (q/k/v's input)
/// + H + 2K   q, k, v
/// + H + K    q and k after RoPE (the score matmul's inputs)
/// + 2·A·S    the attention scores and their softmax, one row of S per query head
/// + H        the attention context (o_proj's input)
/// + 2H       the residual after attention (post-attention RMSNorm's input) and its normed output
/// + 4I       gate, up, silu(gate) and silu(gate)·up (down_proj's input)
/// = 7H + 3K + 4I + 2·A·S
/// ```
///
/// This is what candle's differentiable ops keep (the attention is materialised, as this
/// implementation does); fused kernels keep less, so it is an upper estimate.
pub fn layer_elements_per_token(c: &Qwen2Config, sequence_tokens: usize) -> u64 {
    let h = c.hidden_size as u64;
    let k = (c.num_key_value_heads * c.head_dim()) as u64;
    let i = c.intermediate_size as u64;
    let a = c.num_attention_heads as u64;
    7 * h + 3 * k + 4 * i + 2 * a * sequence_tokens as u64
}

/// The activations of one learner micro-batch, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationEstimate {
    /// Decoder layers: without recomputation `L · T · e(S) · b`; with gradient checkpointing
    /// each layer keeps only its input, `L · T · H · b`, plus one layer's activations
    /// recomputed at a time in the backward pass, `T · e(S) · b` (T tokens in the micro-batch,
    /// e(S) = [`layer_elements_per_token`], b bytes per element of the compute dtype).
    pub decoder_bytes: u64,
    /// Final norm and LM head: the final norm's input and output, `2 · T · H · b`, and the
    /// logits with their softmax in f32 (log-probs are computed in f32), `2 · T · V · 4`.
    pub lm_head_bytes: u64,
}

/// The activation estimate of a micro-batch of `micro_batch_tokens` tokens in sequences of
/// `sequence_tokens`, with elements of `dtype_bytes` bytes (see [`ActivationEstimate`]).
pub fn activation_bytes(
    c: &Qwen2Config,
    dtype_bytes: u64,
    micro_batch_tokens: u64,
    sequence_tokens: usize,
    gradient_checkpointing: bool,
) -> ActivationEstimate {
    let t = micro_batch_tokens;
    let layers = c.num_hidden_layers as u64;
    let h = c.hidden_size as u64;
    let one_layer = t * layer_elements_per_token(c, sequence_tokens) * dtype_bytes;
    let decoder_bytes = if gradient_checkpointing {
        layers * t * h * dtype_bytes + one_layer
    } else {
        layers * one_layer
    };
    let lm_head_bytes = 2 * t * h * dtype_bytes + 2 * t * c.vocab_size as u64 * 4;
    ActivationEstimate {
        decoder_bytes,
        lm_head_bytes,
    }
}

/// Bytes of keys and values one position of one sequence takes over all layers:
/// `L · 2 · kv_heads · head_dim · b` (as the generation engine's KV cache allocates them).
pub fn kv_bytes_per_position(c: &Qwen2Config, dtype_bytes: u64) -> u64 {
    (c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim()) as u64 * dtype_bytes
}
