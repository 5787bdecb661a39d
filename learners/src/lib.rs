//! Learners for mathrl: GRPO, SFT and reward-model ranking losses, the optimiser and schedules.
//!
//! The numerics work on plain candle tensors: a learner computes per-token log-probs (or logits,
//! or rewards) with the core crate's model, feeds them to a loss here, and hands the micro-batch
//! gradients to a [`TrainStep`], which accumulates, checks, clips and steps an [`AdamW`].

pub mod advantage;
pub mod error;
pub mod policy_loss;
pub mod rm_loss;
pub mod sft_loss;

pub use advantage::{AdvantageEstimator, GroupAdvantages};
pub use error::{Error, Result};
pub use policy_loss::{
    grpo_loss, GrpoLossConfig, LossAggregation, PolicyLoss, PolicyLossInputs, PolicyLossMetrics,
    StepNormaliser,
};
pub use rm_loss::{ranking_loss, RankingLoss};
pub use sft_loss::{sft_loss_from_logits, sft_loss_from_logprobs, SftLoss, TokenNormaliser};
