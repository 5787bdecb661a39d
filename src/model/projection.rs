//! A projection (linear layer) as the model applies it: its weight as loaded, multiplied by
//! candle's matmul or, for decode-sized inputs, by `fused::skinny_matmul`; or the rollout
//! engine's copy of the weight in column panels, multiplied by `fused::panel_matmuls` for any
//! number of rows.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::Linear;

use super::fused;
use crate::Result;

/// A linear layer: its weight as loaded, or the rollout engine's copy of it in the decode
/// kernel's column panels.
#[derive(Debug, Clone)]
pub enum Projection {
    /// `[out, in]` and the bias, as loaded: trainable, and what candle's kernels take.
    Dense(Linear),
    /// The weight in [`fused::PanelWeight`]'s panels, and the bias (inference only).
    Panels {
        /// The weight.
        weight: fused::PanelWeight,
        /// The bias, in the activations' dtype.
        bias: Option<Tensor>,
    },
}

impl From<Linear> for Projection {
    fn from(linear: Linear) -> Self {
        Self::Dense(linear)
    }
}

impl Projection {
    /// This projection with its weight in panels of `dtype` (f32 or bf16, on the CPU).
    pub fn to_panels(&self, dtype: DType) -> Result<Self> {
        Ok(Self::Panels {
            weight: fused::PanelWeight::new(&self.weight(dtype)?, dtype)?,
            bias: self.bias().cloned(),
        })
    }

    /// The weight `[out, in]` in `dtype`.
    pub fn weight(&self, dtype: DType) -> Result<Tensor> {
        match self {
            Self::Dense(linear) => Ok(linear.weight().to_dtype(dtype)?),
            Self::Panels { weight, .. } => weight.to_dense(dtype),
        }
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(linear) => linear.bias(),
            Self::Panels { bias, .. } => bias.as_ref(),
        }
    }

    /// A dense layer computing this projection in `dtype`.
    fn dense_in(&self, dtype: DType) -> Result<Linear> {
        match self {
            Self::Dense(linear) if linear.weight().dtype() == dtype => Ok(linear.clone()),
            _ => Ok(Linear::new(self.weight(dtype)?, self.bias().cloned())),
        }
    }
}

/// `x · weightᵀ` for `x` `[..., in]` and `weight` `[out, in]` when `x` is decode-sized (a few
/// rows, f32 on the CPU, no gradient), by [`fused::skinny_matmul`], which reads the weights once;
/// `None` otherwise.
pub fn skinny_times_weight_t(x: &Tensor, weight: &Tensor) -> Result<Option<Tensor>> {
    let (dims, k) = (x.dims(), x.dim(D::Minus1)?);
    let rows = x.elem_count() / k.max(1);
    if rows > fused::MAX_SKINNY_ROWS {
        return Ok(None);
    }
    let Some([y]) = fused::skinny_matmuls(&x.reshape((rows, k))?, [weight])? else {
        return Ok(None);
    };
    Ok(Some(y.reshape(out_dims(dims, y.dim(1)?))?))
}

/// `dims` with the last replaced by `out`.
fn out_dims(dims: &[usize], out: usize) -> Vec<usize> {
    let mut dims = dims.to_vec();
    if let Some(last) = dims.last_mut() {
        *last = out;
    }
    dims
}

/// `x · wᵀ` for each of several weights sharing `x` `[..., in]`, in one pass of a fused
/// kernel: the panel kernel for panel weights (any number of rows), the skinny kernel for dense
/// weights and decode-sized inputs; `None` where neither applies.
fn fused_times_weights_t<const N: usize>(
    x: &Tensor,
    layers: [&Projection; N],
) -> Result<Option<[Tensor; N]>> {
    let (dims, k) = (x.dims(), x.dim(D::Minus1)?);
    let rows = x.elem_count() / k.max(1);
    let x2 = || x.reshape((rows, k));
    let panels: Vec<&fused::PanelWeight> = layers
        .iter()
        .filter_map(|l| match l {
            Projection::Panels { weight, .. } => Some(weight),
            Projection::Dense(_) => None,
        })
        .collect();
    let ys = if panels.len() == N {
        let panels: [&fused::PanelWeight; N] = panels.try_into().expect("one per layer");
        fused::panel_matmuls(&x2()?, panels)?
    } else if panels.is_empty() && rows <= fused::MAX_SKINNY_ROWS {
        let dense = layers.map(|l| match l {
            Projection::Dense(linear) => linear.weight(),
            Projection::Panels { .. } => unreachable!("no panel weights here"),
        });
        fused::skinny_matmuls(&x2()?, dense)?
    } else {
        None
    };
    let Some(ys) = ys else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(N);
    for y in ys {
        out.push(y.reshape(out_dims(dims, y.dim(1)?))?);
    }
    Ok(out.try_into().ok())
}

/// `layer(x)`, through the fused kernels where they apply.
pub fn apply_linear(layer: &Projection, x: &Tensor) -> Result<Tensor> {
    let [y] = apply_linears([layer], x)?;
    Ok(y)
}

/// `layer(x)` for each of several layers reading the same `x` (Q/K/V, gate/up): in one pass of
/// a fused kernel where one applies. Weights stored in another dtype or layout than `x` takes
/// (see [`super::layers::DecoderLayer::to_panels`]) are converted for the inputs no fused kernel takes.
pub fn apply_linears<const N: usize>(layers: [&Projection; N], x: &Tensor) -> Result<[Tensor; N]> {
    let Some(ys) = fused_times_weights_t(x, layers)? else {
        let mut ys = Vec::with_capacity(N);
        for layer in layers {
            ys.push(layer.dense_in(x.dtype())?.forward(x)?);
        }
        return Ok(ys.try_into().expect("one output per layer"));
    };
    let mut out = Vec::with_capacity(N);
    for (y, layer) in ys.into_iter().zip(layers) {
        out.push(match layer.bias() {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        });
    }
    Ok(out.try_into().expect("one output per layer"))
}
