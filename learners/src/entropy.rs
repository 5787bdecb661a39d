//! Per-token entropy of the policy's next-token distribution, for logging: computed without
//! gradient, a block of positions at a time, so only one `[chunk, vocab]` block of logits exists.

use candle_core::{DType, Tensor, D};
use mathrl::model::Qwen2ForCausalLM;

use crate::Result;

/// Entropies (nats) `[N]` of softmax(logits / temperature) at final-norm hidden states `[N, d]`.
pub fn entropy_of_hidden(
    model: &Qwen2ForCausalLM,
    hidden: &Tensor,
    temperature: f64,
    chunk_positions: usize,
) -> Result<Tensor> {
    let n = hidden.dim(0)?;
    let hidden = hidden.detach();
    let head = model.lm_head()?.detach();
    let chunk = chunk_positions.max(1);
    let mut pieces = Vec::with_capacity(n.div_ceil(chunk));
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let logits = hidden
            .narrow(0, start, len)?
            .matmul(&head.t()?)?
            .to_dtype(DType::F32)?;
        let z = if temperature != 1.0 {
            (logits / temperature)?
        } else {
            logits
        };
        // H = logsumexp(z) − Σ p·z, with the max subtracted for stability.
        let max = z.max_keepdim(D::Minus1)?;
        let shifted = z.broadcast_sub(&max)?;
        let exp = shifted.exp()?;
        let sum = exp.sum_keepdim(D::Minus1)?;
        let expected_shifted = (exp * &shifted)?.sum_keepdim(D::Minus1)?.div(&sum)?;
        pieces.push((sum.log()? - expected_shifted)?.squeeze(D::Minus1)?);
    }
    if pieces.is_empty() {
        return Ok(Tensor::zeros(0, DType::F32, hidden.device())?);
    }
    Ok(Tensor::cat(&pieces, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use mathrl::model::Trainable;
    use mathrl::Policy;

    #[test]
    fn matches_a_direct_computation_and_is_chunk_independent() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");
        let policy = Policy::load(dir, &Device::Cpu, Some(DType::F32), Trainable::No).unwrap();
        let ids = Tensor::new(&[[5u32, 17, 42, 99, 7]], &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, 5), DType::U32, &Device::Cpu).unwrap();
        let hidden = policy
            .model()
            .backbone()
            .forward(&ids, &mask)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let t = 0.7;
        let whole = entropy_of_hidden(policy.model(), &hidden, t, 1000)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let chunked = entropy_of_hidden(policy.model(), &hidden, t, 2)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let logits = policy
            .model()
            .logits(&hidden)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (row, (&a, &b)) in logits.iter().zip(whole.iter().zip(&chunked)) {
            let z: Vec<f64> = row.iter().map(|&x| x as f64 / t).collect();
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = z.iter().map(|x| (x - m).exp()).sum();
            let h: f64 = -z
                .iter()
                .map(|x| {
                    let lp = x - m - s.ln();
                    lp.exp() * lp
                })
                .sum::<f64>();
            assert!((a as f64 - h).abs() < 1e-4, "{a} vs {h}");
            assert!((a - b).abs() < 1e-5);
            assert!(h > 0.0 && h <= (1024f64).ln());
        }
    }
}
