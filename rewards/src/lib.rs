//! Rewards for mathrl: answer extraction, the math-equivalence checker, the reward-model scorer and
//! reward shaping.
