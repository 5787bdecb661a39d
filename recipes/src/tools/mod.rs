//! One-shot tools: grade answers, per-token log-probs, RM scores, sample completions, synthesize
//! problems (with its MinHash near-duplicate index), decontaminate data against the evaluation
//! sets, run programs in the TIR sandbox and report its isolation layers.

pub mod decontaminate;
pub mod generate;
pub mod grade;
pub mod logprobs;
pub mod minhash;
pub mod python;
pub mod rm_score;
pub mod sandbox_check;
pub mod synthesize;
