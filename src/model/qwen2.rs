//! The Qwen2 backbone (`Qwen2Model`) and the causal language model on top (`Qwen2ForCausalLM`).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, VarBuilder};

use super::layers::{
    embedding, linear, AttentionInputs, DecoderLayer, KvStore, RmsNorm, RopeTables, RotaryEmbedding,
};
use super::packed_attention::PackedAttention;
use super::projection::{apply_linear, skinny_times_weight_t, Projection};
use super::Qwen2Config;
use crate::{Error, Result};

/// Added to the attention scores of masked keys: the most negative finite value of `dtype`, as
/// transformers does. Finite so that no row is all -inf (which would give NaN); a query whose
/// keys are all masked (a padding query) then attends uniformly, exactly as in transformers.
pub fn masked_score(dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => half::bf16::MIN.to_f32(),
        DType::F16 => half::f16::MIN.to_f32(),
        _ => f32::MIN,
    }
}

/// The Qwen2 backbone: embeddings, decoder layers and the final norm.
#[derive(Debug, Clone)]
pub struct Qwen2Model {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    rotary: RotaryEmbedding,
    dtype: DType,
    device: Device,
}

impl Qwen2Model {
    /// Loads the backbone from `vb` rooted at `model`.
    pub fn new(cfg: &Qwen2Config, vb: VarBuilder) -> Result<Self> {
        let embed_tokens = embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            rotary: RotaryEmbedding::new(cfg, vb.device())?,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The embedding matrix `[vocab, hidden]` (the LM head when embeddings are tied).
    pub fn embed_weight(&self) -> &Tensor {
        self.embed_tokens.embeddings()
    }

    /// The dtype of the weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Final-norm hidden states `[B, T, hidden]` of `input_ids` `[B, T]` at `positions` `[B, T]`
    /// under `mask`; keys/values of earlier positions come from `cache` when given (a dense
    /// bias `[B, 1, T, S]`, S = cached + T).
    pub fn forward_with(
        &self,
        input_ids: &Tensor,
        positions: &Tensor,
        mask: &AttentionMask,
        mut cache: Option<&mut dyn KvStore>,
    ) -> Result<Tensor> {
        let inputs = self.attention_inputs(positions, mask)?;
        let mut x = self.embed(input_ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache: Option<(&mut dyn KvStore, usize)> = match cache {
                Some(ref mut c) => Some((&mut **c, i)),
                None => None,
            };
            x = layer.forward(&x, &inputs, layer_cache)?;
        }
        self.final_norm(&x)
    }

    /// Final-norm hidden states `[B, T, hidden]` of a padded batch: `attention_mask` `[B, T]`
    /// marks real tokens (1) and padding (0), left or right. Positions are the cumulative sum of
    /// the mask minus one, as Hugging Face computes them for generation.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (positions, bias) = self.padded_inputs(input_ids, attention_mask)?;
        self.forward_with(input_ids, &positions, &AttentionMask::Bias(bias), None)
    }

    /// The positions `[B, T]` and attention bias `[B, 1, T, T]` that [`Self::forward`] derives
    /// from a padded batch's `attention_mask`, for [`Self::forward_with`].
    pub fn padded_inputs(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let mask = mask_rows(input_ids, attention_mask)?;
        let positions = positions_from_mask(&mask, &self.device)?;
        let bias = causal_padding_bias(&mask, self.dtype, &self.device)?;
        Ok((positions, bias))
    }

    // The pieces of `forward_with`, for callers that run the layers one at a time (activation
    // recomputation, `super::recompute`).

    /// The token embeddings `[B, T, hidden]` of `input_ids` `[B, T]`: the decoder's input.
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        Ok(self.embed_tokens.forward(input_ids)?)
    }

    /// The rotary tables of `positions` `[B, T]` in the model's dtype.
    pub fn rope_tables(&self, positions: &Tensor) -> Result<RopeTables> {
        self.rotary.tables(positions, self.dtype)
    }

    /// What every layer's attention needs for `positions` `[B, T]` under `mask`: rotary tables
    /// and the mask, in the model's dtype.
    pub fn attention_inputs(
        &self,
        positions: &Tensor,
        mask: &AttentionMask,
    ) -> Result<AttentionInputs> {
        Ok(match mask {
            AttentionMask::Bias(bias) => AttentionInputs::Dense {
                rope: self.rope_tables(positions)?,
                bias: bias.to_dtype(self.dtype)?,
            },
            AttentionMask::Packed(packed) => AttentionInputs::Packed(packed.inputs(
                positions,
                |p| self.rope_tables(p),
                self.dtype,
            )?),
        })
    }

    /// This backbone with its decoder layers' projection weights in panels of `dtype`
    /// ([`DecoderLayer::to_panels`]).
    pub fn to_panels(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            layers: self
                .layers
                .iter()
                .map(|layer| layer.to_panels(dtype))
                .collect::<Result<_>>()?,
            ..self.clone()
        })
    }

    /// The decoder layers, first to last.
    pub fn layers(&self) -> &[DecoderLayer] {
        &self.layers
    }

    /// The final norm applied to the last layer's output.
    pub fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(x)
    }
}

/// The rows of `attention_mask` on the host, checked against the shape of `input_ids`.
pub fn mask_rows(input_ids: &Tensor, attention_mask: &Tensor) -> Result<Vec<Vec<u32>>> {
    if input_ids.dims() != attention_mask.dims() || input_ids.rank() != 2 {
        return Err(Error::Input(format!(
            "input_ids {:?} and attention_mask {:?} must both be [batch, seq]",
            input_ids.dims(),
            attention_mask.dims()
        )));
    }
    Ok(attention_mask.to_dtype(DType::U32)?.to_vec2::<u32>()?)
}

/// Position ids `[B, T]` (u32): `cumsum(mask) - 1`, clamped at 0 for leading padding.
pub fn positions_from_mask(mask: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let t = mask.first().map_or(0, Vec::len);
    let positions: Vec<u32> = mask
        .iter()
        .flat_map(|row| {
            let mut seen = 0u32;
            row.iter().map(move |&m| {
                seen += u32::from(m != 0);
                seen.saturating_sub(1)
            })
        })
        .collect();
    Ok(Tensor::from_vec(positions, (mask.len(), t), device)?)
}

/// Which keys each query of a forward sees.
#[derive(Debug, Clone)]
pub enum AttentionMask {
    /// An additive bias `[B, 1, T, S]` on the scores: 0 where a query sees a key, a large
    /// negative ([`masked_score`]) where not.
    Bias(Tensor),
    /// Shared-prefix packed rows (`super::SharedPrefixBatch`), attended sequence by sequence.
    Packed(PackedAttention),
}

/// Additive attention bias `[B, 1, T, T]` in `dtype`: query q sees key k when k ≤ q and k is
/// not padding (see [`masked_score`]).
pub fn causal_padding_bias(mask: &[Vec<u32>], dtype: DType, device: &Device) -> Result<Tensor> {
    let b = mask.len();
    let t = mask.first().map_or(0, Vec::len);
    let mut bias = vec![masked_score(dtype); b * t * t];
    for (row, m) in mask.iter().enumerate() {
        for q in 0..t {
            let base = (row * t + q) * t;
            for k in 0..=q {
                if m[k] != 0 {
                    bias[base + k] = 0.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(bias, (b, 1, t, t), device)?.to_dtype(dtype)?)
}

/// Output of a training forward.
#[derive(Debug, Clone)]
pub struct CausalLmOutput {
    /// Final-norm hidden states `[B, T, hidden]`.
    pub hidden: Tensor,
    /// Next-token logits `[B, T, vocab]`.
    pub logits: Tensor,
}

/// Qwen2 with its language-model head.
#[derive(Debug, Clone)]
pub struct Qwen2ForCausalLM {
    model: Qwen2Model,
    /// `[vocab, hidden]`: `lm_head.weight`, or the embedding matrix when tied (no bias).
    lm_head: Projection,
    config: Qwen2Config,
}

impl Qwen2ForCausalLM {
    /// Loads `model.*` and `lm_head.weight` (absent when embeddings are tied).
    ///
    /// The head is tied when config.json says so, and also, as candle-transformers decides it,
    /// when the weights hold embeddings but no `lm_head.weight`: transformers' Qwen2Config
    /// defaults `tie_word_embeddings` to false when config.json leaves it out, and would then
    /// start the head from random values. The config kept (and saved) says what was done.
    pub fn new(cfg: &Qwen2Config, vb: VarBuilder) -> Result<Self> {
        let model = Qwen2Model::new(cfg, vb.pp("model"))?;
        let tied = cfg.tie_word_embeddings
            || (vb.contains_tensor("model.embed_tokens.weight")
                && !vb.contains_tensor("lm_head.weight"));
        let lm_head = if tied {
            candle_nn::Linear::new(model.embed_weight().clone(), None)
        } else {
            linear(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        Ok(Self {
            model,
            lm_head: lm_head.into(),
            config: Qwen2Config {
                tie_word_embeddings: tied,
                ..cfg.clone()
            },
        })
    }

    /// The backbone.
    pub fn backbone(&self) -> &Qwen2Model {
        &self.model
    }

    /// The configuration this model was built from.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// The LM head matrix `[vocab, hidden]` (the tensor itself as loaded; a dense copy of a
    /// rollout copy's panels).
    pub fn lm_head(&self) -> Result<Tensor> {
        match &self.lm_head {
            Projection::Dense(linear) => Ok(linear.weight().clone()),
            Projection::Panels { weight, .. } => weight.to_dense(weight.dtype()),
        }
    }

    /// This model with the projection weights and the LM head in the panel kernel's layout, in
    /// `dtype` (f32 or bf16), for sampling on the CPU: activations, embeddings, norms and biases
    /// keep the model's dtype. bf16 halves the bytes each decode step reads; the kernel widens
    /// them back to f32 as it goes. (The rollout engine's own copy: see `EngineConfig`.)
    pub fn to_panels(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            model: self.model.to_panels(dtype)?,
            lm_head: self.lm_head.to_panels(dtype)?,
            config: self.config.clone(),
        })
    }

    /// This model as the CPU rollout engine samples with it: an f32 model on the CPU with its
    /// weights in panels (bf16 ones with `bf16_weights`); any other model, or one in panels
    /// already, as it is.
    pub fn for_cpu_decoding(&self, bf16_weights: bool) -> Result<Self> {
        let backbone = &self.model;
        if !backbone.device().is_cpu() || backbone.dtype() != DType::F32 || self.has_panel_weights()
        {
            return Ok(self.clone());
        }
        self.to_panels(if bf16_weights {
            DType::BF16
        } else {
            DType::F32
        })
    }

    /// Whether the weights are in panels ([`Self::to_panels`]).
    pub fn has_panel_weights(&self) -> bool {
        matches!(self.lm_head, Projection::Panels { .. })
    }

    /// Logits `[..., vocab]` of hidden states `[..., hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let Projection::Dense(head) = &self.lm_head else {
            return apply_linear(&self.lm_head, hidden);
        };
        let head = head.weight();
        match skinny_times_weight_t(hidden, head)? {
            Some(logits) => Ok(logits),
            None => Ok(hidden.broadcast_matmul(&head.to_dtype(hidden.dtype())?.t()?)?),
        }
    }

    /// Training forward of a padded batch: hidden states and logits for every position.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<CausalLmOutput> {
        let hidden = self.model.forward(input_ids, attention_mask)?;
        let logits = self.logits(&hidden)?;
        Ok(CausalLmOutput { hidden, logits })
    }
}
