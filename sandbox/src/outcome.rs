//! What running a snippet gives: its [`ExecutionResult`] and [`ExecutionStatus`], or a
//! [`SandboxError`] when it could not run at all.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::isolation::Isolation;

/// Why a snippet could not be run at all (never a property of the snippet itself).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A config field is out of range.
    #[error("sandbox config field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    /// The interpreter could not be started to describe itself.
    #[error("python interpreter `{python}` could not be started: {source}")]
    Interpreter { python: String, source: io::Error },
    /// The interpreter did not describe itself.
    #[error("python interpreter `{python}` did not report its location ({status}): {detail}")]
    Probe {
        python: String,
        status: String,
        detail: String,
    },
    /// The work directory could not be made.
    #[error("sandbox work directory in {dir}: {source}")]
    WorkDir { dir: PathBuf, source: io::Error },
    /// The program could not be started.
    #[error("starting the sandboxed interpreter {executable}: {source}")]
    Spawn {
        executable: PathBuf,
        source: io::Error,
    },
    /// A layer the config asks for is unavailable here (and `allow_weaker_isolation` is off).
    #[error("the python sandbox refuses to start: {missing} (set allow_weaker_isolation = true to run without; see sandbox/SANDBOX.md)")]
    WeakerIsolation { missing: String },
    /// The pipes to a running program failed.
    #[error("reading from the sandboxed program (pid {pid}): {source}")]
    Pipe { pid: i32, source: io::Error },
}

/// How a snippet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    /// It ran to the end; the output is its result (or "Done").
    Success,
    /// It raised; the output is the last line of the traceback.
    Error,
    /// It passed the wall-clock timeout and was killed; the output is "Timeout Error".
    Timeout,
    /// It passed the CPU-time limit; the output is "Timeout Error" as well.
    CpuTimeLimit,
    /// It raised MemoryError (the address-space limit); the output is that traceback line.
    MemoryExceeded,
    /// Its stdout or stderr passed `max_output_bytes` and it was killed; the output is the
    /// truncated stdout read so far (or "Output Limit Error").
    OutputLimit,
    /// It died without a result (a signal, `os._exit`); the output says so.
    Crashed,
}

/// The outcome of one snippet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionResult {
    /// The text the model sees inside the output block.
    pub output: String,
    /// How the snippet ended.
    pub status: ExecutionStatus,
    /// Wall-clock time from start to the last process gone.
    pub elapsed_ms: u64,
    /// The isolation layers that were applied to this run.
    pub isolation: Isolation,
    /// Process group (and pid) of the program's first process, for diagnostics.
    pub process_group: i32,
    /// The first bytes of stderr (warnings, interpreter crashes); never shown to the model.
    pub stderr: String,
}
