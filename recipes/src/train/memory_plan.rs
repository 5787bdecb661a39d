//! The memory plan of a GRPO run ([`mathrl::memory`]): computed from the models' config.json and
//! the run's settings before any weight is loaded, printed, and checked against each device's
//! free memory, so a run that cannot fit says so (naming the biggest item and the shortfall)
//! before it loads the weights a second time.

use anyhow::{Context, Result};
use candle_core::DType;
use mathrl::device::default_dtype;
use mathrl::memory::{Available, LearnerShape, MemoryPlan, PlanInput, RolloutShape};
use mathrl::model::Qwen2Config;
use mathrl::Tokenizer;
use mathrl_actors::TrainerConfig;
use mathrl_learners::GrpoConfig;
use serde::{Deserialize, Serialize};

use crate::placement::Placement;

/// Settings of the memory plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryPlanConfig {
    /// Refuse to start when a device's planned memory exceeds its free memory (CPU: the host's
    /// MemAvailable; CUDA: the driver's free memory; `$MATHRL_MEMORY_AVAILABLE_BYTES` overrides
    /// both). Default true.
    pub check: bool,
    /// Prompt tokens the plan assumes per sequence; 0: the longest prompt of the data. Default 0.
    pub prompt_tokens: usize,
}

impl Default for MemoryPlanConfig {
    fn default() -> Self {
        Self {
            check: true,
            prompt_tokens: 0,
        }
    }
}

/// What a GRPO run will hold: `policy` trained by `grpo` in `dtype` (`None`: each device's
/// default) on the trainer's local rollout actors, with the reward model `rm` if it uses one,
/// placed per `placement`.
pub fn grpo_plan_input(
    policy: Qwen2Config,
    rm: Option<Qwen2Config>,
    dtype: Option<DType>,
    grpo: &GrpoConfig,
    trainer: &TrainerConfig,
    prompt_tokens: usize,
    placement: &Placement,
) -> PlanInput {
    let on = |device| dtype.unwrap_or_else(|| default_dtype(device));
    PlanInput {
        dtype: on(&placement.learner),
        reward_model_dtype: Some(on(&placement.reward_model)),
        // β = 0 keeps no reference (`GrpoLearner::new`).
        reference_model: grpo.loss.beta > 0.0,
        reward_model: rm,
        rollout: RolloutShape {
            actors: trainer.rollout_actors,
            group_size: grpo.rollout.group_size,
            prompt_tokens,
            max_new_tokens: grpo.rollout.max_new_tokens,
            max_live_sequences: trainer.engine.max_live_sequences,
            kv_cache_bytes: trainer.engine.kv_cache_bytes as u64,
        },
        learner: LearnerShape {
            micro_batch_sequences: grpo.micro_batch_size,
            micro_batch_tokens: Some(grpo.micro_batch_tokens),
            gradient_checkpointing: grpo.gradient_checkpointing,
            packed_groups: grpo.pack_groups,
        },
        master_weights: Some(grpo.optimizer.master_weights && on(&placement.learner) != DType::F32),
        placement: placement.labels(),
        ..PlanInput::new(policy)
    }
}

/// Tokens of the longest of `questions` once formatted as a prompt (after the `system` turn, when
/// given).
pub fn longest_prompt_tokens<'a>(
    tokenizer: &Tokenizer,
    system: Option<&str>,
    questions: impl IntoIterator<Item = &'a str>,
) -> Result<usize> {
    let mut longest = 0;
    for question in questions {
        let ids = tokenizer
            .question_prompt(question, system)
            .and_then(|text| tokenizer.encode(&text))
            .with_context(|| format!("measuring the prompt of `{question}`"))?;
        longest = longest.max(ids.len());
    }
    Ok(longest)
}

/// Prints `plan` (stderr) with each device's free memory and, when `check`, refuses a plan that
/// does not fit. A device whose free memory cannot be measured is reported and not checked.
pub fn print_and_check(plan: &MemoryPlan, placement: &Placement, check: bool) -> Result<()> {
    let available = match Available::query(placement.devices()) {
        Ok(available) => Some(available),
        Err(e) => {
            tracing::warn!("the memory plan is not checked: {e}");
            None
        }
    };
    eprintln!("{}", plan.table(available.as_ref()));
    if let (true, Some(available)) = (check, &available) {
        plan.check(available).context(
            "refusing to start (`--set memory_plan.check=false` starts anyway; a smaller \
             micro-batch, group, length or fewer rollout actors need less)",
        )?;
    }
    Ok(())
}
