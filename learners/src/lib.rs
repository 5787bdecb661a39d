//! Learners for mathrl: GRPO, SFT and reward-model ranking losses, the optimiser and schedules.
