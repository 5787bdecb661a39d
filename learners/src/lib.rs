//! Learners for mathrl: GRPO, SFT and reward-model ranking losses, the optimiser and schedules.
//!
//! The numerics work on plain candle tensors: a learner computes per-token log-probs (or logits,
//! or rewards) with the core crate's model, feeds them to a loss here, and hands the micro-batch
//! gradients to a [`TrainStep`], which accumulates, checks, clips and steps an [`AdamW`]. The
//! three learners (GRPO, SFT, RM) share a [`LearnerCore`]: optimiser, train step, step counter
//! (the policy version) and checkpoint save and restore.

pub mod advantage;
pub mod checkpoint;
pub mod checkpoint_manifest;
pub mod entropy;
pub mod error;
pub mod grpo;
mod grpo_batch;
pub mod grpo_config;
pub mod grpo_report;
pub mod learner_core;
pub mod micro_batch;
pub mod mini_batch;
pub mod optim;
pub mod policy_loss;
pub mod rm;
pub mod rm_loss;
pub mod rng;
pub mod rollout;
pub mod rollout_settings;
pub mod run_identity;
pub mod schedule;
pub mod sft;
pub mod sft_data;
pub mod sft_loss;
pub mod train_step;

pub use advantage::AdvantageEstimator;
pub use checkpoint::{
    latest_checkpoint, read_checkpoint, read_trainer_state, Checkpoint, CheckpointConfig,
    DataCursor, RunState, TrainerState,
};
pub use error::{Error, Result};
pub use grpo::{GrpoConfig, GrpoLearner, GrpoStepReport, OldLogprobs};
pub use learner_core::{LearnerCore, Restored, TrainableModel};
pub use micro_batch::micro_batch_ranges;
pub use mini_batch::mini_batch_ranges;
pub use optim::{AdamW, AdamWConfig, Optimizer};
pub use policy_loss::{
    grpo_loss, GrpoLossConfig, LossAggregation, PolicyLoss, PolicyLossInputs, PolicyLossMetrics,
    StepNormaliser,
};
pub use rm::{RmConfig, RmEval, RmLearner, RmQuery, RmStepReport};
pub use rm_loss::{ranking_loss, RankingLoss};
pub use rng::SeededRng;
pub use rollout::{policy_lag, RolloutBatch, ScoredGroup};
pub use rollout_settings::RolloutSettings;
pub use run_identity::{without_keys, ResumeConfig, RunIdentity};
pub use schedule::{Decay, LrSchedule};
pub use sft::{SftBatch, SftConfig, SftLearner, SftStepReport};
pub use sft_data::{
    load_conversations, pack, tokenize_conversation, Conversation, SftExample, ShuffledLoader,
};
pub use sft_loss::{sft_loss_from_logits, sft_loss_from_logprobs, SftLoss, TokenNormaliser};
pub use train_step::{
    clip_grad_norm, global_grad_norm, GradAccumulator, SkipReason, StepStats, TrainStep,
    TrainStepConfig,
};
