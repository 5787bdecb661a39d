//! The tool runner of tool-integrated reasoning, after the generation loop of the Qwen2.5-Math
//! evaluation (`math_eval.py`): generation stops at one of [`super::TIR_STOP_STRINGS`]; if the
//! round's text (right-stripped) ends with a closing fence and has no `boxed`, the program of the
//! whole text so far runs and its output block is appended, and generation resumes; the call
//! that reaches `max_tool_calls` also gets "Reach max function call limit." and ends the
//! completion. A round without a program ends the completion.

use std::sync::Arc;

use super::program::{extract_program, format_output_block, python_rstrip, MAX_CALLS_MESSAGE};
use super::sandbox::{ExecutionResult, PythonSandbox, SandboxError};

/// Tool calls per completion in the reference's `tool-integrated` evaluation.
pub const DEFAULT_MAX_TOOL_CALLS: usize = 4;

/// Tool calls made so far by one completion; one per completion, owned by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolCalls {
    made: usize,
}

impl ToolCalls {
    /// Calls made so far.
    pub fn made(&self) -> usize {
        self.made
    }
}

/// What to do with a generation round that ended with a program.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// Bytes of the round's text to keep: the reference right-strips the round (`rstrip()`)
    /// before appending, so trailing whitespace after the closing fence is dropped.
    pub kept_round_bytes: usize,
    /// The text to append after the kept round: the output block, followed by the limit
    /// message after the last allowed call.
    pub appended: String,
    /// The program's execution.
    pub result: ExecutionResult,
    /// True when this was the last allowed call: the completion ends after `appended`.
    pub finished: bool,
}

/// Runs the programs of many completions (shareable between threads; per-completion state
/// lives in each completion's [`ToolCalls`]).
#[derive(Debug, Clone)]
pub struct ToolRunner {
    sandbox: Arc<PythonSandbox>,
    max_tool_calls: usize,
}

impl ToolRunner {
    /// A runner allowing `max_tool_calls` calls per completion (the reference: 4).
    pub fn new(sandbox: Arc<PythonSandbox>, max_tool_calls: usize) -> Self {
        ToolRunner {
            sandbox,
            max_tool_calls,
        }
    }

    /// The sandbox programs run in.
    pub fn sandbox(&self) -> &PythonSandbox {
        &self.sandbox
    }

    /// Whether a round's text asks for a tool call (the reference's test on the round).
    pub fn is_tool_call(round: &str) -> bool {
        let round = python_rstrip(round);
        !round.contains("boxed") && round.ends_with("```")
    }

    /// Handles the end of one generation round. `context` is everything before the round (the
    /// prompt and the completion so far, earlier output blocks included), since the program is
    /// extracted from the whole text as the reference does; `round` is the text just generated,
    /// without the stop string. `None`: no tool call, the completion is finished.
    pub fn after_round(
        &self,
        calls: &mut ToolCalls,
        context: &str,
        round: &str,
    ) -> Result<Option<ToolOutcome>, SandboxError> {
        if calls.made >= self.max_tool_calls || !Self::is_tool_call(round) {
            return Ok(None);
        }
        let kept = python_rstrip(round);
        let text = format!("{context}{kept}");
        // The reference runs the empty program when there is none (its output says so).
        let program = extract_program(&text).unwrap_or_default();
        let result = self.sandbox.run(&program)?;
        calls.made += 1;
        let finished = calls.made >= self.max_tool_calls;
        let mut appended = format_output_block(&result.output);
        if finished {
            appended.push_str(MAX_CALLS_MESSAGE);
        }
        Ok(Some(ToolOutcome {
            kept_round_bytes: kept.len(),
            appended,
            result,
            finished,
        }))
    }
}
