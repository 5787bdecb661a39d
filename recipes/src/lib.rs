//! Recipes for mathrl, and the registry the `mathrl` binary picks them from.
//!
//! A recipe is a short file that composes the core, rewards, learners and actors.

pub mod cli;
pub mod config;
pub mod grade;
pub mod jsonl;
pub mod logprobs;
pub mod registry;
pub mod rm_score;
pub mod run;

pub use registry::{find_recipe, recipes, Recipe};
