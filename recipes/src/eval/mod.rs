//! Evaluation on the Qwen2.5-Math benchmarks: the data sets and their answer fields, the prompt
//! formats, answer selection over samples (Maj@N, RM@N) and the reusable `evaluate` runner that
//! the `eval` recipe and the training recipes' before/after accuracies call.

pub mod datasets;
pub mod prompts;
pub mod recipe;
pub mod runner;
pub mod voting;

pub use datasets::{load_dataset, DATASETS};
pub use prompts::PromptFormat;
pub use runner::{evaluate, DatasetAccuracy, EvalMode, EvalRecord, EvalResult, Selection};
