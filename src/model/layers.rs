//! The layers of Qwen2: RMSNorm, rotary embeddings, grouped-query attention, the SwiGLU MLP and the
//! decoder layer that combines them.
//!
//! Every layer has three paths. When a gradient is tracked (training) on a CPU f32 tensor it uses
//! this crate's fused kernels with backward passes (`super::fused`); when a gradient is tracked
//! elsewhere, candle's differentiable ops; otherwise (generation, scoring, reference models)
//! candle's fused kernels, which are faster but have no backward pass and would silently cut the
//! graph. Decode-sized inference (a few rows) on a CPU f32 model takes `fused::skinny_matmul` for
//! the projections and `fused::decode_attention` for attention over the KV cache; the rollout
//! engine's copy of the weights is in column panels (`super::projection`).

use candle_core::{DType, Tensor, D};
use candle_nn::{Embedding, Init, Linear, VarBuilder};

use super::packed_attention::PackedAttentionInputs;
use super::projection::{apply_linear, apply_linears, Projection};
use super::{fused, Qwen2Config};
use crate::Result;

/// Standard deviation of the random init of linear and embedding weights (HF's
/// `initializer_range` default).
pub const INIT_STD: f64 = 0.02;

/// Whether any of `tensors` carries a gradient graph.
fn tracks_gradient(tensors: &[&Tensor]) -> bool {
    tensors.iter().any(|t| t.track_op())
}

/// Whether to use the fused training kernels: a gradient is tracked and `x` is CPU f32.
fn fused_training(x: &Tensor, tensors: &[&Tensor]) -> bool {
    tracks_gradient(tensors) && fused::applies_to(x)
}

/// A linear layer with the HF init: weights ~ N(0, 0.02), biases zero.
pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
    )?;
    let bias = if bias {
        Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// The token embedding table.
pub fn embedding(vocab: usize, hidden: usize, vb: VarBuilder) -> Result<Embedding> {
    let weight = vb.get_with_hints(
        (vocab, hidden),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
    )?;
    Ok(Embedding::new(weight, hidden))
}

/// Root-mean-square normalisation: `x / sqrt(mean(x²) + eps) * weight`, computed in f32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Loads the gain vector `weight` (initialised to ones).
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let eps = self.eps as f32;
        if fused_training(x, &[x, &self.weight]) {
            fused::rms_norm(x, &self.weight, eps)
        } else if tracks_gradient(&[x, &self.weight]) {
            Ok(candle_nn::ops::rms_norm_slow(x, &self.weight, eps)?)
        } else {
            Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight,
                eps,
            )?)
        }
    }
}

/// Rotary position embedding in Hugging Face's rotate-half layout.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    /// `theta^(-2j/d)` for j < d/2, in f32.
    inv_freq: Tensor,
}

/// The cos/sin tables of one batch of positions, `[B, T, head_dim/2]` each.
#[derive(Debug, Clone)]
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    /// Frequencies for `head_dim` and the config's `rope_theta`.
    pub fn new(cfg: &Qwen2Config, device: &candle_core::Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let inv_freq: Vec<f32> = (0..dim / 2)
            .map(|j| 1.0 / (cfg.rope_theta as f32).powf(2.0 * j as f32 / dim as f32))
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, 1, dim / 2), device)?;
        Ok(Self { inv_freq })
    }

    /// Tables for `positions` `[B, T]` (any integer dtype), cast to `dtype`.
    pub fn tables(&self, positions: &Tensor, dtype: DType) -> Result<RopeTables> {
        let angles = positions
            .to_dtype(DType::F32)?
            .unsqueeze(2)?
            .broadcast_mul(&self.inv_freq)?;
        Ok(RopeTables {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }
}

impl RopeTables {
    /// Rotates `x` `[B, heads, T, head_dim]`.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if tracks_gradient(&[x]) {
            let cos = Tensor::cat(&[&self.cos, &self.cos], D::Minus1)?.unsqueeze(1)?;
            let sin = Tensor::cat(&[&self.sin, &self.sin], D::Minus1)?.unsqueeze(1)?;
            let half = x.dim(D::Minus1)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
        } else {
            Ok(candle_nn::rotary_emb::rope(
                &x.contiguous()?,
                &self.cos,
                &self.sin,
            )?)
        }
    }
}

/// Storage of past keys and values, so that generation computes each position once.
///
/// `append` receives the new keys and values of one layer, `[B, kv_heads, T_new, head_dim]`, and
/// returns all keys and values the new queries attend to, `[B, kv_heads, S, head_dim]`.
pub trait KvStore {
    /// Stores this step's keys/values of `layer` and returns the full ones.
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)>;
}

/// What a forward's attention needs besides the layer input, built once for all layers.
#[derive(Debug, Clone)]
pub enum AttentionInputs {
    /// Every query against every key of its row: the rotary tables of the positions and an
    /// additive bias `[B, 1, T, S]` (0 or a large negative), in the model's dtype.
    Dense { rope: RopeTables, bias: Tensor },
    /// Shared-prefix packed rows attended sequence by sequence.
    Packed(PackedAttentionInputs),
}

/// Grouped-query self-attention with biases on q, k and v.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Projection,
    k_proj: Projection,
    v_proj: Projection,
    o_proj: Projection,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads `q_proj`, `k_proj`, `v_proj` (with bias) and `o_proj` (without).
    pub fn new(cfg: &Qwen2Config, vb: VarBuilder) -> Result<Self> {
        let head_dim = cfg.head_dim();
        let (h, kv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Ok(Self {
            q_proj: linear(cfg.hidden_size, h * head_dim, true, vb.pp("q_proj"))?.into(),
            k_proj: linear(cfg.hidden_size, kv * head_dim, true, vb.pp("k_proj"))?.into(),
            v_proj: linear(cfg.hidden_size, kv * head_dim, true, vb.pp("v_proj"))?.into(),
            o_proj: linear(h * head_dim, cfg.hidden_size, false, vb.pp("o_proj"))?.into(),
            num_heads: h,
            num_kv_heads: kv,
            head_dim,
        })
    }

    /// This attention with its projection weights in panels of `dtype`.
    fn to_panels(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            q_proj: self.q_proj.to_panels(dtype)?,
            k_proj: self.k_proj.to_panels(dtype)?,
            v_proj: self.v_proj.to_panels(dtype)?,
            o_proj: self.o_proj.to_panels(dtype)?,
            ..self.clone()
        })
    }

    /// `x` `[B, T, hidden]` under `inputs` (rotary tables and which keys each query sees); with
    /// a `cache` (dense inputs only), keys/values of earlier positions come from it.
    pub fn forward(
        &self,
        x: &Tensor,
        inputs: &AttentionInputs,
        cache: Option<(&mut dyn KvStore, usize)>,
    ) -> Result<Tensor> {
        let [q, k, v] = apply_linears([&self.q_proj, &self.k_proj, &self.v_proj], x)?;
        let attended = match inputs {
            AttentionInputs::Dense { rope, bias } => {
                let (b, t, _) = x.dims3()?;
                let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
                self.attend(
                    &q.reshape((b, t, h, hd))?,
                    &k.reshape((b, t, kvh, hd))?,
                    &v.reshape((b, t, kvh, hd))?,
                    [rope, rope],
                    bias,
                    cache,
                )?
            }
            AttentionInputs::Packed(packed) => {
                if cache.is_some() {
                    return Err(crate::Error::Input(
                        "packed rows cannot attend through a KV cache".into(),
                    ));
                }
                packed.attend(&q, &k, &v, self.head_dim, |q, k, v, rope, bias| {
                    self.attend(q, k, v, rope, bias, None)
                })?
            }
        };
        apply_linear(&self.o_proj, &attended)
    }

    /// Attention `[B, T, H · D]` of queries `q` `[B, T, H, D]` over keys and values
    /// `[B, S, KVH, D]` (before rotation; with a cache, the new ones, S = T), rotated by
    /// `rope` (the queries' tables, the keys'), under `bias` `[B, 1, T, S']` (S' = cached + S).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        [q_rope, k_rope]: [&RopeTables; 2],
        bias: &Tensor,
        cache: Option<(&mut dyn KvStore, usize)>,
    ) -> Result<Tensor> {
        let (b, t, h, hd) = q.dims4()?;
        let kvh = self.num_kv_heads;
        let scale = 1.0 / (hd as f64).sqrt();
        // Query head i uses KV head i / (h / kvh); grouping the queries of one KV head into one
        // matrix avoids materialising repeated keys and values.
        let rep = h / kvh;
        let fused = cache.is_none() && fused_training(q, &[q, k, v]);
        let v = v.transpose(1, 2)?.contiguous()?;
        // probs [B, H, T, S] times v [B, KVH, S, D], the queries of one KV head as one matrix.
        let weigh = |probs: Tensor, v: &Tensor| -> Result<Tensor> {
            let s = v.dim(2)?;
            Ok(probs
                .reshape((b, kvh, rep * t, s))?
                .matmul(v)?
                .reshape((b, h, t, hd))?)
        };
        let attended = if fused {
            let q = fused::rope_transposed(q, &q_rope.cos, &q_rope.sin)?;
            let k = fused::rope_transposed(k, &k_rope.cos, &k_rope.sin)?;
            let s = k.dim(2)?;
            let scores = q
                .reshape((b, kvh, rep * t, hd))?
                .matmul(&k.t()?)?
                .reshape((b, h, t, s))?;
            weigh(fused::attention_softmax(&scores, bias, scale)?, &v)?
        } else {
            let q = q_rope.apply(&q.transpose(1, 2)?)?;
            let k = k_rope.apply(&k.transpose(1, 2)?)?;
            let (k, v) = match cache {
                Some((store, layer)) => store.append(layer, &k, &v)?,
                None => (k, v),
            };
            match fused::decode_attention(&q, &k, &v, bias, scale)? {
                Some(attended) => attended,
                None => weigh(attention_probs(&q, &k, bias, scale, kvh)?, &v)?,
            }
        };
        Ok(attended.transpose(1, 2)?.reshape((b, t, h * hd))?)
    }
}

/// `softmax(q·kᵀ·scale + bias)` `[B, H, T, S]` with candle's ops, for `q` `[B, H, T, D]` and `k`
/// `[B, KVH, S, D]` (query head i uses KV head i / (H / KVH)).
fn attention_probs(
    q: &Tensor,
    k: &Tensor,
    bias: &Tensor,
    scale: f64,
    kvh: usize,
) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let s = k.dim(2)?;
    let q = (q.contiguous()?.reshape((b, kvh, h / kvh * t, d))? * scale)?;
    let scores = q.matmul(&k.contiguous()?.t()?)?.reshape((b, h, t, s))?;
    let scores = scores.broadcast_add(bias)?;
    Ok(if tracks_gradient(&[&scores]) {
        candle_nn::ops::softmax(&scores, D::Minus1)?
    } else {
        candle_nn::ops::softmax_last_dim(&scores)?
    })
}

/// The SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Projection,
    up_proj: Projection,
    down_proj: Projection,
}

impl Mlp {
    /// Loads `gate_proj`, `up_proj` and `down_proj` (no biases).
    pub fn new(cfg: &Qwen2Config, vb: VarBuilder) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: linear(d, i, false, vb.pp("gate_proj"))?.into(),
            up_proj: linear(d, i, false, vb.pp("up_proj"))?.into(),
            down_proj: linear(i, d, false, vb.pp("down_proj"))?.into(),
        })
    }

    /// This MLP with its projection weights in panels of `dtype`.
    fn to_panels(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            gate_proj: self.gate_proj.to_panels(dtype)?,
            up_proj: self.up_proj.to_panels(dtype)?,
            down_proj: self.down_proj.to_panels(dtype)?,
        })
    }

    /// Applies the MLP to `x` `[B, T, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [gate, up] = apply_linears([&self.gate_proj, &self.up_proj], x)?;
        let product = if fused_training(&gate, &[&gate, &up]) {
            fused::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        apply_linear(&self.down_proj, &product)
    }
}

/// One pre-norm decoder layer: attention and MLP, each with a residual connection.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    /// Loads the layer under `model.layers.N`.
    pub fn new(cfg: &Qwen2Config, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: RmsNorm::new(d, eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(d, eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    /// This layer with the weights of its seven projections in the panel kernel's layout, in
    /// `dtype` (f32 or bf16); activations, norms and biases keep theirs. For inference only: bf16
    /// halves the bytes a decode step reads, and the kernel widens them back to f32 as it goes.
    pub fn to_panels(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            self_attn: self.self_attn.to_panels(dtype)?,
            mlp: self.mlp.to_panels(dtype)?,
            ..self.clone()
        })
    }

    /// `x + attn(norm(x))`, then `h + mlp(norm(h))`.
    pub fn forward(
        &self,
        x: &Tensor,
        inputs: &AttentionInputs,
        cache: Option<(&mut dyn KvStore, usize)>,
    ) -> Result<Tensor> {
        let attn = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, inputs, cache)?;
        let h = (x + attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?;
        Ok((h + mlp)?)
    }
}
