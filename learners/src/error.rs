//! The learners crate's error type.

use candle_core::Tensor;

/// Errors of the learners; every variant names the tensor, field or entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The core crate failed (model, log-probs).
    #[error(transparent)]
    Core(#[from] mathrl::Error),
    /// A tensor has a shape other than the one the computation needs.
    #[error("{tensor}: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// Which input tensor.
        tensor: String,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        got: Vec<usize>,
    },
    /// A setting is out of its valid range.
    #[error("{field}: {message}")]
    Config {
        /// The setting, as named in the config struct.
        field: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// Input data (rewards, labels, group sizes) is malformed.
    #[error("{0}")]
    Input(String),
    /// Optimiser state being restored does not match the optimiser's parameters.
    #[error("optimiser state: {0}")]
    State(String),
    /// The reward model failed (loading, scoring, saving).
    #[error(transparent)]
    RewardModel(#[from] mathrl_rewards::reward_model::RewardModelError),
    /// Reading or writing a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory at fault.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A data file has a malformed entry.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: std::path::PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Too many optimiser updates in a row were skipped for a non-finite loss or gradient.
    #[error(
        "training diverged: {consecutive} updates in a row were skipped for a non-finite loss or \
         gradient ({skipped} in all); lower the learning rate or check the data, then resume from \
         the last checkpoint (train_step.max_consecutive_skips sets the bound)"
    )]
    Diverged {
        /// Updates skipped in a row.
        consecutive: u64,
        /// Updates skipped in the whole run.
        skipped: u64,
    },
    /// A checkpoint directory is incomplete or inconsistent with the learner restoring it.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the learners' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fails unless `tensor` has exactly the shape `expected`.
pub(crate) fn expect_shape(tensor: &Tensor, name: &str, expected: &[usize]) -> Result<()> {
    if tensor.dims() == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            tensor: name.to_string(),
            expected: expected.to_vec(),
            got: tensor.dims().to_vec(),
        })
    }
}
