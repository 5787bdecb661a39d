//! The SFT loss: next-token cross-entropy on the assistant's tokens only; prompt, template and
//! padding positions are masked out.

use candle_core::{DType, Tensor};
use mathrl::model::gather_log_softmax;

use crate::error::expect_shape;
use crate::{Error, Result};

/// What the summed token losses of a micro-batch are divided by.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum TokenNormaliser {
    /// The micro-batch's own unmasked tokens: a plain token mean.
    #[default]
    MicroBatch,
    /// A given count, e.g. the unmasked tokens of all micro-batches of an optimiser step, so that
    /// summed micro-batch gradients equal the whole step's token mean.
    Tokens(f64),
}

/// The SFT loss of one micro-batch.
#[derive(Debug, Clone)]
pub struct SftLoss {
    /// Scalar loss (f32), differentiable.
    pub loss: Tensor,
    /// Unmasked (trained-on) tokens in the micro-batch.
    pub num_tokens: usize,
}

/// Masked mean negative log-likelihood from logits `[B, T, V]`. `targets[b, t]` is the token that
/// `logits[b, t]` predicts (the input ids shifted left by one); `loss_mask[b, t]` is 1 where that
/// target is an assistant token. Targets at masked positions are ignored (they may be padding).
pub fn sft_loss_from_logits(
    logits: &Tensor,
    targets: &Tensor,
    loss_mask: &Tensor,
    normaliser: TokenNormaliser,
) -> Result<SftLoss> {
    let (b, t, v) = logits.dims3().map_err(|_| Error::Shape {
        tensor: "logits".into(),
        expected: vec![0, 0, 0],
        got: logits.dims().to_vec(),
    })?;
    expect_shape(targets, "targets", &[b, t])?;
    expect_shape(loss_mask, "loss_mask", &[b, t])?;
    let active = loss_mask.ne(0u32)?;
    let targets = targets.to_dtype(DType::U32)?;
    // Masked targets are replaced by 0 so that out-of-vocabulary filler cannot fail the gather.
    let targets = active.where_cond(&targets, &targets.zeros_like()?)?;
    if b * t > 0 {
        let max = targets.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max as usize >= v {
            return Err(Error::Input(format!(
                "sft_loss: target id {max} is outside the vocabulary of {v}"
            )));
        }
    }
    let logprobs = gather_log_softmax(
        &logits.to_dtype(DType::F32)?.reshape((b * t, v))?,
        &targets.reshape((b * t, 1))?,
    )?
    .reshape((b, t))?;
    sft_loss_from_logprobs(&logprobs, loss_mask, normaliser)
}

/// Masked mean negative log-likelihood from per-token log-probs `[B, T]` of the target tokens.
pub fn sft_loss_from_logprobs(
    logprobs: &Tensor,
    loss_mask: &Tensor,
    normaliser: TokenNormaliser,
) -> Result<SftLoss> {
    expect_shape(loss_mask, "loss_mask", logprobs.dims())?;
    let active = loss_mask.ne(0u32)?;
    let logprobs = logprobs.to_dtype(DType::F32)?;
    // `where` rather than a product: a masked position's value never reaches the sum.
    let nll_sum = active
        .where_cond(&logprobs, &logprobs.zeros_like()?)?
        .sum_all()?
        .neg()?;
    let num_tokens = active.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize;
    let denominator = match normaliser {
        TokenNormaliser::MicroBatch => num_tokens as f64,
        TokenNormaliser::Tokens(n) => n,
    };
    Ok(SftLoss {
        loss: (nll_sum / denominator.max(1.0))?,
        num_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn log_softmax(row: &[f32], k: usize) -> f64 {
        let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        row[k] as f64 - lse
    }

    fn setup() -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        // B = 1, T = 3, V = 4; position 0 is prompt (masked).
        let logits = vec![0.1, 0.2, 0.3, 0.4, 1.0, -1.0, 0.5, 0.0, -0.3, 0.7, 0.2, 2.0];
        (logits, vec![3, 0, 2], vec![0.0, 1.0, 1.0])
    }

    fn loss(logits: &[f32], targets: &[u32], mask: &[f32]) -> f32 {
        let dev = Device::Cpu;
        let l = Tensor::from_slice(logits, (1, 3, 4), &dev).unwrap();
        let t = Tensor::from_slice(targets, (1, 3), &dev).unwrap();
        let m = Tensor::from_slice(mask, (1, 3), &dev).unwrap();
        sft_loss_from_logits(&l, &t, &m, TokenNormaliser::MicroBatch)
            .unwrap()
            .loss
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn equals_hand_computation() {
        let (logits, targets, mask) = setup();
        let expected = -(log_softmax(&logits[4..8], 0) + log_softmax(&logits[8..12], 2)) / 2.0;
        assert!((loss(&logits, &targets, &mask) as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn masked_positions_do_not_matter() {
        let (mut logits, mut targets, mask) = setup();
        let base = loss(&logits, &targets, &mask);
        targets[0] = 999; // outside the vocabulary: ignored because masked
        assert_eq!(loss(&logits, &targets, &mask), base);
        logits[0] = 50.0;
        logits[3] = -7.0;
        assert_eq!(loss(&logits, &targets, &mask), base);
        // An unmasked target change does matter.
        targets[1] = 1;
        assert_ne!(loss(&logits, &targets, &mask), base);
    }

    #[test]
    fn masked_logits_get_no_gradient() {
        let (logits, targets, mask) = setup();
        let dev = Device::Cpu;
        let l = Var::from_tensor(&Tensor::from_slice(&logits, (1, 3, 4), &dev).unwrap()).unwrap();
        let t = Tensor::from_slice(&targets, (1, 3), &dev).unwrap();
        let m = Tensor::from_slice(&mask, (1, 3), &dev).unwrap();
        let out = sft_loss_from_logits(l.as_tensor(), &t, &m, TokenNormaliser::MicroBatch).unwrap();
        assert_eq!(out.num_tokens, 2);
        let g = out
            .loss
            .backward()
            .unwrap()
            .get(l.as_tensor())
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        assert_eq!(g[0][0], vec![0.0; 4]);
        // d(−log softmax_k)/d logit_j = softmax_j − [j = k], averaged over 2 tokens.
        let p0 =
            (logits[4] as f64).exp() / logits[4..8].iter().map(|&x| (x as f64).exp()).sum::<f64>();
        assert!((g[0][1][0] as f64 - (p0 - 1.0) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn fixed_normaliser_and_out_of_vocabulary_target() {
        let (logits, targets, mask) = setup();
        let dev = Device::Cpu;
        let l = Tensor::from_slice(&logits, (1, 3, 4), &dev).unwrap();
        let t = Tensor::from_slice(&targets, (1, 3), &dev).unwrap();
        let m = Tensor::from_slice(&mask, (1, 3), &dev).unwrap();
        let fixed = sft_loss_from_logits(&l, &t, &m, TokenNormaliser::Tokens(4.0)).unwrap();
        let mean = sft_loss_from_logits(&l, &t, &m, TokenNormaliser::MicroBatch).unwrap();
        let (a, b) = (
            fixed.loss.to_scalar::<f32>().unwrap(),
            mean.loss.to_scalar::<f32>().unwrap(),
        );
        assert!((a * 2.0 - b).abs() < 1e-6);
        let bad = Tensor::from_slice(&[3u32, 4, 2], (1, 3), &dev).unwrap();
        let err = sft_loss_from_logits(&l, &bad, &m, TokenNormaliser::MicroBatch).unwrap_err();
        assert!(err.to_string().contains("target id 4"), "{err}");
    }
}
