//! The data that moves between actors: completions of a prompt and the group they form.
//!
//! Everything here is owned plain data (token ids, f32 vectors, strings) with serde derives, so a
//! message can cross a thread, a process or a node without borrowing a tensor.

use serde::{Deserialize, Serialize};

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token (EOS by default) was sampled; it is the last token of the completion.
    StopToken,
    /// A stop string appeared in the decoded text; the tokens that spell it are kept.
    StopString,
    /// The completion reached `max_new_tokens` (tool-output tokens included).
    Length,
    /// The model asked for one more tool call than `max_tool_calls` allows.
    ToolCallLimit,
}

impl FinishReason {
    /// The snake_case name used in JSON (`stop_token`, `stop_string`, `length`, `tool_call_limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::StopToken => "stop_token",
            FinishReason::StopString => "stop_string",
            FinishReason::Length => "length",
            FinishReason::ToolCallLimit => "tool_call_limit",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Wall-clock times of one completion, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionTiming {
    /// From the start of the `generate` call until this sample got a slot of the KV cache.
    pub queued_ms: f64,
    /// From getting a slot until the completion finished (prefill, decoding, tool calls).
    pub generation_ms: f64,
}

/// One sampled completion of a prompt.
///
/// `token_ids`, `logprobs` and `tool_mask` have one entry per completion token. Tokens inserted
/// by a tool call (the text of its output block) have `tool_mask` true and no log-probability
/// (`None`): the policy did not choose them, so a learner masks them out of its loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Sample index within its group (0..n).
    pub sample_index: usize,
    /// The completion's token ids (prompt excluded; a sampled stop token included).
    pub token_ids: Vec<u32>,
    /// Behaviour log-probability of each sampled token: `log_softmax(logits / T)` at the
    /// sampling temperature T, before top-k/top-p truncation (T = 1 for greedy decoding).
    /// `None` for tool-output tokens.
    pub logprobs: Vec<Option<f32>>,
    /// True for tokens inserted from a tool's output, false for sampled tokens.
    pub tool_mask: Vec<bool>,
    /// Why the completion ended.
    pub finish_reason: FinishReason,
    /// Number of tool calls executed while generating it.
    pub tool_calls: usize,
    /// Tool calls whose output is not an execution success
    /// ([`crate::generation::tool::is_execution_success`]: an error, a timeout, a truncation).
    #[serde(default)]
    pub tool_errors: usize,
    /// Wall-clock milliseconds spent in its tool calls.
    #[serde(default)]
    pub tool_ms: f64,
    /// The decoded text (special tokens skipped), when the engine has a tokenizer.
    pub text: Option<String>,
    /// Wall-clock timing.
    pub timing: CompletionTiming,
}

impl Completion {
    /// A completion of sampled tokens only, each with behaviour log-prob `logprob`, that ended
    /// for `finish_reason`: what benchmarks and tests hand a learner without generating.
    pub fn sampled(
        sample_index: usize,
        token_ids: Vec<u32>,
        logprob: f32,
        finish_reason: FinishReason,
    ) -> Self {
        Self {
            sample_index,
            logprobs: vec![Some(logprob); token_ids.len()],
            tool_mask: vec![false; token_ids.len()],
            token_ids,
            finish_reason,
            tool_calls: 0,
            tool_errors: 0,
            tool_ms: 0.0,
            text: None,
            timing: CompletionTiming::default(),
        }
    }

    /// Number of tokens the policy sampled (tool-output tokens excluded).
    pub fn num_sampled_tokens(&self) -> usize {
        self.tool_mask.iter().filter(|&&tool| !tool).count()
    }
}

/// The `n` completions of one prompt (GRPO's group), all sampled from one policy version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Index of the prompt in the request it came from.
    pub prompt_index: usize,
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// Completions in sample-index order.
    pub completions: Vec<Completion>,
    /// Version of the policy weights that sampled every completion of this group.
    pub policy_version: u64,
}

impl Group {
    /// The completions' texts: as the engine decoded them, or decoded now by `tokenizer`
    /// (special tokens skipped).
    pub fn texts(&self, tokenizer: &crate::Tokenizer) -> crate::Result<Vec<String>> {
        self.completions
            .iter()
            .map(|c| match &c.text {
                Some(text) => Ok(text.clone()),
                None => tokenizer.decode(&c.token_ids, true),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reason_serialises_as_its_snake_case_name() {
        for reason in [
            FinishReason::StopToken,
            FinishReason::StopString,
            FinishReason::Length,
            FinishReason::ToolCallLimit,
        ] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(serde_json::from_str::<FinishReason>(&json).unwrap(), reason);
        }
    }

    #[test]
    fn completion_round_trips_through_json_with_tool_tokens() {
        let completion = Completion {
            sample_index: 1,
            token_ids: vec![5, 6, 7],
            logprobs: vec![Some(-0.5), None, Some(-1.25)],
            tool_mask: vec![false, true, false],
            finish_reason: FinishReason::Length,
            tool_calls: 1,
            tool_errors: 1,
            tool_ms: 3.5,
            text: Some("x".into()),
            timing: CompletionTiming {
                queued_ms: 1.0,
                generation_ms: 2.0,
            },
        };
        let json = serde_json::to_string(&completion).unwrap();
        assert!(json.contains("[-0.5,null,-1.25]"), "{json}");
        assert_eq!(
            serde_json::from_str::<Completion>(&json).unwrap(),
            completion
        );
        assert_eq!(completion.num_sampled_tokens(), 2);
    }

    #[test]
    fn completions_written_before_the_tool_counters_still_read() {
        let json = r#"{"sample_index":0,"token_ids":[5],"logprobs":[-0.5],"tool_mask":[false],
            "finish_reason":"stop_token","tool_calls":0,"text":null,
            "timing":{"queued_ms":0.0,"generation_ms":1.0}}"#;
        let completion: Completion = serde_json::from_str(json).unwrap();
        assert_eq!((completion.tool_errors, completion.tool_ms), (0, 0.0));
    }
}
