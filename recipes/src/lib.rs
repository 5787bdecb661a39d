//! Recipes for mathrl, and the registry the `mathrl` binary picks them from.
//!
//! A recipe is a short file that composes the core, rewards, learners and actors.

pub mod accuracy;
pub mod assets;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod eval;
pub mod generate;
pub mod grade;
pub mod logprobs;
pub mod minhash;
pub mod pipeline;
pub mod query_filter;
pub mod qwen25_math_rl;
pub mod registry;
pub mod rm_retraining;
pub mod rm_score;
pub mod run;
pub mod sft;
pub mod sft_data_evolution;
pub mod synthesize;
pub mod tiny_bootstrap;
pub mod verifier;

pub use registry::{find_recipe, recipes, Recipe};
