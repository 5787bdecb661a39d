//! The SwiGLU product `silu(gate) · up` with its backward, keeping only its two inputs (candle's
//! chain also keeps `silu(gate)`, a tensor of the MLP's intermediate width).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::simd::{exp, with_simd};
use super::{contiguous_f32, with_f32s};
use crate::Result;

/// Elements per parallel task: large enough to amortise the task, small enough to split.
const TASK: usize = 1 << 14;

/// `silu(gate) · up` for f32 CPU tensors of one shape, differentiable in both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGluOp)?)
}

struct SwiGluOp;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

impl CustomOp2 for SwiGluOp {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if gl.shape() != ul.shape() {
            candle_core::bail!(
                "swiglu: gate {:?} and up {:?} differ",
                gl.shape(),
                ul.shape()
            );
        }
        let (g, u) = (contiguous_f32(gs, gl)?, contiguous_f32(us, ul)?);
        let mut y = vec![0f32; g.len()];
        y.par_chunks_mut(TASK)
            .zip(g.par_chunks(TASK).zip(u.par_chunks(TASK)))
            .for_each(|(y, (g, u))| {
                with_simd(
                    #[inline(always)]
                    || {
                        for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                            *y = g * sigmoid(g) * u;
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(y), gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let n = gate.elem_count();
        let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
        with_f32s([gate, up, &grad], |[g, u, gy]| {
            dg.par_chunks_mut(TASK)
                .zip(du.par_chunks_mut(TASK))
                .zip(g.par_chunks(TASK).zip(u.par_chunks(TASK)))
                .zip(gy.par_chunks(TASK))
                .for_each(|(((dg, du), (g, u)), gy)| {
                    with_simd(
                        #[inline(always)]
                        || {
                            for i in 0..g.len() {
                                // silu'(g) = s·(1 + g·(1 − s)), s = sigmoid(g).
                                let s = sigmoid(g[i]);
                                du[i] = gy[i] * g[i] * s;
                                dg[i] = gy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                            }
                        },
                    )
                })
        })
        .map_err(candle_core::Error::wrap)?;
        Ok((
            Some(Tensor::from_vec(dg, gate.shape(), gate.device())?),
            Some(Tensor::from_vec(du, up.shape(), up.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_same_values_and_gradients;
    use super::*;

    #[test]
    fn matches_candle_ops_in_value_and_gradient() {
        assert_same_values_and_gradients(
            &[&[2, 3, 40_000], &[2, 3, 40_000]],
            |v| swiglu(v[0], v[1]).unwrap(),
            |v| (v[0].silu().unwrap() * v[1]).unwrap(),
        );
    }
}
