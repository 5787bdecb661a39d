//! The engine's tool hook backed by the sandbox: [`SandboxExecutor`] implements the core's
//! [`ToolExecutor`], so `Engine::with_tool(Arc::new(SandboxExecutor::new(sandbox)))` runs the
//! python blocks of tool-integrated reasoning in a [`PythonSandbox`].
//!
//! The engine extracts the program (the reference's `extract_program`) and appends the output
//! block; the executor only runs the program and returns what the model sees: stdout, or the last
//! line of the traceback, truncated as the reference does. A failure of the sandbox itself (no
//! interpreter, no work directory) is logged and shown to the model as a one-line error output,
//! never a panic of the run.

use std::sync::Arc;

use mathrl::generation::ToolExecutor;

use super::sandbox::PythonSandbox;

/// Runs TIR programs for the generation engine in a shared [`PythonSandbox`].
#[derive(Debug, Clone)]
pub struct SandboxExecutor {
    sandbox: Arc<PythonSandbox>,
}

impl SandboxExecutor {
    /// An executor over `sandbox` (shareable: each call runs its own isolated interpreter).
    pub fn new(sandbox: Arc<PythonSandbox>) -> Self {
        Self { sandbox }
    }

    /// The sandbox programs run in.
    pub fn sandbox(&self) -> &PythonSandbox {
        &self.sandbox
    }
}

impl ToolExecutor for SandboxExecutor {
    fn execute(&self, code: &str) -> String {
        match self.sandbox.run(code) {
            Ok(result) => result.output,
            Err(err) => {
                tracing::warn!(error = %err, "the TIR sandbox failed; the model sees an error output");
                format!("SandboxError: {err}")
                    .lines()
                    .next()
                    .unwrap_or("SandboxError")
                    .to_string()
            }
        }
    }
}
