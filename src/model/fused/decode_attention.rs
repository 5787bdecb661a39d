//! Attention of a few new queries over the KV cache, for generation.
//!
//! A decode step has one query per sequence and head. As matmuls, that is two tiny gemm calls per
//! (sequence, KV head) and layer, each handed to the thread pool on its own, plus a copy of the
//! cached keys for the transpose. This kernel runs each (sequence, KV head) as one task (scores,
//! softmax and the weighted sum of values) and reads the keys and values in place from the
//! cache's strided view.

use candle_core::{Storage, Tensor};
use rayon::prelude::*;

use super::attention_softmax::softmax_row;
use super::simd::{dot, with_simd};
use super::{applies_to, with_f32s};
use crate::{Error, Result};

/// Most query positions per sequence for which [`decode_attention`] applies (a decode step has
/// one; a tool's output a few dozen). Beyond it a blocked gemm does the scores faster.
pub const MAX_DECODE_QUERIES: usize = 64;

/// `softmax(q·kᵀ·scale + bias)·v` per head, for `q` `[B, H, T, D]`, `k` and `v`
/// `[B, KVH, S, D]` (any strides, `D` contiguous; query head i uses KV head i / (H / KVH)) and
/// `bias` `[B, 1, T, S]`; returns `[B, H, T, D]`. `None` unless all are f32 on the CPU with no
/// gradient tracked and `T ≤ MAX_DECODE_QUERIES`.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    scale: f64,
) -> Result<Option<Tensor>> {
    let tensors = [q, k, v, bias];
    if tensors.iter().any(|t| !applies_to(t) || t.track_op()) {
        return Ok(None);
    }
    let (b, h, t, d) = q.dims4()?;
    let (kb, kvh, s, kd) = k.dims4()?;
    if t > MAX_DECODE_QUERIES || kb != b || kd != d || v.dims() != k.dims() || h % kvh != 0 {
        return Ok(None);
    }
    let (k_view, v_view) = (CacheView::of(k)?, CacheView::of(v)?);
    let (Some(k_view), Some(v_view)) = (k_view, v_view) else {
        return Ok(None);
    };
    let (q, bias) = (
        q.contiguous()?,
        bias.broadcast_as((b, 1, t, s))?.contiguous()?,
    );
    let rep = h / kvh;
    let mut out = vec![0f32; b * h * t * d];
    let (ks, _) = k.storage_and_layout();
    let (vs, _) = v.storage_and_layout();
    let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&*ks, &*vs) else {
        return Ok(None);
    };
    let (ks, vs) = (ks.as_slice::<f32>()?, vs.as_slice::<f32>()?);
    with_f32s([&q, &bias], |[q, bias]| {
        // Heads g·rep..(g+1)·rep of sequence i share KV head g and are adjacent in `out`.
        out.par_chunks_mut(rep * t * d)
            .zip(q.par_chunks(rep * t * d))
            .enumerate()
            .for_each(|(task, (out, q))| {
                let (i, g) = (task / kvh, task % kvh);
                let bias = &bias[i * t * s..(i + 1) * t * s];
                let (mut z, mut p) = (vec![0f32; s], vec![0f32; s]);
                with_simd(
                    #[inline(always)]
                    || {
                        for (query, (out, q)) in
                            out.chunks_exact_mut(d).zip(q.chunks_exact(d)).enumerate()
                        {
                            for (pos, z) in z.iter_mut().enumerate() {
                                *z = dot(q, k_view.row(ks, i, g, pos, d));
                            }
                            let row = &bias[(query % t) * s..(query % t + 1) * s];
                            softmax_row(&mut p, &z, row, scale as f32);
                            out.fill(0.0);
                            for (pos, &w) in p.iter().enumerate() {
                                for (o, &x) in out.iter_mut().zip(v_view.row(vs, i, g, pos, d)) {
                                    *o += w * x;
                                }
                            }
                        }
                    },
                )
            })
    })?;
    Ok(Some(Tensor::from_vec(out, (b, h, t, d), q.device())?))
}

/// Where row (sequence, head, position) of a `[B, heads, S, D]` view starts in its storage.
#[derive(Debug, Clone, Copy)]
struct CacheView {
    offset: usize,
    strides: [usize; 3],
}

impl CacheView {
    /// The view of `t`, or `None` when its last dimension is not contiguous.
    fn of(t: &Tensor) -> Result<Option<Self>> {
        let layout = t.layout();
        match layout.stride() {
            &[s0, s1, s2, 1] => Ok(Some(Self {
                offset: layout.start_offset(),
                strides: [s0, s1, s2],
            })),
            &[_, _, _, _] => Ok(None),
            other => Err(Error::Input(format!(
                "decode attention: expected a 4-d key/value view, got strides {other:?}"
            ))),
        }
    }

    #[inline(always)]
    fn row<'a>(&self, data: &'a [f32], i: usize, g: usize, pos: usize, d: usize) -> &'a [f32] {
        let start = self.offset + i * self.strides[0] + g * self.strides[1] + pos * self.strides[2];
        &data[start..start + d]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_abs_diff, seeded_randn};
    use super::*;
    use crate::model::masked_score;

    /// The matmul formulation `Attention` uses otherwise.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64) -> Tensor {
        let (b, h, t, d) = q.dims4().unwrap();
        let (_, kvh, s, _) = k.dims4().unwrap();
        let q = (q.reshape((b, kvh, h / kvh * t, d)).unwrap() * scale).unwrap();
        let scores = q
            .matmul(&k.contiguous().unwrap().t().unwrap())
            .unwrap()
            .reshape((b, h, t, s))
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .reshape((b, kvh, h / kvh * t, s))
            .unwrap()
            .matmul(&v.contiguous().unwrap())
            .unwrap()
            .reshape((b, h, t, d))
            .unwrap()
    }

    #[test]
    fn matches_the_matmul_formulation_on_a_strided_cache_view_with_masked_positions() {
        // Two sequences in a cache of 3 slots x 10 positions; the view covers 7 positions, the
        // first sequence has only 4 (the rest masked), as in a decode step of uneven lengths.
        let (b, h, kvh, t, d, s) = (2, 6, 2, 3, 12, 7);
        let cache_k = seeded_randn(&[3, kvh, 10, d], 1);
        let cache_v = seeded_randn(&[3, kvh, 10, d], 2);
        let k = cache_k.narrow(0, 0, b).unwrap().narrow(2, 0, s).unwrap();
        let v = cache_v.narrow(0, 0, b).unwrap().narrow(2, 0, s).unwrap();
        assert!(!k.is_contiguous());
        let q = seeded_randn(&[b, h, t, d], 3);
        let mut bias = vec![0f32; b * t * s];
        for query in 0..t {
            bias[query * s + 4..(query + 1) * s].fill(masked_score(candle_core::DType::F32));
        }
        let bias = Tensor::from_vec(bias, (b, 1, t, s), q.device()).unwrap();
        let got = decode_attention(&q, &k, &v, &bias, 0.3)
            .unwrap()
            .expect("applies");
        let want = reference(&q, &k, &v, &bias, 0.3);
        assert_eq!(got.dims(), &[b, h, t, d]);
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn declines_tracked_or_long_queries() {
        let k = seeded_randn(&[1, 1, 4, 8], 1);
        let bias = Tensor::zeros((1, 1, 1, 4), candle_core::DType::F32, k.device()).unwrap();
        let tracked = candle_core::Var::from_tensor(&seeded_randn(&[1, 2, 1, 8], 2)).unwrap();
        assert!(decode_attention(tracked.as_tensor(), &k, &k, &bias, 1.0)
            .unwrap()
            .is_none());
        let long = seeded_randn(&[1, 1, MAX_DECODE_QUERIES + 1, 8], 2);
        let bias = Tensor::zeros(
            (1, 1, MAX_DECODE_QUERIES + 1, 4),
            candle_core::DType::F32,
            k.device(),
        )
        .unwrap();
        assert!(decode_attention(&long, &k, &k, &bias, 1.0)
            .unwrap()
            .is_none());
    }
}
