//! The GRPO learner's settings ([`GrpoConfig`]) and where the importance ratio's old policy
//! comes from ([`OldLogprobs`]).

use serde::{Deserialize, Serialize};

use crate::advantage::AdvantageEstimator;
use crate::optim::AdamWConfig;
use crate::policy_loss::GrpoLossConfig;
use crate::rollout_settings::RolloutSettings;
use crate::schedule::LrSchedule;
use crate::train_step::TrainStepConfig;
use crate::{Error, Result};

/// Where the π_old of the importance ratio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OldLogprobs {
    /// The learner's own log-probs before this step's first update (ρ = 1 in the first pass).
    #[default]
    Recompute,
    /// The sampler's behaviour log-probs: an importance-sampling correction for groups sampled
    /// by an older policy version (sampler/learner numerical drift enters the ratio too).
    Behaviour,
}

/// Settings of the GRPO learner. The report's recipe (7B) samples 32 completions for each of
/// 128 prompts per step; the prompts per step belong to the recipe that builds the batches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// How the groups are sampled: temperature, group size, length limit (shared with the
    /// trainer, which samples with them).
    pub rollout: RolloutSettings,
    /// Clipped surrogate and KL penalty: ε_low = ε_high = 0.2, β = 1e-3 (the report's KL
    /// coefficient), token-level aggregation. Dr. GRPO's normaliser is `rollout.max_new_tokens`.
    pub loss: GrpoLossConfig,
    /// How rewards become advantages within a group.
    pub advantage: AdvantageEstimator,
    /// AdamW moments and weight decay; its `lr` is overridden by `train_step.schedule`.
    pub optimizer: AdamWConfig,
    /// Learning-rate schedule (peak 1e-5, the report's rate for 7B) and gradient clipping.
    pub train_step: TrainStepConfig,
    /// Optimisation passes (epochs) over each step's completions (μ, TRL's `num_iterations`,
    /// verl's `ppo_epochs`); each pass makes one update per mini-batch. Default 1.
    pub num_iterations: usize,
    /// Completions per optimiser update (verl's `ppo_mini_batch_size` in samples): a step's
    /// completions are split into mini-batches of whole groups, in the batch's order, one update
    /// each, and each of the `num_iterations` passes goes over all of them, so a step makes
    /// `num_iterations` × (completions / mini_batch_size) updates, each a complete loss over its
    /// mini-batch. Smaller than a step, it must be a multiple of `rollout.group_size` that
    /// divides the step's completions (`trainer.prompts_per_step` × group size); as large or
    /// larger, the step is one mini-batch. A batch that does not divide (a group dropped by
    /// `filter_zero_variance_groups`, or a completion with nothing to train on) ends with a
    /// smaller mini-batch. Advantages are computed over the whole step first. Default 0: the whole
    /// step is one mini-batch (one update per pass). Memory follows `micro_batch_size`, not this.
    pub mini_batch_size: usize,
    /// Most completions per forward/backward pass; gradients of an update's micro-batches are
    /// summed.
    pub micro_batch_size: usize,
    /// Most padded tokens (rows × padded `[prompt | completion]` width) per forward/backward
    /// pass; a longer single completion goes alone. The split does not change the update (the
    /// loss is normalised by the update's totals).
    pub micro_batch_tokens: usize,
    /// Pack each group's prompt once with its completions into one row, each completion seeing
    /// only the prompt and itself (a shared-prefix mask, `mathrl::model::SharedPrefixBatch`),
    /// instead of one padded `[prompt | completion]` row per completion: the prompt's forward and
    /// backward run once per group, and padding goes. The update is the same up to float
    /// rounding. It pays when completions are short next to the prompt (the embedded default: on,
    /// 0.48× the learner's time); attention grows with the square of the packed length, which
    /// `micro_batch_tokens` also bounds. Default false.
    pub pack_groups: bool,
    /// Recompute each decoder layer's activations in the backward pass instead of keeping them
    /// from the forward pass: about one more forward of compute for the activation memory of a
    /// single layer (plus each layer's input). Gradients are unchanged.
    pub gradient_checkpointing: bool,
    /// Drop groups whose rewards are all equal before the forward pass (DAPO's dynamic
    /// sampling); otherwise they stay in the batch with advantage 0 (no policy gradient, but
    /// their KL term and their tokens in the normaliser count).
    pub filter_zero_variance_groups: bool,
    /// The π_old of the ratio.
    pub old_logprobs: OldLogprobs,
    /// Positions per block of logits when computing log-probs and entropies.
    pub logprob_chunk_positions: usize,
    /// Compute the mean entropy of the current policy over trained tokens (one extra LM-head
    /// pass without gradient).
    pub log_entropy: bool,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            rollout: RolloutSettings::default(),
            loss: GrpoLossConfig {
                beta: 1e-3,
                ..GrpoLossConfig::default()
            },
            advantage: AdvantageEstimator::Grpo,
            optimizer: AdamWConfig {
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
            train_step: TrainStepConfig {
                schedule: LrSchedule::constant(1e-5),
                max_grad_norm: Some(1.0),
                ..TrainStepConfig::default()
            },
            num_iterations: 1,
            mini_batch_size: 0,
            micro_batch_size: 8,
            micro_batch_tokens: 16_384,
            pack_groups: false,
            gradient_checkpointing: false,
            filter_zero_variance_groups: false,
            old_logprobs: OldLogprobs::Recompute,
            logprob_chunk_positions: 1024,
            log_entropy: true,
        }
    }
}

impl GrpoConfig {
    /// Checks that the settings are in range.
    pub fn validate(&self) -> Result<()> {
        self.rollout.validate()?;
        self.effective_loss().validate()?;
        self.optimizer.validate()?;
        let bad = |field, message: &str| {
            Err(Error::Config {
                field,
                message: message.into(),
            })
        };
        if self.num_iterations == 0 {
            return bad("num_iterations", "must be >= 1");
        }
        if self.micro_batch_size == 0 {
            return bad("micro_batch_size", "must be >= 1");
        }
        if self.micro_batch_tokens == 0 {
            return bad("micro_batch_tokens", "must be >= 1");
        }
        Ok(())
    }

    /// Checks `mini_batch_size` against a step of `prompts_per_step` groups of
    /// `rollout.group_size` completions: one smaller than the step must be a multiple of the
    /// group size (every update holds whole groups) and divide the step's completions (every
    /// update holds as many). One as large as the step or larger is the whole step.
    pub fn validate_step_size(&self, prompts_per_step: usize) -> Result<()> {
        let (m, group) = (self.mini_batch_size, self.rollout.group_size);
        let completions = prompts_per_step * group;
        let message = if m == 0 || m >= completions {
            return Ok(());
        } else if !m.is_multiple_of(group) {
            format!("{m} is not a multiple of the group size rollout.group_size = {group}")
        } else if !completions.is_multiple_of(m) {
            format!(
                "{m} does not divide the step's {completions} completions ({prompts_per_step} \
                 prompts × {group})"
            )
        } else {
            return Ok(());
        };
        Err(Error::Config {
            field: "mini_batch_size",
            message,
        })
    }

    /// The loss settings with Dr. GRPO's constant normaliser set to the rollout length limit.
    pub fn effective_loss(&self) -> GrpoLossConfig {
        GrpoLossConfig {
            max_completion_length: self.rollout.max_new_tokens,
            ..self.loss
        }
    }
}
