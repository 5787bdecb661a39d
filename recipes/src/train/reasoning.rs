//! How a training recipe's own sampling answers a question: chain of thought, or tool-integrated
//! reasoning with the sandboxed Python executor. One value carries the choice to the query
//! filter, the RM's labelled samples and the greedy before/after accuracy, so that with `tir =
//! true` they see the policy as its rollouts do.

use std::sync::Arc;

use anyhow::Result;
use mathrl::generation::{Engine, EngineConfig, ToolExecutor};
use mathrl::{Policy, Tokenizer};

use crate::eval::prompts::{PromptFormat, TIR_SYSTEM};
use crate::eval::EvalMode;

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

    /// Tool-integrated reasoning with `tool`.
    pub fn tir(tool: Arc<dyn ToolExecutor>) -> Self {
        Self { tool: Some(tool) }
    }

    /// TIR with `tool` when there is one, else chain of thought.
    pub fn with_tool(tool: Option<Arc<dyn ToolExecutor>>) -> Self {
        Self { tool }
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
        let mut mode = EvalMode::greedy_cot(max_new_tokens);
        if let Some(tool) = &self.tool {
            mode.format = PromptFormat::Tir;
            mode.tool = Some(tool.clone());
        }
        mode
    }
}
