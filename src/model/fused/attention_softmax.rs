//! The attention softmax `softmax(scores · scale + bias)` with its backward.
//!
//! candle's chain (scale, add the mask bias, max, subtract, exp, sum, divide) keeps four
//! `[B, heads, T, S]` tensors for the backward pass; this op keeps none beyond its input and
//! output, since `∂/∂scores = scale · p ⊙ (g − Σ g ⊙ p)` needs only the output `p`.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::simd::{self, exp, with_simd};
use super::{contiguous_f32, with_f32, with_f32s};
use crate::Result;

/// `softmax(scores · scale + bias)` over the last dimension, for `scores` `[B, H, T, S]` and an
/// additive `bias` `[B, 1, T, S]` shared by the heads (f32, CPU); differentiable in `scores`.
pub fn attention_softmax(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, _, t, s) = scores.dims4()?;
    let bias = bias.broadcast_as((b, 1, t, s))?.contiguous()?.detach();
    Ok(scores.contiguous()?.apply_op1(AttentionSoftmaxOp {
        bias,
        scale: scale as f32,
    })?)
}

struct AttentionSoftmaxOp {
    bias: Tensor,
    scale: f32,
}

impl CustomOp1 for AttentionSoftmaxOp {
    fn name(&self) -> &'static str {
        "fused-attention-softmax"
    }

    fn cpu_fwd(&self, ss: &CpuStorage, sl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = contiguous_f32(ss, sl)?;
        let (_, h, t, s) = sl.shape().dims4()?;
        let mut p = vec![0f32; scores.len()];
        with_f32(&self.bias, |bias| {
            // One task per (batch, head): its T rows share the batch's bias block.
            p.par_chunks_mut(t * s)
                .zip(scores.par_chunks(t * s))
                .enumerate()
                .for_each(|(bh, (p, z))| {
                    let bias = &bias[(bh / h) * t * s..][..t * s];
                    for ((p, z), bias) in p.chunks_mut(s).zip(z.chunks(s)).zip(bias.chunks(s)) {
                        softmax_row(p, z, bias, self.scale);
                    }
                })
        })
        .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(p), sl.shape().clone()))
    }

    fn bwd(
        &self,
        scores: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let s = scores.dim(3)?;
        let (res, grad) = (res.contiguous()?, grad.contiguous()?);
        let mut ds = vec![0f32; scores.elem_count()];
        with_f32s([&res, &grad], |[p, g]| {
            ds.par_chunks_mut(s * 64)
                .zip(p.par_chunks(s * 64).zip(g.par_chunks(s * 64)))
                .for_each(|(ds, (p, g))| {
                    for ((ds, p), g) in ds.chunks_mut(s).zip(p.chunks(s)).zip(g.chunks(s)) {
                        let dot: f32 = p.iter().zip(g).map(|(p, g)| p * g).sum();
                        for i in 0..s {
                            ds[i] = self.scale * p[i] * (g[i] - dot);
                        }
                    }
                })
        })
        .map_err(candle_core::Error::wrap)?;
        Ok(Some(Tensor::from_vec(ds, scores.shape(), scores.device())?))
    }
}

/// `p = softmax(z · scale + bias)` for one row.
pub(super) fn softmax_row(p: &mut [f32], z: &[f32], bias: &[f32], scale: f32) {
    with_simd(
        #[inline(always)]
        || {
            for ((p, &z), &b) in p.iter_mut().zip(z).zip(bias) {
                *p = z * scale + b;
            }
            let max = simd::max(p);
            for p in p.iter_mut() {
                *p = exp(*p - max);
            }
            let inv = 1.0 / simd::sum(p);
            for p in p.iter_mut() {
                *p *= inv;
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_same_values_and_gradients;
    use super::*;
    use candle_core::DType;

    #[test]
    fn matches_candle_ops_in_value_and_gradient_with_a_causal_padding_mask() {
        let (b, h, t) = (2, 3, 5);
        let mask = vec![vec![0, 1, 1, 1, 1], vec![1, 1, 1, 1, 1]];
        let bias = crate::model::causal_padding_bias(&mask, DType::F32, &candle_core::Device::Cpu)
            .unwrap();
        assert_eq!(bias.dims(), &[b, 1, t, t]);
        let scale = 0.35;
        assert_same_values_and_gradients(
            &[&[b, h, t, t]],
            |v| attention_softmax(v[0], &bias, scale).unwrap(),
            |v| {
                let z = (v[0] * scale).unwrap().broadcast_add(&bias).unwrap();
                candle_nn::ops::softmax(&z, 3).unwrap()
            },
        );
    }
}
