//! The mathrl runtime: rollout, reward and learner actors around a coordinator, multi-node
//! workers.
//!
//! - [`Trainer`] (trainer.rs) is what recipes use: pools + reward + learner, then `run(prompts)`.
//! - [`coordinator`] is the run's one loop: steps, dispatch, deadlines, re-issue, metrics.
//! - [`rollout`] and [`reward`] are the ractor workers; [`supervision`] restarts them.
//! - [`learner`] is the learner's thread; [`weights`] how its weights are published.
//! - [`cluster`] lets `mathrl worker` processes on other machines join the rollout and reward
//!   pools over `ractor_cluster`: [`Trainer::with_cluster`] on the coordinator,
//!   [`cluster::run_worker`] in the worker (deployment: DEPLOYMENT.md at the repository root).
//!
//! GRPO with the strict answer checker as the reward, 2 rollout and 2 reward actors:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use mathrl::{model::Trainable, Metrics, Policy, Tokenizer};
//! use mathrl_actors::{QaRecord, Trainer, TrainerConfig};
//! use mathrl_learners::{GrpoConfig, GrpoLearner};
//! use mathrl_rewards::{Checker, CheckerProfile, ShapedReward};
//!
//! # fn main() -> anyhow::Result<()> {
//! let model = "path/to/qwen2-model";
//! let policy = Policy::load(model, &candle_core::Device::Cpu, None, Trainable::Yes)?;
//! let tokenizer = Tokenizer::from_dir(model)?;
//! let metrics = Metrics::null();
//! let learner = GrpoLearner::new(policy, None, GrpoConfig::default(), metrics.clone())?;
//! let reward = Arc::new(ShapedReward::verifier_only(Arc::new(Checker::new(
//!     CheckerProfile::Strict,
//! ))));
//! let prompts = vec![QaRecord {
//!     id: "q0".into(),
//!     question: "What is 2 + 3?".into(),
//!     gold: Some("5".into()),
//!     ..QaRecord::default()
//! }];
//! let report = Trainer::new(TrainerConfig::default(), learner, tokenizer, reward, metrics)?
//!     .with_checkpoint_dir("runs/grpo/checkpoints".into())
//!     .run(prompts)?;
//! println!("{} steps, {} failures", report.steps, report.failures);
//! # Ok(())
//! # }
//! ```

pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod event;
pub mod learner;
pub mod progress;
pub mod prompt;
pub mod report;
pub mod reward;
pub mod rollout;
pub mod stop;
pub mod supervision;
pub mod trainer;
pub mod weights;

pub use cluster::ClusterConfig;
pub use config::{SyncMode, TrainerConfig};
pub use error::{Error, Result};
pub use event::{Place, Role, WorkerId};
pub use mathrl::data::QaRecord;
pub use progress::{PolicyObserver, PolicyWatch, StepObserver, StepSummary};
pub use prompt::PromptStream;
pub use report::{GroupRecord, StepRecord, TrainReport, UnscoredCompletion};
pub use stop::StopHandle;
pub use trainer::Trainer;
pub use weights::{PublishedWeights, Publisher, WeightsBoard, WeightsSnapshot};
