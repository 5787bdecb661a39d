//! The Python sandbox of tool-integrated reasoning (TIR) after Qwen2.5-Math: when a completion
//! closes a ```` ```python ```` block, the generation engine pauses, extracts the program
//! (`mathrl::generation::tool`, the one TIR protocol), runs it here through the engine's tool hook
//! ([`SandboxExecutor`]), and appends the output block the model sees before it resumes.
//!
//! - [`sandbox`]: the isolated interpreter and its limits ([`SandboxConfig`]);
//! - [`isolation`]: which confinement layers applied to a run ([`Isolation`]);
//! - [`layers`]: which layers this machine gives, and why a missing one is missing;
//! - [`output`]: what the model sees of an execution (the reference's strings and truncation);
//! - [`executor`]: the engine's [`mathrl::generation::ToolExecutor`] over a sandbox.
//!
//! What is and is not isolated: `sandbox/SANDBOX.md`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mathrl_sandbox::{PythonSandbox, SandboxConfig, SandboxExecutor};
//!
//! let sandbox = Arc::new(PythonSandbox::new(SandboxConfig::default())?);
//! let result = sandbox.run("print(2 + 3)")?;
//! assert_eq!(result.output, "5");
//! // The generation engine runs TIR programs through the executor:
//! // `Engine::with_tool(Arc::new(SandboxExecutor::new(sandbox)))`.
//! let _executor = SandboxExecutor::new(sandbox);
//! # Ok::<(), mathrl_sandbox::SandboxError>(())
//! ```

pub mod config;
pub mod executor;
pub mod isolation;
pub mod layers;
mod mounts;
pub mod outcome;
pub mod output;
mod pipes;
pub mod sandbox;
mod seccomp;
mod uid_pool;
mod userns;

pub use executor::SandboxExecutor;
pub use isolation::Isolation;
pub use layers::LayerStatus;
pub use sandbox::{ExecutionResult, ExecutionStatus, PythonSandbox, SandboxConfig, SandboxError};
