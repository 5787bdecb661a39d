//! The GRPO policy loss: a PPO-style clipped surrogate on per-token importance ratios, plus an
//! optional k3 KL penalty towards a reference policy, aggregated over the completion tokens in one
//! of the ways TRL offers. Matches TRL 1.16's `GRPOTrainer._compute_loss` (token-level importance
//! sampling); parity is tested on `tests/fixtures/grpo-loss/`.
//!
//! Per token t of completion i, with ρ = exp(logp − logp_old):
//! L = −min(ρ·A_i, clip(ρ, 1−ε_low, 1+ε_high)·A_i) + β·(exp(ref − logp) − (ref − logp) − 1).

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::expect_shape;
use crate::{Error, Result};

/// How the masked per-token losses of a micro-batch become one scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAggregation {
    /// Mean over each completion's tokens, then mean over the update's completions (the GRPO
    /// paper and the Qwen2.5-Math report; `qwen25-math-rl`'s default with `--model`); long
    /// completions get less weight per token.
    Grpo,
    /// Token mean over the micro-batch, divided by the step's micro-batches (TRL's `bnpo`): the
    /// only aggregation whose result depends on how the step is split into micro-batches.
    Bnpo,
    /// Token sum divided by the active tokens of the whole optimiser update (all its
    /// micro-batches), so every token weighs the same however the update is split (DAPO; TRL's
    /// default, and the embedded `qwen25-math-rl`'s).
    #[default]
    Dapo,
    /// Token sum divided by the update's rows × `max_completion_length`, a constant (Dr. GRPO):
    /// no length bias.
    DrGrpo,
}

/// Settings of the GRPO loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoLossConfig {
    /// Lower clip range: ρ is clipped at 1 − epsilon_low.
    pub epsilon_low: f64,
    /// Upper clip range: ρ is clipped at 1 + epsilon_high (DAPO's clip-higher uses 0.28).
    pub epsilon_high: f64,
    /// Weight of the k3 KL penalty towards the reference policy; 0 needs no reference model.
    pub beta: f64,
    /// How per-token losses are aggregated: `grpo`, `bnpo`, `dapo` (default) or `dr_grpo`.
    pub aggregation: LossAggregation,
    /// The generation limit of completions; Dr. GRPO's constant normaliser (not the padded width).
    /// Not a config key: the GRPO learner sets it from `rollout.max_new_tokens`
    /// ([`crate::GrpoConfig::effective_loss`]).
    #[serde(skip)]
    pub max_completion_length: usize,
}

impl Default for GrpoLossConfig {
    fn default() -> Self {
        Self {
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            beta: 0.0,
            aggregation: LossAggregation::default(),
            max_completion_length: 1024,
        }
    }
}

impl GrpoLossConfig {
    /// Checks that the settings are in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: &str| {
            Err(Error::Config {
                field,
                message: message.to_string(),
            })
        };
        if !(self.epsilon_low >= 0.0 && self.epsilon_low < 1.0) {
            return bad("epsilon_low", "must be in [0, 1)");
        }
        if !(self.epsilon_high >= 0.0 && self.epsilon_high.is_finite()) {
            return bad("epsilon_high", "must be finite and >= 0");
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad("beta", "must be finite and >= 0");
        }
        if self.aggregation == LossAggregation::DrGrpo && self.max_completion_length == 0 {
            return bad(
                "max_completion_length",
                "must be > 0 for dr_grpo aggregation",
            );
        }
        Ok(())
    }
}

/// How one micro-batch's loss is scaled so that the micro-batch gradients of one optimiser step
/// can simply be summed. The denominators are the step's totals, so the summed loss is the one
/// of the whole step as one batch however it is split (micro-batches of any sizes), except for
/// bnpo, which is defined per micro-batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepNormaliser {
    /// Micro-batches summed into one optimiser step; bnpo losses are divided by it.
    pub accumulation_steps: usize,
    /// Completions (rows) over all micro-batches of the step (grpo's and dr_grpo's denominator).
    pub step_rows: usize,
    /// Active completion tokens over all micro-batches of the step (dapo's denominator).
    pub step_active_tokens: f64,
}

impl StepNormaliser {
    /// For an optimiser step made of the micro-batches with these completion masks `[rows, T]`.
    pub fn from_masks(masks: &[&Tensor]) -> Result<Self> {
        let mut tokens = 0.0;
        let mut rows = 0;
        for mask in masks {
            rows += mask.dim(0)?;
            tokens += mask
                .ne(0u32)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()? as f64;
        }
        Ok(Self {
            accumulation_steps: masks.len().max(1),
            step_rows: rows,
            step_active_tokens: tokens,
        })
    }
}

/// Inputs of the loss for one micro-batch of N completions padded to T tokens.
#[derive(Debug, Clone, Copy)]
pub struct PolicyLossInputs<'a> {
    /// Current policy's log-probs of the completion tokens `[N, T]` (differentiable).
    pub logprobs: &'a Tensor,
    /// Behaviour policy's log-probs `[N, T]`; `None` means on-policy (old = current, detached:
    /// ρ = 1 in value, ∂ρ/∂logp = 1).
    pub old_logprobs: Option<&'a Tensor>,
    /// Reference policy's log-probs `[N, T]`; needed only when β > 0.
    pub ref_logprobs: Option<&'a Tensor>,
    /// One advantage per completion `[N]`.
    pub advantages: &'a Tensor,
    /// 1 on tokens that are trained on `[N, T]` (padding and tool-output tokens are 0); any dtype.
    pub completion_mask: &'a Tensor,
}

/// Values for logging, computed without gradient over the micro-batch's active tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PolicyLossMetrics {
    /// The clipped-surrogate part of the loss, aggregated and scaled like the loss.
    pub pg_loss: f64,
    /// Token mean of the k3 KL estimate, when reference log-probs were given.
    pub kl_mean: Option<f64>,
    /// Fraction of active tokens where the lower clip binds (ρ < 1−ε_low and A < 0).
    pub clip_fraction_low: f64,
    /// Fraction of active tokens where the upper clip binds (ρ > 1+ε_high and A > 0).
    pub clip_fraction_high: f64,
    /// Mean of ρ over active tokens.
    pub ratio_mean: f64,
    /// Largest ρ over active tokens.
    pub ratio_max: f64,
    /// Number of active tokens in the micro-batch.
    pub active_tokens: usize,
}

/// The loss of one micro-batch and its metrics.
#[derive(Debug, Clone)]
pub struct PolicyLoss {
    /// Scalar loss (f32), differentiable with respect to `logprobs`.
    pub loss: Tensor,
    /// Metrics for logging.
    pub metrics: PolicyLossMetrics,
}

/// The GRPO loss of one micro-batch; summing the gradients of a step's micro-batches, each
/// scaled by `normaliser`, gives the step's gradient.
pub fn grpo_loss(
    config: &GrpoLossConfig,
    inputs: &PolicyLossInputs,
    normaliser: &StepNormaliser,
) -> Result<PolicyLoss> {
    config.validate()?;
    let logprobs = inputs.logprobs.to_dtype(DType::F32)?;
    let (n, t) = logprobs.dims2().map_err(|_| Error::Shape {
        tensor: "logprobs".into(),
        expected: vec![0, 0],
        got: logprobs.dims().to_vec(),
    })?;
    if n == 0 || t == 0 {
        return Err(Error::Input(format!(
            "grpo_loss: empty micro-batch (logprobs of shape [{n}, {t}])"
        )));
    }
    expect_shape(inputs.completion_mask, "completion_mask", &[n, t])?;
    expect_shape(inputs.advantages, "advantages", &[n])?;
    let active = inputs.completion_mask.ne(0u32)?;
    let mask = active.to_dtype(DType::F32)?;
    let zeros = logprobs.zeros_like()?;

    // Differences are masked before exp so that junk at padded positions can neither overflow
    // nor send NaN gradients back through a 0 · inf product.
    let old = match inputs.old_logprobs {
        Some(old) => {
            expect_shape(old, "old_logprobs", &[n, t])?;
            old.to_dtype(DType::F32)?.detach()
        }
        None => logprobs.detach(),
    };
    let ratio = active.where_cond(&(&logprobs - &old)?, &zeros)?.exp()?;
    let advantages = inputs
        .advantages
        .to_dtype(DType::F32)?
        .detach()
        .reshape((n, 1))?
        .broadcast_as((n, t))?;
    let unclipped = (&ratio * &advantages)?;
    let ratio_value = ratio.detach();
    let clipped =
        (ratio_value.clamp(1.0 - config.epsilon_low, 1.0 + config.epsilon_high)? * &advantages)?;
    // The clipped branch wins only where it is strictly smaller; its gradient is then 0 (ρ lies
    // outside the clip range). At ties torch's min/clamp gradients add up to the unclipped one.
    let clip_binds = clipped.lt(&unclipped.detach())?;
    let surrogate_loss = clip_binds.where_cond(&clipped, &unclipped)?.neg()?;

    let kl = match inputs.ref_logprobs {
        Some(reference) => {
            expect_shape(reference, "ref_logprobs", &[n, t])?;
            let d = active.where_cond(
                &(reference.to_dtype(DType::F32)?.detach() - &logprobs)?,
                &zeros,
            )?;
            Some(((d.exp()? - &d)? - 1.0)?)
        }
        None if config.beta > 0.0 => {
            return Err(Error::Input(format!(
                "grpo_loss: beta = {} needs ref_logprobs",
                config.beta
            )));
        }
        None => None,
    };
    let per_token = match (&kl, config.beta > 0.0) {
        (Some(kl), true) => (&surrogate_loss + (kl * config.beta)?)?,
        _ => surrogate_loss.clone(),
    };
    let loss = aggregate(config, &per_token, &mask, normaliser)?;

    let active_tokens = mask.sum_all()?.to_scalar::<f32>()? as f64;
    let token_mean = |x: &Tensor| -> Result<f64> {
        Ok((x.detach() * &mask)?.sum_all()?.to_scalar::<f32>()? as f64 / active_tokens.max(1.0))
    };
    let positive = advantages.gt(0.0)?.to_dtype(DType::F32)?;
    let negative = advantages.lt(0.0)?.to_dtype(DType::F32)?;
    let low = (ratio_value
        .lt(1.0 - config.epsilon_low)?
        .to_dtype(DType::F32)?
        * negative)?;
    let high = (ratio_value
        .gt(1.0 + config.epsilon_high)?
        .to_dtype(DType::F32)?
        * positive)?;
    let metrics = PolicyLossMetrics {
        pg_loss: aggregate(config, &surrogate_loss.detach(), &mask, normaliser)?
            .to_scalar::<f32>()? as f64,
        kl_mean: kl.as_ref().map(&token_mean).transpose()?,
        clip_fraction_low: token_mean(&low)?,
        clip_fraction_high: token_mean(&high)?,
        ratio_mean: token_mean(&ratio_value)?,
        // ρ > 0 everywhere, so zeroing inactive tokens leaves the max over active ones.
        ratio_max: (&ratio_value * &mask)?
            .max_keepdim(1)?
            .max(0)?
            .squeeze(0)?
            .to_scalar::<f32>()? as f64,
        active_tokens: active_tokens as usize,
    };
    Ok(PolicyLoss { loss, metrics })
}

/// Masked aggregation of per-token losses `[N, T]` into the micro-batch's scalar share.
fn aggregate(
    config: &GrpoLossConfig,
    per_token: &Tensor,
    mask: &Tensor,
    norm: &StepNormaliser,
) -> Result<Tensor> {
    let step_rows = norm.step_rows.max(1) as f64;
    let masked = (per_token * mask)?;
    let loss = match config.aggregation {
        LossAggregation::Grpo => {
            let lengths = mask.sum(D::Minus1)?.clamp(1.0, f64::INFINITY)?;
            let per_row = (masked.sum(D::Minus1)? / lengths)?;
            (per_row.sum_all()? / step_rows)?
        }
        LossAggregation::Bnpo => {
            let tokens = mask.sum_all()?.clamp(1.0, f64::INFINITY)?;
            let steps = norm.accumulation_steps.max(1) as f64;
            (masked.sum_all()?.div(&tokens)? / steps)?
        }
        LossAggregation::Dapo => (masked.sum_all()? / norm.step_active_tokens.max(1.0))?,
        LossAggregation::DrGrpo => {
            (masked.sum_all()? / (step_rows * config.max_completion_length as f64))?
        }
    };
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t2(rows: &[&[f32]]) -> Tensor {
        let n = rows.len();
        let t = rows[0].len();
        Tensor::from_vec(rows.concat(), (n, t), &Device::Cpu).unwrap()
    }

    #[test]
    fn clipping_zeroes_the_gradient_and_is_reported() {
        // Token 0: ρ = e^0.5 > 1.2 with A > 0 → upper clip binds, gradient 0.
        // Token 1: ρ = e^-0.5 < 0.8 with A > 0 → unclipped branch, gradient −A·ρ.
        let logp = Var::from_tensor(&t2(&[&[-0.5, -1.5]])).unwrap();
        let old = t2(&[&[-1.0, -1.0]]);
        let adv = Tensor::new(&[2.0f32], &Device::Cpu).unwrap();
        let mask = t2(&[&[1.0, 1.0]]);
        let cfg = GrpoLossConfig {
            aggregation: LossAggregation::Bnpo,
            ..Default::default()
        };
        let inputs = PolicyLossInputs {
            logprobs: logp.as_tensor(),
            old_logprobs: Some(&old),
            ref_logprobs: None,
            advantages: &adv,
            completion_mask: &mask,
        };
        let out = grpo_loss(
            &cfg,
            &inputs,
            &StepNormaliser::from_masks(&[&mask]).unwrap(),
        )
        .unwrap();
        let r1 = (-0.5f64).exp();
        let expected = -(1.2 * 2.0 + r1 * 2.0) / 2.0;
        assert!((out.loss.to_scalar::<f32>().unwrap() as f64 - expected).abs() < 1e-6);
        let grad = out
            .loss
            .backward()
            .unwrap()
            .get(logp.as_tensor())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(grad[0][0], 0.0);
        assert!((grad[0][1] as f64 + 2.0 * r1 / 2.0).abs() < 1e-6);
        assert_eq!(out.metrics.clip_fraction_high, 0.5);
        assert_eq!(out.metrics.clip_fraction_low, 0.0);
        assert!((out.metrics.ratio_max - 0.5f64.exp()).abs() < 1e-6);
        assert_eq!(out.metrics.active_tokens, 2);
        assert!(out.metrics.kl_mean.is_none());
    }

    #[test]
    fn masked_junk_does_not_leak() {
        // A padded position with absurd values must change neither loss nor gradient.
        let logp = Var::from_tensor(&t2(&[&[-1.0, 0.0]])).unwrap();
        let old = t2(&[&[-1.1, -1e30]]);
        let reference = t2(&[&[-0.9, 1e30]]);
        let adv = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u8, 0]], &Device::Cpu).unwrap();
        let cfg = GrpoLossConfig {
            beta: 0.1,
            ..Default::default()
        };
        let inputs = PolicyLossInputs {
            logprobs: logp.as_tensor(),
            old_logprobs: Some(&old),
            ref_logprobs: Some(&reference),
            advantages: &adv,
            completion_mask: &mask,
        };
        let out = grpo_loss(
            &cfg,
            &inputs,
            &StepNormaliser::from_masks(&[&mask]).unwrap(),
        )
        .unwrap();
        let rho = 0.1f64.exp();
        let d = 0.1f64;
        let expected = -rho + 0.1 * (d.exp() - d - 1.0);
        assert!((out.loss.to_scalar::<f32>().unwrap() as f64 - expected).abs() < 1e-6);
        let grad = out
            .loss
            .backward()
            .unwrap()
            .get(logp.as_tensor())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!(grad[0][0].is_finite());
        assert_eq!(grad[0][1], 0.0);
        assert!((out.metrics.ratio_max - rho).abs() < 1e-6);
    }

    #[test]
    fn beta_without_reference_is_an_error_and_zero_beta_needs_none() {
        let logp = t2(&[&[-1.0]]);
        let adv = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        let mask = t2(&[&[1.0]]);
        let inputs = PolicyLossInputs {
            logprobs: &logp,
            old_logprobs: None,
            ref_logprobs: None,
            advantages: &adv,
            completion_mask: &mask,
        };
        let norm = StepNormaliser::from_masks(&[&mask]).unwrap();
        let cfg = GrpoLossConfig {
            beta: 0.04,
            ..Default::default()
        };
        assert!(grpo_loss(&cfg, &inputs, &norm)
            .unwrap_err()
            .to_string()
            .contains("ref_logprobs"));
        let out = grpo_loss(&GrpoLossConfig::default(), &inputs, &norm).unwrap();
        assert_eq!(out.metrics.ratio_mean, 1.0);
    }

    #[test]
    fn shape_mismatch_names_the_tensor() {
        let logp = t2(&[&[-1.0, -2.0]]);
        let adv = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mask = t2(&[&[1.0, 1.0]]);
        let inputs = PolicyLossInputs {
            logprobs: &logp,
            old_logprobs: None,
            ref_logprobs: None,
            advantages: &adv,
            completion_mask: &mask,
        };
        let norm = StepNormaliser::from_masks(&[&mask]).unwrap();
        let err = grpo_loss(&GrpoLossConfig::default(), &inputs, &norm)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("advantages") && err.contains("[1]") && err.contains("[2]"),
            "{err}"
        );
    }

    #[test]
    fn micro_batches_of_any_sizes_sum_to_the_whole_batch_loss() {
        // Splitting a batch into micro-batches with the step normaliser gives the same total.
        let logp = t2(&[
            &[-1.0, -2.0, -0.5],
            &[-0.3, -0.2, -0.1],
            &[-2.0, -1.0, -1.5],
        ]);
        let old = t2(&[
            &[-1.1, -1.9, -0.4],
            &[-0.3, -0.25, -0.2],
            &[-2.1, -1.0, -1.4],
        ]);
        let adv = Tensor::new(&[0.5f32, -1.0, 0.7], &Device::Cpu).unwrap();
        let mask = t2(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 1.0], &[1.0, 0.0, 0.0]]);
        for aggregation in [
            LossAggregation::Dapo,
            LossAggregation::Grpo,
            LossAggregation::DrGrpo,
        ] {
            let cfg = GrpoLossConfig {
                aggregation,
                max_completion_length: 4,
                ..Default::default()
            };
            let loss_of = |rows: std::ops::Range<usize>, norm: &StepNormaliser| {
                let len = rows.len();
                let (l, o, a, m) = (
                    logp.narrow(0, rows.start, len).unwrap(),
                    old.narrow(0, rows.start, len).unwrap(),
                    adv.narrow(0, rows.start, len).unwrap(),
                    mask.narrow(0, rows.start, len).unwrap(),
                );
                let inputs = PolicyLossInputs {
                    logprobs: &l,
                    old_logprobs: Some(&o),
                    ref_logprobs: None,
                    advantages: &a,
                    completion_mask: &m,
                };
                grpo_loss(&cfg, &inputs, norm)
                    .unwrap()
                    .loss
                    .to_scalar::<f32>()
                    .unwrap()
            };
            let whole = loss_of(0..3, &StepNormaliser::from_masks(&[&mask]).unwrap());
            // Splits of equal and of unequal sizes: the step's totals normalise every part.
            for split in [vec![0..1, 1..2, 2..3], vec![0..1, 1..3], vec![0..2, 2..3]] {
                let parts: Vec<Tensor> = split
                    .iter()
                    .map(|r| mask.narrow(0, r.start, r.len()).unwrap())
                    .collect();
                let norm = StepNormaliser::from_masks(&parts.iter().collect::<Vec<_>>()).unwrap();
                let total: f32 = split.iter().map(|r| loss_of(r.clone(), &norm)).sum();
                assert!(
                    (whole - total).abs() < 1e-6,
                    "{aggregation:?} split {split:?}: {whole} vs {total}"
                );
            }
        }
    }
}
