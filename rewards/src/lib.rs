//! Rewards for mathrl: answer extraction, the math-equivalence checker, the reward-model scorer and
//! reward shaping.

pub mod checker;
pub mod reward_model;
pub mod shaping;
pub mod verdict;

pub use checker::{extract_answer, parse_gold, Checker, CheckerProfile};
pub use reward_model::{RewardHeadKind, RewardModel, RewardModelError};
pub use shaping::{
    shaped_reward, PreferenceScorer, RewardFunction, RewardInput, RewardOutput, ShapedReward,
    ShapingMode, Verifier,
};
pub use verdict::{Outcome, Verdict};
