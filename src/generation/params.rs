//! `SamplingParams`: how completions are sampled, with documented defaults.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How completions are sampled. Every field has a default (see each field), so a caller sets
/// only what differs: `SamplingParams { n: 8, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Softmax temperature. 0 means greedy decoding (argmax, no randomness). Default 1.0.
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens until their probability mass reaches
    /// `top_p` (applied after top-k, as transformers and vLLM do). 1.0 (default) turns it off.
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens (ties at the boundary kept). 0 (default) = off.
    pub top_k: usize,
    /// Seed of the random streams. Each sample draws from its own stream, derived from
    /// (seed, prompt index, sample index), so results do not depend on batching or scheduling.
    /// A caller that wants fresh samples on every call (an RL loop) varies it. Default 0.
    pub seed: u64,
    /// Most tokens per completion, tool-output tokens included. Default 512.
    pub max_new_tokens: usize,
    /// Token ids that end a completion. `None` (default): the tokenizer's `eos_token` together
    /// with config.json's `eos_token_id`s; `Some(vec![])` disables stop tokens.
    pub stop_token_ids: Option<Vec<u32>>,
    /// Strings that end a completion when they appear in its decoded text (needs a tokenizer).
    /// Default none.
    pub stop_strings: Vec<String>,
    /// Completions per prompt (GRPO's group size G); they share one prefill of the prompt.
    /// Default 1.
    pub n: usize,
    /// Most tool calls per completion when the engine has a tool executor (the reference
    /// evaluation's `max_func_call`). Default 4.
    pub max_tool_calls: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            max_new_tokens: 512,
            stop_token_ids: None,
            stop_strings: Vec::new(),
            n: 1,
            max_tool_calls: 4,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_new_tokens,
            ..Self::default()
        }
    }

    /// Checks the ranges; the error names the field and its value.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::Input(format!(
                "sampling temperature must be finite and >= 0 (0 = greedy), got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Input(format!(
                "sampling top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if self.n == 0 {
            return Err(Error::Input(
                "sampling n (completions per prompt) must be at least 1".into(),
            ));
        }
        if self.max_new_tokens == 0 {
            return Err(Error::Input(
                "sampling max_new_tokens must be at least 1".into(),
            ));
        }
        if let Some(empty) = self.stop_strings.iter().position(String::is_empty) {
            return Err(Error::Input(format!("stop_strings[{empty}] is empty")));
        }
        Ok(())
    }

    /// Whether sampling is greedy (temperature 0).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_plain_sampling() {
        let p = SamplingParams::default();
        assert_eq!(
            (p.temperature, p.top_p, p.top_k, p.n, p.max_tool_calls),
            (1.0, 1.0, 0, 1, 4)
        );
        assert!(p.stop_token_ids.is_none() && p.stop_strings.is_empty());
        p.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        for (params, needle) in [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    temperature: f64::NAN,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    top_p: 1.5,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    n: 0,
                    ..Default::default()
                },
                "n (completions",
            ),
            (
                SamplingParams {
                    max_new_tokens: 0,
                    ..Default::default()
                },
                "max_new_tokens",
            ),
            (
                SamplingParams {
                    stop_strings: vec!["a".into(), String::new()],
                    ..Default::default()
                },
                "stop_strings[1]",
            ),
        ] {
            let err = params.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_when_deserialising() {
        let err = serde_json::from_str::<SamplingParams>(r#"{"temprature": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("temprature"), "{err}");
        let p: SamplingParams = serde_json::from_str(r#"{"n": 4}"#).unwrap();
        assert_eq!(p.n, 4);
        assert_eq!(p.temperature, 1.0);
    }
}
