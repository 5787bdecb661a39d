//! Fused CPU kernels for f32 models: training ops with backward passes, and the two inference
//! ops that set a decode step's speed.
//!
//! candle differentiates a layer as a chain of small ops, each of which allocates its output,
//! keeps it alive until the backward pass and makes one mostly single-threaded pass over memory.
//! Each training op here does the work of such a chain in one multi-threaded, vectorised pass and
//! keeps only what its backward needs; callers use them when a gradient is tracked on a CPU f32
//! tensor, and candle's differentiable ops serve other devices and dtypes.
//!
//! A decode step multiplies a few rows by every weight and attends one query per sequence to the
//! cache. `skinny_matmul` and `decode_attention` do those without a gemm's packing and per-batch
//! dispatch; candle's own kernels serve the rest of inference.

mod attention_softmax;
mod decode_attention;
mod head_logprobs;
mod panel_matmul;
mod rms_norm;
mod rope;
mod simd;
mod skinny_matmul;
mod swiglu;

pub use attention_softmax::attention_softmax;
pub use decode_attention::{decode_attention, MAX_DECODE_QUERIES};
pub use head_logprobs::{head_logprobs, HeadLogprobs};
pub use panel_matmul::{panel_matmuls, PanelWeight};
pub use rms_norm::rms_norm;
pub use rope::rope_transposed;
pub use simd::{exp, max, with_simd};
pub use skinny_matmul::{skinny_matmul, skinny_matmuls, MAX_SKINNY_ROWS};
pub use swiglu::swiglu;

use candle_core::{DType, Storage, Tensor, WithDType};

use crate::{Error, Result};

/// Whether the fused kernels apply to `t`: an f32 tensor on the CPU.
pub fn applies_to(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// Calls `f` with the data of a contiguous f32 CPU tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_f32s([t], |[data]| f(data))
}

/// Calls `f` with the data of several contiguous f32 CPU tensors at once.
fn with_f32s<const N: usize, R>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Result<R> {
    with_slices(tensors, f)
}

/// Calls `f` with the data of several contiguous CPU tensors of element type `T` at once.
fn with_slices<T: WithDType, const N: usize, R>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[T]; N]) -> R,
) -> Result<R> {
    let guards = tensors.map(|t| t.storage_and_layout());
    let mut slices: [&[T]; N] = [&[]; N];
    for (slice, (storage, layout)) in slices.iter_mut().zip(&guards) {
        let Storage::Cpu(cpu) = &**storage else {
            return Err(Error::Input("fused kernels run on CPU tensors only".into()));
        };
        let data = cpu.as_slice::<T>()?;
        let (from, to) = layout
            .contiguous_offsets()
            .ok_or_else(|| Error::Input("fused kernels need contiguous tensors".into()))?;
        *slice = &data[from..to];
    }
    Ok(f(slices))
}

/// The f32 data of a contiguous CPU storage under `layout` (what `cpu_fwd` receives).
fn contiguous_f32<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((from, to)) => Ok(&data[from..to]),
        None => candle_core::bail!("fused kernels need contiguous tensors"),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor, Var};
    use rand::{Rng, SeedableRng};

    /// A seeded normal(0.3, 1) tensor of `shape`.
    pub fn seeded_randn(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| 0.3 + rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    /// Checks that `fused` and `reference` agree (1e-5) in value and in the gradients of a
    /// weighted sum of their outputs with respect to each input, for random inputs of `shapes`.
    pub fn assert_same_values_and_gradients(
        shapes: &[&[usize]],
        fused: impl Fn(&[&Tensor]) -> Tensor,
        reference: impl Fn(&[&Tensor]) -> Tensor,
    ) {
        let vars: Vec<Var> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Var::from_tensor(&seeded_randn(s, i as u64)).unwrap())
            .collect();
        let inputs: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
        let (got, want) = (fused(&inputs), reference(&inputs));
        assert_eq!(got.dims(), want.dims());
        assert!(max_abs_diff(&got, &want) < 1e-5, "values differ");
        let weights = seeded_randn(want.dims(), 99);
        let loss = |t: &Tensor| (t * &weights).unwrap().sum_all().unwrap();
        let (g_got, g_want) = (
            loss(&got).backward().unwrap(),
            loss(&want).backward().unwrap(),
        );
        for (i, v) in vars.iter().enumerate() {
            let (a, b) = (g_got.get(v), g_want.get(v));
            match (a, b) {
                (Some(a), Some(b)) => assert!(max_abs_diff(a, b) < 1e-5, "gradient {i} differs"),
                (None, None) => {}
                _ => panic!("gradient {i} present in only one"),
            }
        }
    }

    /// Largest absolute elementwise difference.
    pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }
}
