//! One sequence being generated, and the rules that decide after each token whether it goes on,
//! stops, or calls a tool.

use std::collections::HashSet;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::sampler::{SampledToken, SamplerSettings};
use super::stop::StopStrings;
use super::tool::{asks_for_tool_call, extract_program, TOOL_CALL_TRIGGER};
use super::SamplingParams;
use crate::model::Qwen2Config;
use crate::types::{Completion, CompletionTiming, FinishReason};
use crate::{Error, Result, Tokenizer};

/// The random stream of sample `sample_index` of prompt `prompt_index`: ChaCha8 keyed by the
/// three numbers, so streams are independent and fixed whatever the batching.
pub fn sequence_rng(seed: u64, prompt_index: usize, sample_index: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(prompt_index as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(sample_index as u64).to_le_bytes());
    key[24..].copy_from_slice(b"mathrlgn");
    ChaCha8Rng::from_seed(key)
}

/// Where a sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its newest token waits to be fed to the next decode step.
    Decoding,
    /// A tool runs for it; its newest token is fed together with the tool output.
    AwaitingTool,
    /// Done.
    Finished(FinishReason),
}

/// A completion under construction, in the slot of the KV cache its position in the live list
/// names.
#[derive(Debug)]
pub struct Sequence {
    /// Index of its prompt in the request.
    pub prompt_index: usize,
    /// Index of this sample among its prompt's `n`.
    pub sample_index: usize,
    /// Positions whose keys/values are in the cache (prompt + completion tokens fed so far).
    pub cache_len: usize,
    /// Completion tokens, log-probs (None for tool tokens) and the tool mask.
    pub token_ids: Vec<u32>,
    /// See [`Completion::logprobs`].
    pub logprobs: Vec<Option<f32>>,
    /// See [`Completion::tool_mask`].
    pub tool_mask: Vec<bool>,
    /// Tool calls made so far.
    pub tool_calls: usize,
    /// Tool calls whose output was not an execution success.
    pub tool_errors: usize,
    /// Milliseconds spent in tool calls.
    pub tool_ms: f64,
    /// Index of the first token generated after the latest tool output.
    pub segment_start: usize,
    /// This sample's random stream.
    pub rng: ChaCha8Rng,
    /// Where it is.
    pub phase: Phase,
    queued_ms: f64,
    admitted: Instant,
}

impl Sequence {
    /// A sequence whose prompt of `prompt_len` tokens is in the cache.
    pub fn new(
        prompt_index: usize,
        sample_index: usize,
        prompt_len: usize,
        seed: u64,
        queued_ms: f64,
    ) -> Self {
        Self {
            prompt_index,
            sample_index,
            cache_len: prompt_len,
            token_ids: Vec::new(),
            logprobs: Vec::new(),
            tool_mask: Vec::new(),
            tool_calls: 0,
            tool_errors: 0,
            tool_ms: 0.0,
            segment_start: 0,
            rng: sequence_rng(seed, prompt_index, sample_index),
            phase: Phase::Decoding,
            queued_ms,
            admitted: Instant::now(),
        }
    }

    /// The newest token (fed to the model at the next step).
    pub fn last_token(&self) -> u32 {
        *self
            .token_ids
            .last()
            .expect("a live sequence has sampled at least one token")
    }

    /// Appends tool-output tokens (no log-prob, tool mask set).
    pub fn push_tool_tokens(&mut self, tokens: &[u32]) {
        self.token_ids.extend_from_slice(tokens);
        self.logprobs.extend(tokens.iter().map(|_| None));
        self.tool_mask.extend(tokens.iter().map(|_| true));
        self.segment_start = self.token_ids.len();
    }

    /// Whether it is done.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// The finished completion (text decoded when a tokenizer is given).
    pub fn into_completion(self, tokenizer: Option<&Tokenizer>) -> Result<Completion> {
        let Phase::Finished(finish_reason) = self.phase else {
            return Err(Error::Generation(format!(
                "prompt {} sample {} is not finished",
                self.prompt_index, self.sample_index
            )));
        };
        let text = tokenizer
            .map(|t| t.decode(&self.token_ids, true))
            .transpose()?;
        Ok(Completion {
            sample_index: self.sample_index,
            token_ids: self.token_ids,
            logprobs: self.logprobs,
            tool_mask: self.tool_mask,
            finish_reason,
            tool_calls: self.tool_calls,
            tool_errors: self.tool_errors,
            tool_ms: self.tool_ms,
            text,
            timing: CompletionTiming {
                queued_ms: self.queued_ms,
                generation_ms: self.admitted.elapsed().as_secs_f64() * 1e3,
            },
        })
    }
}

/// What to do after a sampled token.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Keep decoding.
    Continue,
    /// Execute this program and append its output.
    ToolCall(String),
}

/// The stop and tool rules of one request, resolved against the tokenizer and model config.
#[derive(Debug)]
pub struct Rules {
    /// Temperature and truncation of every draw.
    pub sampler: SamplerSettings,
    /// Most completion tokens.
    pub max_new_tokens: usize,
    stop_tokens: HashSet<u32>,
    /// Stop strings, and the tool trigger as the last pattern when tools are on.
    patterns: StopStrings,
    tools: bool,
    max_tool_calls: usize,
}

impl Rules {
    /// Resolves `params`: default stop tokens, patterns, and whether tool calls are possible.
    pub fn new(
        params: &SamplingParams,
        tokenizer: Option<&Tokenizer>,
        config: &Qwen2Config,
        tools: bool,
    ) -> Result<Self> {
        let stop_tokens = match &params.stop_token_ids {
            Some(ids) => ids.iter().copied().collect(),
            None => tokenizer
                .and_then(Tokenizer::eos_token_id)
                .into_iter()
                .chain(config.eos_token_ids.iter().copied())
                .collect(),
        };
        if tokenizer.is_none() && !params.stop_strings.is_empty() {
            return Err(Error::Input(format!(
                "stop strings {:?} need a tokenizer (tokenizer.json in the model directory)",
                params.stop_strings
            )));
        }
        if tokenizer.is_none() && tools {
            return Err(Error::Input(
                "tool calls need a tokenizer (tokenizer.json in the model directory)".into(),
            ));
        }
        let mut patterns = params.stop_strings.clone();
        if tools {
            patterns.push(TOOL_CALL_TRIGGER.to_string());
        }
        Ok(Self {
            sampler: SamplerSettings {
                temperature: params.temperature,
                top_k: params.top_k,
                top_p: params.top_p,
            },
            max_new_tokens: params.max_new_tokens,
            stop_tokens,
            patterns: StopStrings::new(patterns),
            tools,
            max_tool_calls: params.max_tool_calls,
        })
    }

    /// Appends a sampled token to `seq` and decides what follows; a stop sets `seq.phase`.
    pub fn after_sample(
        &self,
        seq: &mut Sequence,
        sampled: SampledToken,
        tokenizer: Option<&Tokenizer>,
    ) -> Result<Next> {
        seq.token_ids.push(sampled.token);
        seq.logprobs.push(Some(sampled.logprob));
        seq.tool_mask.push(false);
        if self.stop_tokens.contains(&sampled.token) {
            seq.phase = Phase::Finished(FinishReason::StopToken);
            return Ok(Next::Continue);
        }
        if let Some(tokenizer) = tokenizer.filter(|_| !self.patterns.is_empty()) {
            if let Some(pattern) = self.patterns.completed_by_last(tokenizer, &seq.token_ids)? {
                let is_trigger = self.tools && pattern == self.patterns.patterns().len() - 1;
                if !is_trigger {
                    seq.phase = Phase::Finished(FinishReason::StopString);
                    return Ok(Next::Continue);
                }
                return self.tool_call(seq, tokenizer);
            }
        }
        if seq.token_ids.len() >= self.max_new_tokens {
            seq.phase = Phase::Finished(FinishReason::Length);
        }
        Ok(Next::Continue)
    }

    /// The trigger was sampled: a tool call if the segment asks for one and the limits allow.
    fn tool_call(&self, seq: &mut Sequence, tokenizer: &Tokenizer) -> Result<Next> {
        let segment = tokenizer.decode(&seq.token_ids[seq.segment_start..], false)?;
        let before_trigger = &segment[..segment.rfind(TOOL_CALL_TRIGGER).unwrap_or(segment.len())];
        let finish = if !asks_for_tool_call(before_trigger) {
            Some(FinishReason::StopString)
        } else if seq.tool_calls >= self.max_tool_calls {
            Some(FinishReason::ToolCallLimit)
        } else if seq.token_ids.len() >= self.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        if let Some(reason) = finish {
            seq.phase = Phase::Finished(reason);
            return Ok(Next::Continue);
        }
        let text = tokenizer.decode(&seq.token_ids, false)?;
        let cut = text.rfind(TOOL_CALL_TRIGGER).unwrap_or(text.len());
        seq.tool_calls += 1;
        seq.phase = Phase::AwaitingTool;
        Ok(Next::ToolCall(extract_program(text[..cut].trim_end())))
    }

    /// The text after the last trigger in `seq`'s completion (what the model wrote past it).
    pub fn trigger_tail(seq: &Sequence, tokenizer: &Tokenizer) -> Result<String> {
        let text = tokenizer.decode(&seq.token_ids[seq.segment_start..], false)?;
        Ok(text.rfind(TOOL_CALL_TRIGGER).map_or(String::new(), |at| {
            text[at + TOOL_CALL_TRIGGER.len()..].to_string()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_differ_by_prompt_and_sample_and_repeat_by_seed() {
        let draw = |seed, p, s| sequence_rng(seed, p, s).random::<u64>();
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        let all = [
            draw(1, 2, 3),
            draw(1, 3, 2),
            draw(1, 2, 4),
            draw(2, 2, 3),
            draw(1, 0, 0),
        ];
        let distinct: HashSet<u64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
    }
}
