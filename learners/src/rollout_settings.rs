//! `RolloutSettings`: how GRPO's groups are sampled, in the one place both sides read them. The
//! trainer's rollout actors sample with them; the learner takes its log-probs at the same
//! temperature (the importance ratio compares the two) and uses the length limit as Dr. GRPO's
//! constant loss normaliser. The settings live in [`crate::GrpoConfig::rollout`] and the
//! trainer reads them from the learner it is given, so they cannot disagree.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Temperature, group size and length limit of the sampled completions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSettings {
    /// Sampling temperature (> 0); the learner's log-probs are of logits / T, like the sampler's.
    /// Default 1.
    pub temperature: f64,
    /// Completions sampled per prompt (GRPO's G). The report uses 32. Default 4.
    pub group_size: usize,
    /// Most tokens per completion, tool output included; also Dr. GRPO's constant normaliser.
    /// Default 256; `qwen25-math-rl` uses 2,048, the Qwen2.5-Math evaluation's length.
    pub max_new_tokens: usize,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            group_size: 4,
            max_new_tokens: 256,
        }
    }
}

impl RolloutSettings {
    /// Checks the ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: &str| {
            Err(Error::Config {
                field,
                message: message.into(),
            })
        };
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("rollout.temperature", "must be finite and > 0");
        }
        if self.group_size == 0 {
            return bad("rollout.group_size", "must be at least 1");
        }
        if self.max_new_tokens == 0 {
            return bad("rollout.max_new_tokens", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_settings_name_their_field() {
        RolloutSettings::default().validate().unwrap();
        for (settings, field) in [
            (
                RolloutSettings {
                    temperature: 0.0,
                    ..Default::default()
                },
                "rollout.temperature",
            ),
            (
                RolloutSettings {
                    group_size: 0,
                    ..Default::default()
                },
                "rollout.group_size",
            ),
            (
                RolloutSettings {
                    max_new_tokens: 0,
                    ..Default::default()
                },
                "rollout.max_new_tokens",
            ),
        ] {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
