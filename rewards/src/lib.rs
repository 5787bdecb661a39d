//! Rewards for mathrl: answer extraction, the math-equivalence checker, the reward-model scorer and
//! reward shaping.

pub mod reward_model;

pub use reward_model::{RewardHeadKind, RewardModel, RewardModelError};
