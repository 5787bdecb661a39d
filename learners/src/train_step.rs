//! One optimiser step from several micro-batches: accumulate gradients → check that loss and
//! gradients are finite → clip the global gradient norm → set the scheduled learning rate → step.
//!
//! Micro-batch losses are expected to be pre-scaled (see `StepNormaliser` and `TokenNormaliser`),
//! so the accumulated gradient is their plain sum. A non-finite loss or gradient skips the update
//! entirely: weights, moments and the optimiser's step counter stay as they were, so the schedule
//! does not advance either; the skip is counted.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::optim::Optimizer;
use crate::schedule::LrSchedule;
use crate::{Error, Result};

/// Sums the parameter gradients of an optimiser step's micro-batches (in f32), dropping the
/// gradients of intermediate tensors as soon as each backward pass is done.
#[derive(Debug)]
pub struct GradAccumulator {
    params: Vec<(String, Var)>,
    sums: Vec<Option<Tensor>>,
    loss_sum: f64,
    micro_batches: usize,
    non_finite_losses: usize,
}

impl GradAccumulator {
    /// An empty accumulator for these parameters (e.g. `optimizer.params()`).
    pub fn new(params: &[(String, Var)]) -> Self {
        Self {
            params: params.to_vec(),
            sums: vec![None; params.len()],
            loss_sum: 0.0,
            micro_batches: 0,
            non_finite_losses: 0,
        }
    }

    /// Back-propagates one micro-batch's scalar `loss` and adds its gradients; returns the loss
    /// value. A non-finite loss is only recorded (the step will be skipped), not back-propagated.
    pub fn backward(&mut self, loss: &Tensor) -> Result<f64> {
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            self.record_loss(value);
            return Ok(value);
        }
        let grads = loss.backward()?;
        self.add(value, grads)?;
        Ok(value)
    }

    /// Adds gradients already computed by `loss.backward()`, with that loss's value.
    pub fn add(&mut self, loss_value: f64, mut grads: GradStore) -> Result<()> {
        self.record_loss(loss_value);
        for ((name, var), sum) in self.params.iter().zip(&mut self.sums) {
            let Some(grad) = grads.remove(var.as_tensor()) else {
                continue;
            };
            if grad.dims() != var.dims() {
                return Err(Error::Shape {
                    tensor: format!("gradient of {name}"),
                    expected: var.dims().to_vec(),
                    got: grad.dims().to_vec(),
                });
            }
            let grad = grad.detach().to_dtype(DType::F32)?;
            *sum = Some(match sum.take() {
                Some(s) => (s + grad)?,
                None => grad,
            });
        }
        Ok(())
    }

    fn record_loss(&mut self, value: f64) {
        self.micro_batches += 1;
        self.loss_sum += value;
        self.non_finite_losses += usize::from(!value.is_finite());
    }

    /// Micro-batches added so far.
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// Sum of the micro-batch losses: the step's loss when they are pre-scaled.
    pub fn loss_sum(&self) -> f64 {
        self.loss_sum
    }
}

/// Global L2 norm of the gradients, as if concatenated into one vector (torch's
/// `clip_grad_norm_` with norm_type 2); per-tensor sums of squares are taken in f32 like torch.
pub fn global_grad_norm(grads: &[Tensor]) -> Result<f64> {
    let mut total = 0.0f64;
    for g in grads {
        total += g
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
    }
    Ok(total.sqrt())
}

/// Scales `grads` so that their global norm is at most `max_norm` (torch's rule: multiply by
/// min(1, max_norm / (norm + 1e-6))); returns the norm before clipping. Non-finite norms leave
/// the gradients alone.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_grad_norm(grads)?;
    let coef = max_norm / (norm + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        for g in grads.iter_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

/// Settings of [`TrainStep`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainStepConfig {
    /// The learning-rate schedule, indexed by the optimiser's completed updates.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this; `None` does not clip.
    pub max_grad_norm: Option<f64>,
    /// Consecutive skipped updates (non-finite loss or gradient) after which the run has
    /// diverged: [`TrainStep::check_diverged`] fails, and the recipes write a checkpoint and end
    /// with an error instead of spinning. Default 10; 0 never ends a run.
    pub max_consecutive_skips: u64,
}

impl TrainStepConfig {
    /// Checks the schedule and the clipping bound.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        if let Some(max) = self.max_grad_norm {
            if !(max > 0.0 && max.is_finite()) {
                return Err(Error::Config {
                    field: "max_grad_norm",
                    message: format!("must be finite and > 0, got {max}"),
                });
            }
        }
        Ok(())
    }
}

impl Default for TrainStepConfig {
    fn default() -> Self {
        Self {
            schedule: LrSchedule::default(),
            max_grad_norm: Some(1.0),
            max_consecutive_skips: 10,
        }
    }
}

/// Why an update was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A micro-batch's loss was NaN or infinite.
    NonFiniteLoss,
    /// The accumulated gradient had a NaN or infinite entry (its norm is not finite).
    NonFiniteGradient,
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Sum of the (pre-scaled) micro-batch losses.
    pub loss: f64,
    /// Global gradient norm before clipping; `None` when a non-finite loss skipped the backward.
    pub grad_norm: Option<f64>,
    /// Whether clipping scaled the gradients down.
    pub clipped: bool,
    /// The learning rate used (or that would have been used, when skipped).
    pub lr: f64,
    /// Set when the update was skipped.
    pub skipped: Option<SkipReason>,
    /// Updates skipped so far by this `TrainStep`.
    pub skipped_steps: u64,
    /// Updates skipped in a row up to this one (0 after an applied update).
    pub consecutive_skips: u64,
    /// The optimiser's completed updates after this step.
    pub optimizer_step: u64,
}

/// Turns accumulated micro-batch gradients into one guarded optimiser update.
#[derive(Debug, Clone)]
pub struct TrainStep {
    config: TrainStepConfig,
    skipped_steps: u64,
    consecutive_skips: u64,
}

impl TrainStep {
    /// A step helper with validated settings.
    pub fn new(config: TrainStepConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            skipped_steps: 0,
            consecutive_skips: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TrainStepConfig {
        &self.config
    }

    /// Updates skipped so far.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped_steps
    }

    /// Sets the skip count, when resuming from a checkpoint that recorded it.
    pub fn set_skipped_steps(&mut self, skipped: u64) {
        self.skipped_steps = skipped;
    }

    /// Updates skipped in a row since the last applied one.
    pub fn consecutive_skips(&self) -> u64 {
        self.consecutive_skips
    }

    /// An error once `max_consecutive_skips` updates in a row were skipped: the run has
    /// diverged (NaN weights, a learning rate far too high, broken data) and more steps would
    /// only repeat the skip.
    pub fn check_diverged(&self) -> Result<()> {
        let max = self.config.max_consecutive_skips;
        if max > 0 && self.consecutive_skips >= max {
            return Err(Error::Diverged {
                consecutive: self.consecutive_skips,
                skipped: self.skipped_steps,
            });
        }
        Ok(())
    }

    /// Accumulates `(loss value, gradients)` of each micro-batch, then applies the update.
    pub fn apply_micro_batches<O: Optimizer>(
        &mut self,
        optimizer: &mut O,
        micro_batches: impl IntoIterator<Item = (f64, GradStore)>,
    ) -> Result<StepStats> {
        let mut acc = GradAccumulator::new(optimizer.params());
        for (loss, grads) in micro_batches {
            acc.add(loss, grads)?;
        }
        self.apply(optimizer, acc)
    }

    /// Checks, clips and applies the accumulated gradients.
    pub fn apply<O: Optimizer>(
        &mut self,
        optimizer: &mut O,
        grads: GradAccumulator,
    ) -> Result<StepStats> {
        if grads.micro_batches == 0 {
            return Err(Error::Input(
                "train step: no micro-batch was accumulated".into(),
            ));
        }
        let lr = self.config.schedule.lr_at(optimizer.step_count());
        let mut stats = StepStats {
            loss: grads.loss_sum,
            grad_norm: None,
            clipped: false,
            lr,
            skipped: None,
            skipped_steps: self.skipped_steps,
            consecutive_skips: self.consecutive_skips,
            optimizer_step: optimizer.step_count(),
        };
        if grads.non_finite_losses > 0 {
            return Ok(self.skip(stats, SkipReason::NonFiniteLoss));
        }
        let (vars, mut tensors): (Vec<Var>, Vec<Tensor>) = grads
            .params
            .into_iter()
            .zip(grads.sums)
            .filter_map(|((_, var), g)| g.map(|g| (var, g)))
            .unzip();
        let norm = match self.config.max_grad_norm {
            Some(max) => clip_grad_norm(&mut tensors, max)?,
            None => global_grad_norm(&tensors)?,
        };
        stats.grad_norm = Some(norm);
        if !norm.is_finite() {
            return Ok(self.skip(stats, SkipReason::NonFiniteGradient));
        }
        stats.clipped = self
            .config
            .max_grad_norm
            .is_some_and(|max| max / (norm + 1e-6) < 1.0);
        let mut store = GradStore::default();
        for (var, g) in vars.iter().zip(tensors) {
            store.insert(var.as_tensor(), g);
        }
        optimizer.set_learning_rate(lr);
        optimizer.step(&store)?;
        self.consecutive_skips = 0;
        stats.consecutive_skips = 0;
        stats.optimizer_step = optimizer.step_count();
        Ok(stats)
    }

    fn skip(&mut self, mut stats: StepStats, reason: SkipReason) -> StepStats {
        self.skipped_steps += 1;
        self.consecutive_skips += 1;
        tracing::warn!(
            ?reason,
            step = stats.optimizer_step,
            consecutive = self.consecutive_skips,
            "skipping the optimiser update"
        );
        stats.skipped = Some(reason);
        stats.skipped_steps = self.skipped_steps;
        stats.consecutive_skips = self.consecutive_skips;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn clip_matches_hand_value() {
        // Norm of (3, 4) and (12) is 13; clipped to 6.5 → each gradient halves (up to 1e-6).
        let mut g = vec![
            Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap(),
            Tensor::new(&[12.0f32], &Device::Cpu).unwrap(),
        ];
        let norm = clip_grad_norm(&mut g, 6.5).unwrap();
        assert_eq!(norm, 13.0);
        let coef = 6.5 / (13.0 + 1e-6);
        let a = g[0].to_vec1::<f32>().unwrap();
        assert!((a[0] as f64 - 3.0 * coef).abs() < 1e-6 && (a[1] as f64 - 4.0 * coef).abs() < 1e-6);
        assert!((global_grad_norm(&g).unwrap() - 6.5).abs() < 1e-5);
        // Under the limit: untouched.
        let before = g[1].to_vec1::<f32>().unwrap();
        clip_grad_norm(&mut g, 100.0).unwrap();
        assert_eq!(g[1].to_vec1::<f32>().unwrap(), before);
    }

    #[test]
    fn accumulation_sums_micro_batches() {
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut acc = GradAccumulator::new(&[("w".into(), w.clone())]);
        // d/dw sum(w²)/2 = w; d/dw sum(3w) = 3.
        acc.backward(&((w.as_tensor().sqr().unwrap().sum_all().unwrap()) * 0.5).unwrap())
            .unwrap();
        acc.backward(&(w.as_tensor() * 3.0).unwrap().sum_all().unwrap())
            .unwrap();
        assert_eq!(acc.micro_batches(), 2);
        assert_eq!(acc.loss_sum(), 2.5 + 9.0);
        assert_eq!(
            acc.sums[0].as_ref().unwrap().to_vec1::<f32>().unwrap(),
            vec![4.0, 5.0]
        );
    }

    #[test]
    fn invalid_settings_and_empty_step_are_errors() {
        let cfg = TrainStepConfig {
            max_grad_norm: Some(0.0),
            ..Default::default()
        };
        assert!(TrainStep::new(cfg).is_err());
        let w = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = crate::AdamW::new(vec![("w".into(), w)], Default::default()).unwrap();
        let mut step = TrainStep::new(TrainStepConfig::default()).unwrap();
        assert!(step.apply_micro_batches(&mut opt, Vec::new()).is_err());
    }

    #[test]
    fn consecutive_skips_end_the_run_and_an_applied_update_resets_them() {
        let w = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = crate::AdamW::new(vec![("w".into(), w.clone())], Default::default()).unwrap();
        let mut step = TrainStep::new(TrainStepConfig {
            max_consecutive_skips: 3,
            ..Default::default()
        })
        .unwrap();
        let mut update = |step: &mut TrainStep, loss: f64| {
            let mut acc = GradAccumulator::new(opt.params());
            acc.backward(&(w.as_tensor() * loss).unwrap().sum_all().unwrap())
                .unwrap();
            step.apply(&mut opt, acc).unwrap()
        };
        for i in 1..=2 {
            let stats = update(&mut step, f64::NAN);
            assert_eq!(stats.consecutive_skips, i);
            step.check_diverged().unwrap();
        }
        let applied = update(&mut step, 1.0);
        assert_eq!((applied.skipped, applied.consecutive_skips), (None, 0));
        for _ in 0..2 {
            update(&mut step, f64::INFINITY);
            step.check_diverged().unwrap();
        }
        update(&mut step, f64::NAN);
        let err = step.check_diverged().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Diverged {
                    consecutive: 3,
                    skipped: 5
                }
            ),
            "{err}"
        );
        // 0 turns the bound off.
        step.config.max_consecutive_skips = 0;
        step.check_diverged().unwrap();
    }
}
