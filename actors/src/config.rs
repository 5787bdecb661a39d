//! `TrainerConfig`: the pools, the schedule and the fault policy of a run, with documented
//! defaults.

use std::time::Duration;

use mathrl::generation::{EngineConfig, SamplingParams};
use mathrl_learners::RolloutSettings;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How far rollouts may run ahead of the learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum SyncMode {
    /// Groups of step s are sampled by the weights after step s − 1 (lag 0).
    OnPolicy,
    /// Groups of step s may be sampled by any version from s − 1 − `max_policy_lag` on, so
    /// rollouts of the next steps overlap the learner's update; older groups are dropped,
    /// counted and re-generated.
    Async {
        /// Most versions a group may lag behind the learner.
        max_policy_lag: u64,
    },
}

impl SyncMode {
    /// The largest allowed lag (0 on-policy).
    pub fn max_policy_lag(self) -> u64 {
        match self {
            SyncMode::OnPolicy => 0,
            SyncMode::Async { max_policy_lag } => max_policy_lag,
        }
    }
}

/// Settings of a [`crate::Trainer`] run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// Rollout actors (each holds a policy copy and an engine). Default 2. May be 0 when
    /// remote workers ([`crate::cluster`]) do every rollout.
    pub rollout_actors: usize,
    /// Reward actors. Default 2. May be 0 when remote workers do the scoring.
    pub reward_actors: usize,
    /// Prompts (groups) per learner step. Default 8.
    pub prompts_per_step: usize,
    /// Completions per prompt, as the run uses it: [`crate::Trainer::new`] sets it to the
    /// learner's `rollout.group_size`, their one source (not a config key; a value set here is
    /// replaced).
    #[serde(skip)]
    pub group_size: usize,
    /// Sampling settings other than the rollout settings: top-p, top-k, stop tokens and strings,
    /// tool calls. [`crate::Trainer::new`] sets `temperature` and `max_new_tokens` from the
    /// learner's `rollout` (they are not keys here), the coordinator sets `n` to the group size
    /// and the seed to one derived from `seed`, the step and the prompt's place in the step, so a
    /// re-issued prompt samples the same group.
    #[serde(with = "sampling_options")]
    pub sampling: SamplingParams,
    /// Generation engine limits of each rollout actor.
    pub engine: EngineConfig,
    /// On-policy or asynchronous with a bounded lag. Default on-policy.
    pub sync: SyncMode,
    /// Longest a reward actor may take for one batch before it is killed, restarted and its
    /// batch re-issued. Default 60 s.
    #[serde(with = "duration_ms")]
    pub message_deadline: Duration,
    /// Longest a rollout actor may take for one group. Default 600 s.
    #[serde(with = "duration_ms")]
    pub rollout_deadline: Duration,
    /// Failed attempts of one completion's scoring (or one prompt's generation) before it is
    /// given up: a completion is then scored 0 with the reason recorded; a prompt ends the run
    /// with an error. Default 3.
    pub max_attempts: usize,
    /// Checkpoint every this many steps (0 = only at the end and on a stop request); needs a
    /// checkpoint directory. Default 0.
    pub checkpoint_every: u64,
    /// Checkpoints kept (0 = all). Default 2.
    pub keep_checkpoints: usize,
    /// Total learner steps of the run (a resumed run counts the steps already done). Default 10.
    pub max_steps: u64,
    /// Seed of the prompt shuffle and of the sampling seeds. Default 0.
    pub seed: u64,
    /// Compute threads of each rollout actor. Default 1.
    pub threads_per_rollout_actor: usize,
    /// Start no new step after this many seconds of training (0 = no bound); the step in
    /// flight is finished and checkpointed, as after a stop request. Default 0.
    pub max_train_seconds: f64,
    /// Every this many steps, a few sampled completions with their rewards go to the metrics
    /// sink as text under `samples/completions` (0 = never). Default 10.
    pub sample_text_every: u64,
    /// Completions in that text (the first of each group, in prompt order). Default 4.
    pub sample_text_completions: usize,
    /// Install SIGINT / SIGTERM handlers: the first signal finishes the current step and writes a
    /// checkpoint, the second exits the process at once. Default true.
    pub handle_signals: bool,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            rollout_actors: 2,
            reward_actors: 2,
            prompts_per_step: 8,
            group_size: RolloutSettings::default().group_size,
            sampling: SamplingParams::default(),
            engine: EngineConfig::default(),
            sync: SyncMode::OnPolicy,
            message_deadline: Duration::from_secs(60),
            rollout_deadline: Duration::from_secs(600),
            max_attempts: 3,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            max_steps: 10,
            seed: 0,
            threads_per_rollout_actor: 1,
            max_train_seconds: 0.0,
            sample_text_every: 10,
            sample_text_completions: 4,
            handle_signals: true,
        }
    }
}

impl TrainerConfig {
    /// Takes the rollout settings (temperature, group size, length limit) from the learner's
    /// `rollout`, their one source.
    pub(crate) fn use_rollout(&mut self, rollout: &RolloutSettings) {
        self.group_size = rollout.group_size;
        self.sampling.temperature = rollout.temperature;
        self.sampling.max_new_tokens = rollout.max_new_tokens;
    }

    /// Checks the ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("rollout_actors", self.rollout_actors),
            ("reward_actors", self.reward_actors),
        ] {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    message: "must be at least 1 (0 only when remote workers fill the pool)".into(),
                });
            }
        }
        self.validate_with_remote_workers()
    }

    /// Like [`TrainerConfig::validate`], but the local pools may be empty: remote workers
    /// ([`crate::cluster`]) fill them.
    pub fn validate_with_remote_workers(&self) -> Result<()> {
        let bad = |field, message: &str| {
            Err(Error::Config {
                field,
                message: message.into(),
            })
        };
        for (field, value) in [
            ("prompts_per_step", self.prompts_per_step),
            ("max_attempts", self.max_attempts),
            ("threads_per_rollout_actor", self.threads_per_rollout_actor),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1");
            }
        }
        if self.message_deadline.is_zero() {
            return bad("message_deadline", "must be positive");
        }
        if self.rollout_deadline.is_zero() {
            return bad("rollout_deadline", "must be positive");
        }
        if !(self.max_train_seconds.is_finite() && self.max_train_seconds >= 0.0) {
            return bad(
                "max_train_seconds",
                "must be a finite number ≥ 0 (0 = no bound)",
            );
        }
        self.sampling.validate().map_err(|e| Error::Config {
            field: "sampling",
            message: e.to_string(),
        })
    }
}

/// `sampling` in config files: the fields of [`SamplingParams`] that are not rollout settings
/// (`grpo.rollout`) or set per group by the coordinator (`n`, `seed`).
mod sampling_options {
    use mathrl::generation::SamplingParams;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The keys of `trainer.sampling`.
    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct SamplingOptions {
        top_p: f64,
        top_k: usize,
        stop_token_ids: Option<Vec<u32>>,
        stop_strings: Vec<String>,
        max_tool_calls: usize,
    }

    impl Default for SamplingOptions {
        fn default() -> Self {
            let p = SamplingParams::default();
            Self {
                top_p: p.top_p,
                top_k: p.top_k,
                stop_token_ids: p.stop_token_ids,
                stop_strings: p.stop_strings,
                max_tool_calls: p.max_tool_calls,
            }
        }
    }

    pub fn serialize<S: Serializer>(p: &SamplingParams, s: S) -> Result<S::Ok, S::Error> {
        SamplingOptions {
            top_p: p.top_p,
            top_k: p.top_k,
            stop_token_ids: p.stop_token_ids.clone(),
            stop_strings: p.stop_strings.clone(),
            max_tool_calls: p.max_tool_calls,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SamplingParams, D::Error> {
        let o = SamplingOptions::deserialize(d)?;
        Ok(SamplingParams {
            top_p: o.top_p,
            top_k: o.top_k,
            stop_token_ids: o.stop_token_ids,
            stop_strings: o.stop_strings,
            max_tool_calls: o.max_tool_calls,
            ..SamplingParams::default()
        })
    }
}

/// Durations as integer milliseconds in config files (`message_deadline = 60000`).
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_with_millisecond_deadlines() {
        let c = TrainerConfig::default();
        c.validate().unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["message_deadline"], 60_000);
        assert_eq!(json["sync"]["mode"], "on_policy");
        let back: TrainerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        // The rollout settings are the learner's: not keys here.
        for moved in [
            r#"{"group_size": 3}"#,
            r#"{"sampling": {"temperature": 0.7}}"#,
            r#"{"sampling": {"max_new_tokens": 7}}"#,
            r#"{"sampling": {"n": 2}}"#,
        ] {
            assert!(
                serde_json::from_str::<TrainerConfig>(moved).is_err(),
                "{moved}"
            );
        }
        let kept: TrainerConfig =
            serde_json::from_str(r#"{"sampling": {"top_p": 0.9, "stop_token_ids": []}}"#).unwrap();
        assert_eq!(kept.sampling.top_p, 0.9);
        assert_eq!(kept.sampling.stop_token_ids, Some(vec![]));
        let async_mode: SyncMode =
            serde_json::from_str(r#"{"mode":"async","max_policy_lag":2}"#).unwrap();
        assert_eq!(async_mode.max_policy_lag(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        let c = TrainerConfig {
            reward_actors: 0,
            ..TrainerConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("reward_actors"));
        let err = serde_json::from_str::<TrainerConfig>(r#"{"rollout_actor": 1}"#).unwrap_err();
        assert!(err.to_string().contains("rollout_actor"), "{err}");
    }
}
