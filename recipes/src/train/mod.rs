//! The training recipes, each a short file, and the helpers only they use.

pub mod accuracy;
pub mod memory_plan;
pub mod pipeline;
pub mod query_filter;
pub mod qwen25_math_rl;
pub mod reasoning;
pub mod rejection_sampling;
pub mod rl_eval;
pub mod rm_retraining;
pub mod sft;
pub mod sft_data_evolution;
pub mod sft_pool;
pub mod tiny_bootstrap;
pub mod tir_data_evolution;
pub mod verifier;
