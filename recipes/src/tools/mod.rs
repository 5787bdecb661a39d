//! One-shot tools: grade answers, per-token log-probs, RM scores, sample completions, synthesize
//! problems (with its MinHash near-duplicate index).

pub mod generate;
pub mod grade;
pub mod logprobs;
pub mod minhash;
pub mod rm_score;
pub mod synthesize;
