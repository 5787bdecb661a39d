//! mathrl core: the Qwen2 policy in candle, the tokenizer and chat template, generation, the data
//! types that move between actors, datasets, checkpoints and metrics.
//!
//! The core knows no actor, loss or recipe: those live in `mathrl-rewards`, `mathrl-learners`,
//! `mathrl-actors` and `mathrl-recipes`, which depend on it.

pub mod data;
pub mod device;
pub mod error;
pub mod generation;
pub mod hub;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod rng;
pub mod tokenizer;
pub mod tokenizer_training;
pub mod types;

pub use error::{Error, Result};
pub use metrics::{Metrics, MetricsSink};
pub use policy::Policy;
pub use tokenizer::{ChatMessage, Tokenizer};
