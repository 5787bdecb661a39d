//! Tool-integrated reasoning (TIR) after Qwen2.5-Math: when a completion closes a
//! ```` ```python ```` block, generation pauses, the program runs in a [`PythonSandbox`], and
//! the ```` ```output ```` block the model sees is appended before generation resumes.
//!
//! - [`program`]: which program runs and what text is appended (the reference's exact strings);
//! - [`sandbox`]: the isolated interpreter and its limits ([`SandboxConfig`]);
//! - [`runner`]: the per-completion loop ([`ToolRunner`]), at most 4 calls by default.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mathrl_actors::tool::{PythonSandbox, SandboxConfig, ToolCalls, ToolRunner};
//!
//! let sandbox = Arc::new(PythonSandbox::new(SandboxConfig::default())?);
//! let runner = ToolRunner::new(sandbox, 4);
//! let mut calls = ToolCalls::default();
//! let prompt = "Compute 2+3.\n";
//! let round = "```python\nprint(2 + 3)\n```\n"; // generation stopped at "```output"
//! if let Some(outcome) = runner.after_round(&mut calls, prompt, round)? {
//!     assert_eq!(outcome.appended, "\n```output\n5\n```\n");
//! }
//! # Ok::<(), mathrl_actors::tool::SandboxError>(())
//! ```

pub mod executor;
pub mod isolation;
mod mounts;
mod pipes;
pub mod program;
pub mod runner;
pub mod sandbox;

pub use executor::SandboxExecutor;
pub use isolation::Isolation;
pub use program::{extract_program, format_output_block, TIR_STOP_STRINGS};
pub use runner::{ToolCalls, ToolOutcome, ToolRunner, DEFAULT_MAX_TOOL_CALLS};
pub use sandbox::{ExecutionResult, ExecutionStatus, PythonSandbox, SandboxConfig, SandboxError};
