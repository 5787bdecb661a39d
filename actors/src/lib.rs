//! The mathrl runtime: rollout, reward and learner actors around a coordinator, the TIR tool
//! runner, multi-node workers.
//!
//! - [`Trainer`] (trainer.rs) is what recipes use: pools + reward + learner, then `run(prompts)`.
//! - [`coordinator`] is the run's one loop: steps, dispatch, deadlines, re-issue, metrics.
//! - [`rollout`] and [`reward`] are the ractor workers; [`supervision`] restarts them.
//! - [`learner`] is the learner's thread; [`weights`] how its weights are published.

pub mod config;
pub mod coordinator;
pub mod error;
pub mod event;
pub mod learner;
pub mod prompt;
pub mod report;
pub mod reward;
pub mod rollout;
pub mod stop;
pub mod supervision;
pub mod tool;
pub mod trainer;
pub mod weights;

pub use config::{SyncMode, TrainerConfig};
pub use error::{Error, Result};
pub use event::{Role, WorkerId};
pub use prompt::{PromptRecord, PromptStream};
pub use report::{GroupRecord, StepRecord, TrainReport, UnscoredCompletion};
pub use stop::StopHandle;
pub use trainer::Trainer;
pub use weights::{WeightsBoard, WeightsSnapshot};
