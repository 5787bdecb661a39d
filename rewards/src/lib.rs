//! Rewards for mathrl: answer extraction, the math-equivalence checker, the reward-model scorer,
//! reward shaping, and the [`RewardSpec`] a run's reward is built from.

pub mod checker;
pub mod reward_model;
pub mod shaping;
pub mod spec;
pub mod verdict;

pub use checker::{extract_answer, parse_gold, Checker, CheckerProfile};
pub use reward_model::{RewardHeadKind, RewardModel, RewardModelError, TokenizedRewardModel};
pub use shaping::{
    shaped_reward, PreferenceScorer, RewardFunction, RewardInput, RewardOutput, ShapedReward,
    ShapingMode, Verifier,
};
pub use spec::{RewardResources, RewardSpec, RewardSpecError};
pub use verdict::{Outcome, Verdict};
