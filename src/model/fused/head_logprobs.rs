//! Log-probs of target tokens through the LM head without keeping the logits: the fused
//! "linear + log-softmax + gather" of a training step, on the CPU.
//!
//! Differentiating `log_softmax(h·Wᵀ/T)[t]` through candle's ops keeps several `[rows, vocab]`
//! tensors alive until the backward pass (logits, shifted logits, their exponentials, the
//! scattered gradient), each 262 MB for 16 × 128 tokens at vocab 32,000, and runs a dozen
//! passes over them. Here the forward keeps only each row's log-sum-exp; the
//! backward recomputes one block of logits at a time and turns it straight into the gradient
//! `(onehot(t) − softmax)·g/T`, so one `[chunk, vocab]` block exists at a time, in both passes.
//! When the probabilities of all rows fit in [`KEEP_PROBABILITIES_BYTES`], the forward keeps
//! them instead (one f32 per logit, as much as one copy of the logits) and the backward skips
//! recomputing the logits, a third of the LM head's training cost.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use std::sync::Mutex;

use rayon::prelude::*;

use super::simd::{self, exp, with_simd};
use super::with_f32;
use crate::{Error, Result};

/// The largest probability table (rows × vocab × 4 bytes) the forward keeps for the backward;
/// above it the backward recomputes the logits. 2048 rows at vocab 32,000 are 262 MB; at Qwen's
/// 151,936 the same rows (1.2 GB) are recomputed.
pub const KEEP_PROBABILITIES_BYTES: usize = 512 << 20;

/// Per-row results of [`head_logprobs`].
#[derive(Debug, Clone)]
pub struct HeadLogprobs {
    /// `log softmax(h·Wᵀ/T)[target]` per row, `[N]` f32; carries gradients to `h` and `W`.
    pub logprobs: Tensor,
    /// Entropy (nats) of each row's distribution, `[N]` f32, without gradient.
    pub entropy: Tensor,
}

/// Log-probs of `targets` (one per row) under `softmax(hidden · headᵀ / temperature)`, for
/// `hidden` `[N, d]` and `head` `[V, d]`, `chunk` rows of logits at a time. CPU tensors only.
pub fn head_logprobs(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[u32],
    temperature: f64,
    chunk: usize,
) -> Result<HeadLogprobs> {
    head_logprobs_keeping(
        hidden,
        head,
        targets,
        temperature,
        chunk,
        KEEP_PROBABILITIES_BYTES,
    )
}

/// [`head_logprobs`] with the probability table kept up to `keep_bytes`.
fn head_logprobs_keeping(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[u32],
    temperature: f64,
    chunk: usize,
    keep_bytes: usize,
) -> Result<HeadLogprobs> {
    let (n, _) = hidden.dims2()?;
    let (vocab, _) = head.dims2()?;
    if targets.len() != n {
        return Err(Error::Input(format!(
            "head_logprobs: {} targets for {n} rows",
            targets.len()
        )));
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::Input(format!(
            "head_logprobs: target token {bad} outside the vocabulary of {vocab}"
        )));
    }
    let chunk = chunk.max(1);
    let inv_t = (1.0 / temperature) as f32;
    let (h, w) = (hidden.detach(), head.detach());
    let tracking = hidden.track_op() || head.track_op();
    let keep = tracking && n * vocab * 4 <= keep_bytes;
    let mut probs = keep.then(|| vec![0f32; n * vocab]);
    let mut stats = Vec::with_capacity(n);
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let logits = block_logits(&h, &w, start, len)?;
        let targets = &targets[start..start + len];
        with_f32(&logits, |rows| match &mut probs {
            Some(p) => stats.par_extend(
                rows.par_chunks(vocab)
                    .zip(p[start * vocab..(start + len) * vocab].par_chunks_mut(vocab))
                    .zip(targets)
                    .map(|((z, p), &t)| row_statistics(z, t as usize, inv_t, Some(p))),
            ),
            None => stats.par_extend(
                rows.par_chunks(vocab)
                    .zip(targets)
                    .map(|(z, &t)| row_statistics(z, t as usize, inv_t, None)),
            ),
        })?;
    }
    let device = hidden.device();
    let entropy = Tensor::from_vec(stats.iter().map(|s| s.entropy).collect(), n, device)?;
    let values: Vec<f32> = stats.iter().map(|s| s.logprob).collect();
    let logprobs = if tracking {
        let op = HeadLogprobOp {
            values,
            lse: stats.iter().map(|s| s.lse).collect(),
            targets: targets.to_vec(),
            inv_t,
            chunk,
            probs: Mutex::new(probs),
        };
        hidden.apply_op2_arc(head, std::sync::Arc::new(Box::new(op)))?
    } else {
        Tensor::from_vec(values, n, device)?
    };
    Ok(HeadLogprobs { logprobs, entropy })
}

/// Logits `[len, V]` in f32 of rows `start..start + len` of `h`.
fn block_logits(h: &Tensor, w: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    Ok(h.narrow(0, start, len)?
        .matmul(&w.t()?)?
        .to_dtype(DType::F32)?
        .contiguous()?)
}

struct RowStatistics {
    logprob: f32,
    lse: f32,
    entropy: f32,
}

/// Log-sum-exp, target log-prob and entropy of one row of logits `z` at `1 / inv_t`; writes the
/// row's probabilities into `probs` when given.
fn row_statistics(
    z: &[f32],
    target: usize,
    inv_t: f32,
    probs: Option<&mut [f32]>,
) -> RowStatistics {
    with_simd(
        #[inline(always)]
        || {
            // The max of z/T is max(z)/T since T > 0.
            let max = simd::max(z) * inv_t;
            // Σ e^(z/T − m) and Σ e^(z/T − m)·(z/T − m), in eight lanes so the loop vectorises.
            let (mut sum, mut dot) = ([0f32; 8], [0f32; 8]);
            let mut blocks = z.chunks_exact(8);
            for block in &mut blocks {
                for i in 0..8 {
                    let s = block[i] * inv_t - max;
                    let e = exp(s);
                    sum[i] += e;
                    dot[i] += e * s;
                }
            }
            for &x in blocks.remainder() {
                let s = x * inv_t - max;
                let e = exp(s);
                sum[0] += e;
                dot[0] += e * s;
            }
            let sum: f32 = sum.iter().sum();
            let dot: f32 = dot.iter().sum();
            let log_sum = sum.ln();
            let lse = max + log_sum;
            if let Some(probs) = probs {
                for (p, &x) in probs.iter_mut().zip(z) {
                    *p = exp(x * inv_t - lse);
                }
            }
            RowStatistics {
                logprob: z[target] * inv_t - lse,
                lse,
                entropy: log_sum - dot / sum,
            }
        },
    )
}

/// The backward of [`head_logprobs`]; its forward only hands out the values computed there.
struct HeadLogprobOp {
    values: Vec<f32>,
    lse: Vec<f32>,
    targets: Vec<u32>,
    inv_t: f32,
    chunk: usize,
    /// The softmax of every row, when kept; the first backward takes it.
    probs: Mutex<Option<Vec<f32>>>,
}

impl CustomOp2 for HeadLogprobOp {
    fn name(&self) -> &'static str {
        "head-logprobs"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((
            CpuStorage::F32(self.values.clone()),
            Shape::from(self.values.len()),
        ))
    }

    fn bwd(
        &self,
        hidden: &Tensor,
        head: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (h, w) = (hidden.detach(), head.detach());
        let grad: Vec<f32> = grad_res.to_dtype(DType::F32)?.to_vec1()?;
        let (n, vocab) = (h.dim(0)?, w.dim(0)?);
        let kept = self
            .probs
            .lock()
            .map_err(|_| candle_core::Error::msg("poisoned lock"))?
            .take();
        if let Some(mut d) = kept {
            d.par_chunks_mut(vocab).enumerate().for_each(|(row, d)| {
                let g = grad[row] * self.inv_t;
                scale(d, -g);
                d[self.targets[row] as usize] += g;
            });
            let d = Tensor::from_vec(d, (n, vocab), h.device())?.to_dtype(h.dtype())?;
            return Ok((Some(d.matmul(&w)?), Some(d.t()?.matmul(&h)?)));
        }
        let mut grad_h = Vec::with_capacity(n.div_ceil(self.chunk));
        let mut grad_w: Option<Tensor> = None;
        for start in (0..n).step_by(self.chunk) {
            let len = self.chunk.min(n - start);
            let logits = block_logits(&h, &w, start, len).map_err(candle_core::Error::wrap)?;
            let mut d = vec![0f32; len * vocab];
            with_f32(&logits, |z| {
                d.par_chunks_mut(vocab)
                    .zip(z.par_chunks(vocab))
                    .enumerate()
                    .for_each(|(i, (d, z))| {
                        let row = start + i;
                        let g = grad[row] * self.inv_t;
                        logit_gradient(d, z, self.inv_t, self.lse[row], g);
                        d[self.targets[row] as usize] += g;
                    })
            })
            .map_err(candle_core::Error::wrap)?;
            drop(logits);
            let d = Tensor::from_vec(d, (len, vocab), h.device())?.to_dtype(h.dtype())?;
            let h_block = h.narrow(0, start, len)?;
            grad_h.push(d.matmul(&w)?);
            let gw = d.t()?.matmul(&h_block)?;
            grad_w = Some(match grad_w {
                Some(acc) => (acc + gw)?,
                None => gw,
            });
        }
        let grad_h = Tensor::cat(&grad_h, 0)?;
        let grad_w = match grad_w {
            Some(g) => g,
            None => w.zeros_like()?,
        };
        Ok((Some(grad_h), Some(grad_w)))
    }
}

/// `d *= c`.
fn scale(d: &mut [f32], c: f32) {
    with_simd(
        #[inline(always)]
        || d.iter_mut().for_each(|d| *d *= c),
    )
}

/// `d[v] = −g · softmax(z/T)[v]`, the softmax rebuilt from the row's log-sum-exp.
fn logit_gradient(d: &mut [f32], z: &[f32], inv_t: f32, lse: f32, g: f32) {
    with_simd(
        #[inline(always)]
        || {
            for (d, &z) in d.iter_mut().zip(z) {
                *d = -g * exp(z * inv_t - lse);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_abs_diff, seeded_randn};
    use super::*;
    use crate::model::gather_log_softmax;
    use candle_core::{Device, Var};

    /// The reference: candle's differentiable ops over the full logits.
    fn reference(h: &Tensor, w: &Tensor, targets: &[u32], t: f64) -> candle_core::Result<Tensor> {
        let logits = (h.matmul(&w.t()?)? / t)?;
        let targets = Tensor::new(targets, h.device())?.unsqueeze(1)?;
        Ok(gather_log_softmax(&logits, &targets).unwrap())
    }

    #[test]
    fn values_entropy_and_gradients_match_candle_ops() {
        let dev = Device::Cpu;
        let (n, d, v) = (7, 16, 37);
        // Seeded: with unseeded inputs an unlucky draw's largest gradients (several units)
        // could round past an absolute bound.
        let h = Var::from_tensor(&(seeded_randn(&[n, d], 21) * 0.8).unwrap()).unwrap();
        let w = Var::from_tensor(&seeded_randn(&[v, d], 22)).unwrap();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 11 + 3) % v as u32).collect();
        let weights = Tensor::new(&[1.0f32, -2.0, 0.5, 3.0, 0.0, -1.0, 0.25], &dev).unwrap();
        for (t, chunk, keep) in [
            (1.0, 100, 0),
            (0.7, 3, 0),
            (1.3, 1, 0),
            (0.7, 3, usize::MAX),
        ] {
            let want = reference(&h, &w, &targets, t).unwrap();
            let got = head_logprobs_keeping(&h, &w, &targets, t, chunk, keep).unwrap();
            assert!(max_abs_diff(&want, &got.logprobs) < 1e-5, "values at T={t}");
            let want_grads = (&want * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let got_grads = (&got.logprobs * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            // A second backward through the same graph (the kept table is gone by then).
            let again = (&got.logprobs * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for var in [&h, &w] {
                let want = want_grads.get(var).unwrap();
                // f32 sums in another order: rounding relative to the gradient's scale.
                let scale = 1.0 + max_abs_diff(want, &want.zeros_like().unwrap());
                for got in [got_grads.get(var).unwrap(), again.get(var).unwrap()] {
                    assert!(
                        max_abs_diff(want, got) < 1e-5 * scale,
                        "gradient at T={t}, chunk {chunk}"
                    );
                }
            }
            // Entropy straight from the definition.
            let logp =
                candle_nn::ops::log_softmax(&(h.matmul(&w.t().unwrap()).unwrap() / t).unwrap(), 1)
                    .unwrap();
            let entropy = (logp.exp().unwrap() * &logp)
                .unwrap()
                .sum(1)
                .unwrap()
                .neg()
                .unwrap();
            assert!(
                max_abs_diff(&entropy, &got.entropy) < 1e-5,
                "entropy at T={t}"
            );
        }
    }

    #[test]
    fn untracked_inputs_give_plain_values_and_bad_targets_are_refused() {
        let dev = Device::Cpu;
        let h = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let out = head_logprobs(&h, &w, &[0, 4, 2], 1.0, 2).unwrap();
        assert!(!out.logprobs.track_op());
        let want = reference(&h, &w, &[0, 4, 2], 1.0).unwrap();
        assert!(max_abs_diff(&want, &out.logprobs) < 1e-5);
        assert!(head_logprobs(&h, &w, &[0, 5, 2], 1.0, 2).is_err());
        assert!(head_logprobs(&h, &w, &[0, 1], 1.0, 2).is_err());
    }
}
