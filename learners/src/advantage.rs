//! Group-relative advantages: each completion is scored against the other completions of its
//! prompt, so no value network is needed (GRPO, Dr. GRPO, RLOO).
//!
//! Conventions follow TRL's `GRPOTrainer` (`scale_rewards="group"`): the standard deviation is
//! the sample one (Bessel's correction, divide by G−1) and ε = 1e-4 is added to it, not to the
//! variance. Sums are taken in f64.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Added to the group's standard deviation before dividing (TRL's constant).
pub const STD_EPSILON: f64 = 1e-4;

/// How the advantages of one group of completions are computed from their rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageEstimator {
    /// A_i = (r_i − mean) / (std + ε), std with Bessel's correction (GRPO, TRL's default).
    #[default]
    Grpo,
    /// A_i = r_i − mean, no std scaling (Dr. GRPO; TRL's `scale_rewards="none"`): the std
    /// division over-weights groups that are nearly all right or all wrong.
    DrGrpo,
    /// A_i = r_i − mean of the other G−1 rewards (RLOO): an unbiased baseline, no std scaling.
    LeaveOneOut,
}

impl AdvantageEstimator {
    /// Advantages of one group's rewards, and whether all rewards are equal. A group whose rewards
    /// are all equal (a group of one included) gets exactly 0 everywhere, whatever the estimator.
    pub fn group(self, rewards: &[f32]) -> Result<(Vec<f32>, bool)> {
        if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
            return Err(Error::Input(format!(
                "advantages: reward {i} of the group is {} (rewards must be finite)",
                rewards[i]
            )));
        }
        let zero_variance = rewards.windows(2).all(|w| w[0] == w[1]);
        if zero_variance {
            return Ok((vec![0.0; rewards.len()], true));
        }
        let g = rewards.len() as f64;
        let sum: f64 = rewards.iter().map(|&r| r as f64).sum();
        let mean = sum / g;
        let advantages = match self {
            AdvantageEstimator::Grpo => {
                let var = rewards
                    .iter()
                    .map(|&r| (r as f64 - mean).powi(2))
                    .sum::<f64>()
                    / (g - 1.0);
                let scale = var.sqrt() + STD_EPSILON;
                rewards
                    .iter()
                    .map(|&r| ((r as f64 - mean) / scale) as f32)
                    .collect()
            }
            AdvantageEstimator::DrGrpo => {
                rewards.iter().map(|&r| (r as f64 - mean) as f32).collect()
            }
            AdvantageEstimator::LeaveOneOut => rewards
                .iter()
                .map(|&r| (r as f64 - (sum - r as f64) / (g - 1.0)) as f32)
                .collect(),
        };
        Ok((advantages, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn grpo_uses_sample_std_and_epsilon_on_std() {
        // rewards 0, 1, 1, 2: mean 1, sample variance (1+0+0+1)/3, std sqrt(2/3).
        let (adv, zero) = AdvantageEstimator::Grpo
            .group(&[0.0, 1.0, 1.0, 2.0])
            .unwrap();
        let s = (2.0f64 / 3.0).sqrt() + 1e-4;
        close(&adv, &[-1.0 / s, 0.0, 0.0, 1.0 / s]);
        assert!(!zero);
    }

    #[test]
    fn dr_grpo_only_centres() {
        let (adv, _) = AdvantageEstimator::DrGrpo
            .group(&[1.0, 0.0, 0.5, 2.0])
            .unwrap();
        close(&adv, &[0.125, -0.875, -0.375, 1.125]);
    }

    #[test]
    fn leave_one_out_uses_mean_of_the_others() {
        // r = 1, 0, 0.5, 2: baselines (0+0.5+2)/3, (1+0.5+2)/3, (1+0+2)/3, (1+0+0.5)/3.
        let (adv, _) = AdvantageEstimator::LeaveOneOut
            .group(&[1.0, 0.0, 0.5, 2.0])
            .unwrap();
        close(&adv, &[1.0 - 2.5 / 3.0, -3.5 / 3.0, 0.5 - 1.0, 2.0 - 0.5]);
        // Equals G/(G-1) times the centred reward.
        let (centred, _) = AdvantageEstimator::DrGrpo
            .group(&[1.0, 0.0, 0.5, 2.0])
            .unwrap();
        for (a, c) in adv.iter().zip(&centred) {
            assert!((a - c * 4.0 / 3.0).abs() < 1e-6);
        }
    }

    #[test]
    fn zero_variance_groups_are_exact_zeros_and_flagged() {
        for estimator in [
            AdvantageEstimator::Grpo,
            AdvantageEstimator::DrGrpo,
            AdvantageEstimator::LeaveOneOut,
        ] {
            let (adv, zero) = estimator.group(&[0.1, 0.1, 0.1]).unwrap();
            assert_eq!((adv, zero), (vec![0.0, 0.0, 0.0], true));
            let (adv, zero) = estimator.group(&[1.0, 0.0, 1.0]).unwrap();
            assert!(!zero && adv.iter().any(|&a| a != 0.0));
        }
        // A group of one is trivially zero-variance.
        let (adv, zero) = AdvantageEstimator::LeaveOneOut.group(&[3.0]).unwrap();
        assert_eq!((adv, zero), (vec![0.0], true));
    }

    #[test]
    fn non_finite_rewards_are_errors() {
        let err = AdvantageEstimator::Grpo
            .group(&[1.0, f32::NAN, 0.0])
            .unwrap_err();
        assert!(err.to_string().contains("reward 1"), "{err}");
    }
}
