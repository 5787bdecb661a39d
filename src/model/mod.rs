//! The Qwen2 model: configuration, layers, the backbone and LM head, weights I/O, log-probs and
//! the training forward/backward with optional activation recomputation.

mod config;
pub mod fused;
pub mod layers;
pub mod logprobs;
mod packed_attention;
pub mod projection;
mod qwen2;
pub mod recompute;
mod shared_prefix;
pub mod weights;

pub use config::Qwen2Config;
pub use layers::{AttentionInputs, KvStore};
pub use logprobs::{
    gather_log_softmax, next_token_logprobs, token_logprobs, LogprobOptions, TokenLogprobs,
};
pub use packed_attention::{PackedAttention, PackedAttentionInputs};
pub use qwen2::{
    causal_padding_bias, mask_rows, masked_score, positions_from_mask, AttentionMask,
    CausalLmOutput, Qwen2ForCausalLM, Qwen2Model,
};
pub use recompute::{loss_and_gradients, Activations, LossAndGradients};
pub use shared_prefix::{common_prefix_len, packing_pays, SharedPrefixBatch, SharedPrefixRow};
pub use weights::Trainable;
