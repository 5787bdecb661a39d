//! Recipes for mathrl, and the registry the `mathrl` binary picks them from.
//!
//! A recipe is a short file that composes the core, rewards, learners and actors:
//! - [`train`]: the training recipes (GRPO, SFT, RM retraining, SFT-data evolution, the whole
//!   pipeline, the tiny bootstrap) and the helpers only they use;
//! - [`tools`]: one-shot tools (grade, log-probs, RM scores, generate, synthesize);
//! - [`eval`]: the Qwen2.5-Math evaluation and its reusable runner.
//!
//! The rest is what every recipe shares: the command line ([`cli`]), config files ([`config`]),
//! the start of a recipe ([`driver`]), the run directory ([`run`]), the models' dtypes
//! ([`precision`]), the devices of a run's parts ([`placement`]), tool outputs written whole or not
//! at all ([`output`]), the decontamination filter of training data ([`decontamination`]), the
//! registry ([`registry`]), the cluster flags ([`cluster`]) and the embedded default's assets
//! ([`assets`]).

pub mod assets;
pub mod chunk_seed;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod config_docs;
pub mod decontamination;
pub mod driver;
pub mod eval;
pub mod output;
pub mod placement;
pub mod precision;
pub mod progress;
pub mod recipe_flags;
pub mod registry;
pub mod resume;
pub mod run;
pub mod tools;
pub mod train;

pub use registry::{find_recipe, recipes, Recipe};
// The paths these modules had before recipes were grouped, which tests, examples and users'
// recipes import.
pub use train::{accuracy, tiny_bootstrap, verifier};
