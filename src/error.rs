//! The core crate's error type.

use std::path::PathBuf;

/// Errors of the core crate; every variant names the file, tensor or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// What serde said, with line and column.
        source: serde_json::Error,
    },
    /// A model configuration asks for something this implementation cannot honour or is malformed.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// Which field, and why.
        message: String,
    },
    /// A tensor is missing from a checkpoint or has the wrong shape.
    #[error("{0}")]
    Weights(String),
    /// The tokenizer failed or its files are inconsistent.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Input data (ids, masks, prompts) is malformed.
    #[error("{0}")]
    Input(String),
    /// Generation cannot proceed (KV-cache budget, tool calls).
    #[error("generation: {0}")]
    Generation(String),
}

/// Result with the core crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
