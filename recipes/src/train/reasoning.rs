//! How a training recipe's own sampling answers a question: chain of thought, or tool-integrated
//! reasoning with the sandboxed Python executor. One value, built from a recipe's TIR keys,
//! carries the choice to RL's query filter and accuracies, the RM's labelled samples, the
//! evolution rounds and synthesis's self-consistency check, so that with `tir = true` they all
//! see the policy as its rollouts do.

use std::sync::Arc;

use anyhow::Result;
use mathrl::generation::{Engine, EngineConfig, ToolExecutor};
use mathrl::{Policy, Tokenizer};
use mathrl_sandbox::SandboxConfig;

use crate::eval::prompts::{PromptFormat, TIR_SYSTEM};
use crate::eval::EvalMode;
use crate::tools::python::tir_executor;

/// The config keys of TIR (`tir`, `tool_timeout_ms`, the `tool` table) that every recipe that
/// samples for training has; a run with `tir = false` leaves them out of its resume identity, so
/// that it resumes the checkpoints of runs from before TIR training existed.
pub const TIR_KEYS: &[&str] = &["tir", "tool_timeout_ms", "tool"];

/// Chain of thought (no tool), or TIR with its executor.
#[derive(Clone, Default)]
pub struct Reasoning {
    tool: Option<Arc<dyn ToolExecutor>>,
}

impl std::fmt::Debug for Reasoning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.tool.is_some() { "Tir" } else { "Cot" })
    }
}

impl Reasoning {
    /// Chain of thought: the recipes' prompts as they were before TIR.
    pub fn cot() -> Self {
        Self::default()
    }

    /// The reasoning of a recipe's TIR keys: with `tir`, the sandbox of `tool` (each program
    /// limited to `timeout_ms`), started now, so that one that cannot start fails before the
    /// recipe makes its run directory.
    pub fn of_config(tir: bool, tool: &SandboxConfig, timeout_ms: u64) -> Result<Self> {
        Ok(Self {
            tool: match tir {
                true => Some(tir_executor(tool, timeout_ms)?),
                false => None,
            },
        })
    }

    /// Chain of thought or TIR.
    pub fn format(&self) -> PromptFormat {
        PromptFormat::of_tir(self.tool.is_some())
    }

    /// The executor, when TIR.
    pub fn tool(&self) -> Option<&Arc<dyn ToolExecutor>> {
        self.tool.as_ref()
    }

    /// The prompt's token ids: the question alone as a user turn (CoT, as the recipes always
    /// asked), or after the TIR system prompt.
    pub fn prompt_ids(&self, tokenizer: &Tokenizer, question: &str) -> Result<Vec<u32>> {
        let system = self.tool.as_ref().map(|_| TIR_SYSTEM);
        Ok(tokenizer.encode(&tokenizer.question_prompt(question, system)?)?)
    }

    /// A generation engine over `policy` that runs python blocks when TIR.
    pub fn engine(&self, policy: &Policy, tokenizer: &Tokenizer) -> Engine {
        let engine =
            Engine::from_policy(policy, EngineConfig::default()).with_tokenizer(tokenizer.clone());
        match &self.tool {
            Some(tool) => engine.with_tool(tool.clone()),
            None => engine,
        }
    }

    /// Greedy evaluation in this format, at most `max_new_tokens` per answer.
    pub fn greedy_mode(&self, max_new_tokens: usize) -> EvalMode {
        EvalMode {
            format: self.format(),
            tool: self.tool.clone(),
            ..EvalMode::greedy_cot(max_new_tokens)
        }
    }
}
