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

/// Advantages of a batch of groups, with the groups that carry no learning signal marked.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAdvantages {
    /// One advantage per completion, in the order of the rewards.
    pub advantages: Vec<f32>,
    /// One flag per group: all its rewards are equal, so all its advantages are 0 and it
    /// contributes no policy gradient (DAPO's dynamic sampling drops such groups).
    pub zero_variance: Vec<bool>,
}

impl GroupAdvantages {
    /// How many groups have all rewards equal.
    pub fn num_zero_variance_groups(&self) -> usize {
        self.zero_variance.iter().filter(|&&z| z).count()
    }

    /// Fraction of groups with all rewards equal (0 for an empty batch).
    pub fn zero_variance_fraction(&self) -> f64 {
        if self.zero_variance.is_empty() {
            0.0
        } else {
            self.num_zero_variance_groups() as f64 / self.zero_variance.len() as f64
        }
    }
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

    /// Advantages of `rewards` laid out as consecutive groups of `group_size` completions
    /// (rows `k*G .. (k+1)*G` are group k, as the rollout actors deliver them).
    pub fn batch(self, rewards: &[f32], group_size: usize) -> Result<GroupAdvantages> {
        if rewards.len().checked_rem(group_size) != Some(0) {
            return Err(Error::Input(format!(
                "advantages: {} rewards do not split into groups of {group_size}",
                rewards.len()
            )));
        }
        let mut out = GroupAdvantages {
            advantages: Vec::with_capacity(rewards.len()),
            zero_variance: Vec::with_capacity(rewards.len() / group_size),
        };
        for (k, group) in rewards.chunks(group_size).enumerate() {
            let (adv, zero) = self
                .group(group)
                .map_err(|e| Error::Input(format!("group {k}: {e}")))?;
            out.advantages.extend(adv);
            out.zero_variance.push(zero);
        }
        Ok(out)
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
    fn zero_variance_groups_are_exact_zeros_and_counted() {
        for estimator in [
            AdvantageEstimator::Grpo,
            AdvantageEstimator::DrGrpo,
            AdvantageEstimator::LeaveOneOut,
        ] {
            let out = estimator
                .batch(&[0.1, 0.1, 0.1, 1.0, 0.0, 1.0, 0.0, 0.0, 0.7], 3)
                .unwrap();
            assert_eq!(out.zero_variance, vec![true, false, false]);
            assert_eq!(out.num_zero_variance_groups(), 1);
            assert!((out.zero_variance_fraction() - 1.0 / 3.0).abs() < 1e-12);
            assert_eq!(&out.advantages[..3], &[0.0, 0.0, 0.0]);
            assert!(out.advantages[3..].iter().any(|&a| a != 0.0));
        }
        // A group of one is trivially zero-variance.
        let out = AdvantageEstimator::LeaveOneOut
            .batch(&[3.0, 4.0], 1)
            .unwrap();
        assert_eq!(out.advantages, vec![0.0, 0.0]);
        assert_eq!(out.num_zero_variance_groups(), 2);
    }

    #[test]
    fn groups_are_contiguous_and_independent() {
        let out = AdvantageEstimator::DrGrpo
            .batch(&[1.0, 3.0, 10.0, 20.0], 2)
            .unwrap();
        assert_eq!(out.advantages, vec![-1.0, 1.0, -5.0, 5.0]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(AdvantageEstimator::Grpo.batch(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(AdvantageEstimator::Grpo.batch(&[1.0, 2.0], 0).is_err());
        let err = AdvantageEstimator::Grpo
            .batch(&[1.0, 2.0, f32::NAN, 0.0], 2)
            .unwrap_err();
        assert!(err.to_string().contains("group 1"), "{err}");
    }
}
