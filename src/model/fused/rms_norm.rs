//! RMSNorm with its backward: `y = x · r · w`, `r = 1 / sqrt(mean(x²) + eps)` per row.
//!
//! candle's differentiable version keeps x², the mean, x·r and the product for the backward
//! pass; this op keeps only its input and recomputes each row's `r` in the backward.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous_f32, with_f32s};
use crate::Result;

/// RMSNorm of `x` `[..., D]` (f32, CPU) with gain `weight` `[D]`, differentiable in both.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNormOp { eps })?)
}

/// Rows per parallel task of the backward.
const ROWS_PER_TASK: usize = 64;

struct RmsNormOp {
    eps: f32,
}

fn inverse_rms(x: &[f32], eps: f32) -> f32 {
    let mean = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean + eps).sqrt()
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (contiguous_f32(xs, xl)?, contiguous_f32(ws, wl)?);
        let d = w.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(y, x)| {
            let r = inverse_rms(x, self.eps);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * r * w;
            }
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = weight.elem_count();
        let grad = grad.contiguous()?;
        let (gx, gw) = with_f32s([x, weight, &grad], |[x, w, g]| {
            let mut gx = vec![0f32; x.len()];
            // dx = r·(g⊙w) − x·r³/D·Σ(g⊙w⊙x); dw = Σ_rows g⊙x·r. Each task sums the dw
            // of a fixed block of rows and the blocks are added in order, so the result
            // does not depend on how the thread pool splits the work (exact resume).
            let block = ROWS_PER_TASK * d;
            let partial: Vec<Vec<f32>> = gx
                .par_chunks_mut(block)
                .zip(x.par_chunks(block).zip(g.par_chunks(block)))
                .map(|(gx, (x, g))| {
                    let mut gw = vec![0f32; d];
                    for (gx, (x, g)) in gx.chunks_mut(d).zip(x.chunks(d).zip(g.chunks(d))) {
                        let r = inverse_rms(x, self.eps);
                        let dot: f32 = x.iter().zip(g).zip(w).map(|((x, g), w)| x * g * w).sum();
                        let c = dot * r * r * r / d as f32;
                        for i in 0..d {
                            gx[i] = r * g[i] * w[i] - c * x[i];
                            gw[i] += g[i] * x[i] * r;
                        }
                    }
                    gw
                })
                .collect();
            let mut gw = vec![0f32; d];
            for p in partial {
                gw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
            }
            (gx, gw)
        })
        .map_err(candle_core::Error::wrap)?;
        let gx = Tensor::from_vec(gx, x.shape(), x.device())?;
        let gw = Tensor::from_vec(gw, weight.shape(), weight.device())?;
        Ok((Some(gx), Some(gw)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_same_values_and_gradients;
    use super::*;

    #[test]
    fn matches_candle_ops_in_value_and_gradient() {
        assert_same_values_and_gradients(
            &[&[3, 5, 8], &[8]],
            |v| rms_norm(v[0], v[1], 1e-6).unwrap(),
            |v| candle_nn::ops::rms_norm_slow(v[0], v[1], 1e-6).unwrap(),
        );
    }
}
