//! Rotary position embedding (rotate-half layout) fused with the head transpose, with backward.
//!
//! The projections give `[B, T, heads, head_dim]`; attention wants `[B, heads, T, head_dim]`.
//! This op rotates and transposes in one pass and keeps nothing for its backward (the inverse
//! rotation by the same angles), where candle's chain keeps five tensors of the input's size.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, with_f32s};
use crate::Result;

/// Rotates `x` `[B, T, H, D]` by the angles whose `cos` and `sin` are `[B, T, D/2]` and returns
/// `[B, H, T, D]` (f32, CPU); differentiable in `x`.
pub fn rope_transposed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(RopeOp {
        cos: cos.contiguous()?.detach(),
        sin: sin.contiguous()?.detach(),
    })?)
}

struct RopeOp {
    cos: Tensor,
    sin: Tensor,
}

/// `dst = rotate(src, ±angle)` for one `[D]` vector; `sin` is negated for the inverse rotation.
fn rotate(dst: &mut [f32], src: &[f32], cos: &[f32], sin: &[f32], inverse: bool) {
    let half = cos.len();
    let sign = if inverse { -1.0 } else { 1.0 };
    for i in 0..half {
        let (x1, x2, s) = (src[i], src[i + half], sign * sin[i]);
        dst[i] = x1 * cos[i] - x2 * s;
        dst[i + half] = x2 * cos[i] + x1 * s;
    }
}

impl CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(xs, xl)?;
        let (b, t, h, d) = xl.shape().dims4()?;
        let half = d / 2;
        let mut y = vec![0f32; x.len()];
        with_f32s([&self.cos, &self.sin], |[cos, sin]| {
            // Output block (batch, head) is contiguous: [T, D].
            y.par_chunks_mut(t * d).enumerate().for_each(|(bh, y)| {
                let (bb, hh) = (bh / h, bh % h);
                for (tt, y) in y.chunks_mut(d).enumerate() {
                    let row = bb * t + tt;
                    let src = &x[(row * h + hh) * d..][..d];
                    let angles = row * half..(row + 1) * half;
                    rotate(y, src, &cos[angles.clone()], &sin[angles], false);
                }
            })
        })
        .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(y), Shape::from((b, h, t, d))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, t, h, d) = x.dims4()?;
        let half = d / 2;
        let grad = grad.contiguous()?;
        let mut gx = vec![0f32; x.elem_count()];
        with_f32s([&self.cos, &self.sin, &grad], |[cos, sin, g]| {
            // Input-gradient block (batch, position) is contiguous: [H, D].
            gx.par_chunks_mut(h * d).enumerate().for_each(|(row, gx)| {
                let (bb, tt) = (row / t, row % t);
                let angles = row * half..(row + 1) * half;
                for (hh, gx) in gx.chunks_mut(d).enumerate() {
                    let src = &g[((bb * h + hh) * t + tt) * d..][..d];
                    rotate(gx, src, &cos[angles.clone()], &sin[angles.clone()], true);
                }
            })
        })
        .map_err(candle_core::Error::wrap)?;
        Ok(Some(Tensor::from_vec(gx, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_same_values_and_gradients, seeded_randn};
    use super::*;

    #[test]
    fn matches_candle_ops_in_value_and_gradient() {
        let (b, t, h, d) = (2, 5, 3, 8);
        let angles = seeded_randn(&[b, t, d / 2], 7);
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        assert_same_values_and_gradients(
            &[&[b, t, h, d]],
            |v| rope_transposed(v[0], &cos, &sin).unwrap(),
            |v| {
                let x = v[0].transpose(1, 2).unwrap();
                let c = Tensor::cat(&[&cos, &cos], 2).unwrap().unsqueeze(1).unwrap();
                let s = Tensor::cat(&[&sin, &sin], 2).unwrap().unsqueeze(1).unwrap();
                let x1 = x.narrow(3, 0, d / 2).unwrap();
                let x2 = x.narrow(3, d / 2, d / 2).unwrap();
                let rotated = Tensor::cat(&[&x2.neg().unwrap(), &x1], 3).unwrap();
                (x.broadcast_mul(&c).unwrap() + rotated.broadcast_mul(&s).unwrap()).unwrap()
            },
        );
    }
}
