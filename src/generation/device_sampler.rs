//! Drawing a decode step's tokens where its logits are: on a GPU only the token ids and their
//! behaviour log-probs cross to the host, never a full-vocabulary row (600 KB per row at
//! Qwen2.5's 151,936 ids, every step).
//!
//! The distribution is [`Sampler`](super::sampler::Sampler)'s — `softmax(logits / T)` truncated
//! by top-k, then top-p — and so is the log-prob (`log_softmax(logits / T)` of the drawn token over
//! the whole vocabulary; T = 1 when greedy). The draw differs, because a GPU has no cheap
//! inverse-CDF scan over a row:
//!
//! - the token is `argmax(logits / T + Gumbel noise)` over the kept tokens (the Gumbel-max
//!   trick, as vLLM samples), with the noise drawn by the device's RNG, so a GPU run does not
//!   reproduce the CPU's per-sequence streams (CPU runs keep [`Sampler`] and stay deterministic);
//! - top-k and top-p keep every token at or above a per-row threshold found by bisection over
//!   the f32 values (at most 32 rounds of a compare-and-sum kernel, a few bytes to the host
//!   each). Ties at the top-p boundary are all kept, where [`Sampler`] keeps the lower index.

use candle_core::{DType, Device, Tensor, D};
use rand::Rng;

use super::sampler::{SampledToken, SamplerSettings};
use crate::Result;

/// Smallest and largest uniform draw fed to the Gumbel transform: curand's uniforms lie in
/// (0, 1], and a 1 would give one token infinite noise (it would win whatever its probability).
const UNIFORM_FLOOR: f32 = 1e-20;
const UNIFORM_CEIL: f32 = 1.0 - f32::EPSILON / 2.0;

/// Draws one token per row of `logits` `[rows, vocab]` (any float dtype, any device). The noise
/// comes from the device's RNG on a GPU (seed it with `Device::set_seed`) and from `cpu_rng` on
/// the CPU (whose RNG candle cannot seed), so CPU draws are reproducible.
pub fn sample_rows<R: Rng + ?Sized>(
    logits: &Tensor,
    settings: &SamplerSettings,
    cpu_rng: &mut R,
) -> Result<Vec<SampledToken>> {
    let logits = logits.to_dtype(DType::F32)?;
    let greedy = settings.temperature == 0.0;
    let scaled = if greedy {
        logits
    } else {
        (logits / settings.temperature)?
    };
    let log_normaliser = log_sum_exp(&scaled)?;
    let tokens = if greedy {
        scaled.argmax_keepdim(D::Minus1)?
    } else {
        let kept = kept_logits(&scaled, settings)?;
        let noise = gumbel_like(&kept, cpu_rng)?;
        (kept + noise)?.argmax_keepdim(D::Minus1)?
    };
    let logprobs = scaled
        .gather(&tokens, D::Minus1)?
        .broadcast_sub(&log_normaliser)?;
    let tokens = tokens.flatten_all()?.to_vec1::<u32>()?;
    let logprobs = logprobs.flatten_all()?.to_vec1::<f32>()?;
    Ok(tokens
        .into_iter()
        .zip(logprobs)
        .map(|(token, logprob)| SampledToken { token, logprob })
        .collect())
}

/// `log Σ exp(x)` of each row, `[rows, 1]`.
fn log_sum_exp(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let sum = x.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?;
    Ok((sum.log()? + max)?)
}

/// `scaled` with the tokens that top-k and top-p drop set to -inf.
fn kept_logits(scaled: &Tensor, settings: &SamplerSettings) -> Result<Tensor> {
    let (rows, vocab) = scaled.dims2()?;
    let mut kept = scaled.clone();
    if settings.top_k > 0 && settings.top_k < vocab {
        // The k-th largest logit: the largest threshold that keeps at least k tokens.
        let targets = vec![settings.top_k as f32; rows];
        let threshold = largest_threshold(&kept, None, &targets)?;
        kept = mask_below(&kept, &kept, &threshold)?;
    }
    if settings.top_p < 1.0 {
        // The nucleus: the largest weight threshold whose tokens at or above it hold at least
        // top_p of the kept mass (weights relative to the row's maximum; dropped tokens weigh 0).
        let max = kept.max_keepdim(D::Minus1)?;
        let weights = kept.broadcast_sub(&max)?.exp()?;
        let targets: Vec<f32> = (weights.sum_keepdim(D::Minus1)? * settings.top_p)?
            .flatten_all()?
            .to_vec1()?;
        let threshold = largest_threshold(&weights, Some(&weights), &targets)?;
        kept = mask_below(&kept, &weights, &threshold)?;
    }
    Ok(kept)
}

/// `x` with the entries whose `key` lies below their row's `threshold` (`[rows, 1]`) set to -inf.
fn mask_below(x: &Tensor, key: &Tensor, threshold: &Tensor) -> Result<Tensor> {
    let keep = key.broadcast_ge(threshold)?;
    let dropped = Tensor::full(f32::NEG_INFINITY, x.shape(), x.device())?;
    Ok(keep.where_cond(x, &dropped)?)
}

/// Per row r, the largest f32 `t` such that the entries of `key` at or above `t` weigh at least
/// `targets[r]` (each entry weighs 1, or its `weights` entry). Returned as `[rows, 1]`.
///
/// Bisection over the f32 values in their total order (as u32 keys), all rows at once: at most 32
/// rounds, each one compare-and-sum over the rows and `rows` floats to the host. The answer is
/// always one of the row's own values, so the threshold keeps exactly the tokens it should.
fn largest_threshold(key: &Tensor, weights: Option<&Tensor>, targets: &[f32]) -> Result<Tensor> {
    let device = key.device();
    let rows = targets.len();
    let min = key
        .min_keepdim(D::Minus1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let max = key
        .max_keepdim(D::Minus1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    // Invariant: measure(lo) >= target (the row's minimum keeps everything) and
    // measure(hi) < target (nothing lies above the maximum).
    let mut lo: Vec<u64> = min.iter().map(|&v| ordered(v)).collect();
    let mut hi: Vec<u64> = max.iter().map(|&v| ordered(v) + 1).collect();
    while lo.iter().zip(&hi).any(|(l, h)| h - l > 1) {
        let mid: Vec<u64> = lo.iter().zip(&hi).map(|(l, h)| l + (h - l) / 2).collect();
        let probe = column(&mid, device)?;
        let above = key.broadcast_ge(&probe)?.to_dtype(DType::F32)?;
        let measured = match weights {
            None => above,
            Some(w) => (above * w)?,
        };
        let measured = measured
            .sum_keepdim(D::Minus1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for r in 0..rows {
            if hi[r] - lo[r] > 1 {
                if measured[r] >= targets[r] {
                    lo[r] = mid[r];
                } else {
                    hi[r] = mid[r];
                }
            }
        }
    }
    column(&lo, device)
}

/// A `[rows, 1]` f32 tensor of the values behind ordered keys.
fn column(keys: &[u64], device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = keys.iter().map(|&k| from_ordered(k)).collect();
    Ok(Tensor::from_vec(values, (keys.len(), 1), device)?)
}

/// An f32's position in the total order of f32s (negative values below positive ones).
fn ordered(v: f32) -> u64 {
    let bits = v.to_bits();
    u64::from(if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    })
}

/// The f32 at an ordered position (inverse of [`ordered`]; positions past the top clamp to it).
fn from_ordered(key: u64) -> f32 {
    let key = key.min(u64::from(u32::MAX)) as u32;
    f32::from_bits(if key >> 31 == 1 {
        key & !(1 << 31)
    } else {
        !key
    })
}

/// Gumbel noise `-ln(-ln u)` of the shape of `x`: from the device's RNG, or `cpu_rng` on the CPU.
fn gumbel_like<R: Rng + ?Sized>(x: &Tensor, cpu_rng: &mut R) -> Result<Tensor> {
    let u = if x.device().is_cpu() {
        let values: Vec<f32> = (0..x.elem_count()).map(|_| cpu_rng.random()).collect();
        Tensor::from_vec(values, x.shape(), x.device())?
    } else {
        Tensor::rand(0f32, 1f32, x.shape(), x.device())?
    };
    let u = u.clamp(UNIFORM_FLOOR, UNIFORM_CEIL)?;
    Ok(u.log()?.neg()?.log()?.neg()?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::generation::sampler::tests::{
        chi_square_p_value, expected_distribution, DRAWS, LOGITS,
    };

    fn settings(temperature: f64, top_k: usize, top_p: f64) -> SamplerSettings {
        SamplerSettings {
            temperature,
            top_k,
            top_p,
        }
    }

    /// Token frequencies of `DRAWS` draws from `LOGITS`, in batches of identical rows.
    fn frequencies(settings: SamplerSettings, seed: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let rows = 2_000;
        let batch = Tensor::new(&LOGITS, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .repeat((rows, 1))
            .unwrap();
        let mut counts = vec![0; LOGITS.len()];
        for _ in 0..DRAWS / rows {
            for draw in sample_rows(&batch, &settings, &mut rng).unwrap() {
                counts[draw.token as usize] += 1;
            }
        }
        counts
    }

    #[test]
    fn frequencies_match_the_distribution_for_each_truncation() {
        let cases = [
            settings(1.0, 0, 1.0),
            settings(0.5, 0, 1.0),
            settings(2.0, 0, 1.0),
            settings(1.0, 3, 1.0),
            settings(1.0, 0, 0.6),
            settings(0.7, 5, 0.8),
            settings(1.0, 1, 1.0),
            settings(1.0, 0, 0.01),
        ];
        for (i, settings) in cases.iter().enumerate() {
            let probs = expected_distribution(&LOGITS, settings);
            let counts = frequencies(*settings, 2000 + i as u64);
            let kept: Vec<usize> = (0..probs.len()).filter(|&t| probs[t] > 0.0).collect();
            if let [only] = kept[..] {
                assert_eq!(counts[only], DRAWS, "{settings:?}: {counts:?}");
                continue;
            }
            let p = chi_square_p_value(&counts, &probs);
            assert!(
                p > 1e-3,
                "{settings:?}: chi-square p = {p}, counts {counts:?}, expected {probs:?}"
            );
        }
    }

    #[test]
    fn the_chi_square_test_rejects_a_wrong_temperature() {
        // Guards the test above: draws at T = 1 must not pass as draws at T = 0.8.
        let counts = frequencies(settings(1.0, 0, 1.0), 7);
        let wrong = expected_distribution(&LOGITS, &settings(0.8, 0, 1.0));
        assert!(chi_square_p_value(&counts, &wrong) < 1e-6);
    }

    #[test]
    fn logprob_is_over_the_full_vocabulary_at_the_temperature() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let rows = Tensor::new(&[LOGITS, LOGITS.map(|l| -l)], &Device::Cpu).unwrap();
        for s in [settings(0.6, 0, 1.0), settings(0.6, 2, 0.5)] {
            for _ in 0..20 {
                let draws = sample_rows(&rows, &s, &mut rng).unwrap();
                for (row, draw) in draws.iter().enumerate() {
                    let sign = if row == 0 { 1.0 } else { -1.0 };
                    let scaled: Vec<f64> = LOGITS.iter().map(|&l| sign * l as f64 / 0.6).collect();
                    let z: f64 = scaled.iter().map(|x| x.exp()).sum();
                    let expected = scaled[draw.token as usize] - z.ln();
                    assert!(
                        (draw.logprob as f64 - expected).abs() < 1e-5,
                        "{draw:?} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum_and_reports_the_temperature_one_logprob() {
        let logits = Tensor::new(&[[0.5f32, 3.0, -1.0, 3.0]], &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let draw = sample_rows(&logits, &settings(0.0, 0, 1.0), &mut rng).unwrap()[0];
        assert_eq!(draw.token, 1);
        let z: f64 = [0.5f64, 3.0, -1.0, 3.0].iter().map(|l| l.exp()).sum();
        assert!((draw.logprob as f64 - (3.0 - z.ln())).abs() < 1e-6);
    }

    #[test]
    fn the_threshold_is_the_kth_largest_value_of_each_row() {
        let values = Tensor::new(
            &[
                [3.0f32, -1.0, 2.5, 2.5, 0.0],
                [-7.0, -0.0, 1e-30, -1e-30, 4.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        for (k, expected) in [(1, [3.0f32, 4.0]), (2, [2.5, 1e-30]), (4, [0.0, -1e-30])] {
            let t = largest_threshold(&values, None, &[k as f32; 2]).unwrap();
            let t: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(t, expected, "k = {k}");
        }
    }

    #[test]
    fn ordered_keys_follow_the_order_of_the_floats() {
        let values = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            2.0,
            f32::INFINITY,
        ];
        for pair in values.windows(2) {
            assert!(ordered(pair[0]) <= ordered(pair[1]), "{pair:?}");
        }
        for v in values {
            assert_eq!(from_ordered(ordered(v)).to_bits(), v.to_bits());
        }
    }
}
