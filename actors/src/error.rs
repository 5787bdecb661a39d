//! The runtime's error type.

/// Errors of the actor runtime; each names the prompt, worker, file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (serialising or loading published weights).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The core crate failed (model, tokenizer, generation).
    #[error(transparent)]
    Core(#[from] mathrl::Error),
    /// The learner failed (a step, a checkpoint).
    #[error(transparent)]
    Learner(#[from] mathrl_learners::Error),
    /// The cluster layer failed (listening, a worker's connection, a peer's message).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A setting is out of range.
    #[error("trainer config `{field}`: {message}")]
    Config {
        /// The field of [`crate::TrainerConfig`].
        field: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// Input data (a prompt record) cannot be used.
    #[error("{0}")]
    Input(String),
    /// Published weights failed their integrity check or could not be decoded.
    #[error("weights version {version}: {message}")]
    Weights {
        /// The version being loaded.
        version: u64,
        /// What went wrong.
        message: String,
    },
    /// An actor could not be spawned, or a thread of the runtime died.
    #[error("runtime: {0}")]
    Runtime(String),
    /// A second stop request abandoned the run (no final checkpoint was written).
    #[error("the run was stopped by a second stop request before the step finished")]
    Stopped,
    /// A prompt could not be generated within the allowed attempts.
    #[error("step {step}, prompt `{prompt_id}`: rollout failed {attempts} times, last: {reason}")]
    RolloutFailed {
        /// Learner step the prompt belongs to.
        step: u64,
        /// The prompt's id.
        prompt_id: String,
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        reason: String,
    },
}

/// Result with the runtime's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
