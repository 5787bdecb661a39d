//! Learning-rate schedules: linear warm-up, then constant or cosine decay to a floor. The formulas
//! are Hugging Face's (`get_constant_schedule_with_warmup`,
//! `get_cosine_with_min_lr_schedule_with_warmup`), indexed by the number of optimiser updates
//! already applied, so step 0 of a warm-up runs at lr 0 exactly as there.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What happens after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Decay {
    /// Stay at the peak learning rate.
    #[default]
    Constant,
    /// Half-cosine from the peak down to `min_lr_ratio · peak` at `total_steps`, then stay there.
    Cosine {
        /// Optimiser updates of the whole run, warm-up included. In GRPO a step makes
        /// `num_iterations` × (mini-batches per step) updates, so count those, not steps.
        total_steps: u64,
        /// Floor as a fraction of the peak (0 decays to 0).
        min_lr_ratio: f64,
    },
}

/// A learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LrSchedule {
    /// Learning rate at the end of the warm-up.
    pub peak_lr: f64,
    /// Optimiser updates of linear warm-up from 0 to the peak (in GRPO, updates, not steps).
    pub warmup_steps: u64,
    /// What follows the warm-up.
    pub decay: Decay,
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self {
            peak_lr: 1e-6,
            warmup_steps: 0,
            decay: Decay::Constant,
        }
    }
}

impl LrSchedule {
    /// A constant learning rate.
    pub fn constant(lr: f64) -> Self {
        Self {
            peak_lr: lr,
            warmup_steps: 0,
            decay: Decay::Constant,
        }
    }

    /// Checks that the settings are in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: String| Err(Error::Config { field, message });
        if !(self.peak_lr >= 0.0 && self.peak_lr.is_finite()) {
            return bad(
                "peak_lr",
                format!("must be finite and >= 0, got {}", self.peak_lr),
            );
        }
        if let Decay::Cosine {
            total_steps,
            min_lr_ratio,
        } = self.decay
        {
            if !(0.0..=1.0).contains(&min_lr_ratio) {
                return bad(
                    "min_lr_ratio",
                    format!("must be in [0, 1], got {min_lr_ratio}"),
                );
            }
            if total_steps < self.warmup_steps {
                return bad(
                    "total_steps",
                    format!(
                        "{total_steps} is shorter than the warm-up of {} steps",
                        self.warmup_steps
                    ),
                );
            }
        }
        Ok(())
    }

    /// The learning rate of the update that follows `step` completed updates.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step as f64 / self.warmup_steps.max(1) as f64);
        }
        let factor = match self.decay {
            Decay::Constant => 1.0,
            Decay::Cosine {
                total_steps,
                min_lr_ratio,
            } => {
                let span = total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
                // Clamped at the end: beyond total_steps the rate stays at the floor instead of
                // climbing back up the cosine.
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                cosine * (1.0 - min_lr_ratio) + min_lr_ratio
            }
        };
        self.peak_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_constant() {
        let s = LrSchedule {
            peak_lr: 1.0,
            warmup_steps: 4,
            decay: Decay::Constant,
        };
        let lrs: Vec<f64> = (0..6).map(|k| s.lr_at(k)).collect();
        assert_eq!(lrs, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
        assert_eq!(LrSchedule::constant(0.3).lr_at(0), 0.3);
    }

    #[test]
    fn cosine_reaches_the_floor_and_stays() {
        let s = LrSchedule {
            peak_lr: 2.0,
            warmup_steps: 2,
            decay: Decay::Cosine {
                total_steps: 6,
                min_lr_ratio: 0.1,
            },
        };
        assert_eq!(s.lr_at(1), 1.0);
        assert_eq!(s.lr_at(2), 2.0);
        // Half-way through the decay: cosine factor 0.5 → 0.5·0.9 + 0.1 = 0.55.
        assert!((s.lr_at(4) - 1.1).abs() < 1e-12);
        assert!((s.lr_at(6) - 0.2).abs() < 1e-12);
        assert!((s.lr_at(100) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn invalid_settings_are_errors() {
        let s = LrSchedule {
            peak_lr: 1.0,
            warmup_steps: 5,
            decay: Decay::Cosine {
                total_steps: 3,
                min_lr_ratio: 0.0,
            },
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("total_steps"));
        let s = LrSchedule {
            decay: Decay::Cosine {
                total_steps: 3,
                min_lr_ratio: 1.5,
            },
            ..Default::default()
        };
        assert!(s.validate().is_err());
        assert!(LrSchedule::constant(f64::NAN).validate().is_err());
    }

    #[test]
    fn deserialises_from_config_json() {
        let s: LrSchedule = serde_json::from_str(
            r#"{"peak_lr": 1e-6, "warmup_steps": 10,
                "decay": {"kind": "cosine", "total_steps": 100, "min_lr_ratio": 0.1}}"#,
        )
        .unwrap();
        assert_eq!(
            s.decay,
            Decay::Cosine {
                total_steps: 100,
                min_lr_ratio: 0.1
            }
        );
    }
}
