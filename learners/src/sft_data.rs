//! SFT data: conversations in the `{"messages": [{"role", "content"}, ...]}` JSONL format that TRL
//! and LLaMA-Factory read, tokenized through the chat template with a mask of the assistant
//! tokens, and a seeded, resumable loader.
//!
//! Assistant spans are found by rendering prefixes of the conversation: the tokens of an
//! assistant turn run from the end of `render(messages[..i], add_generation_prompt)` to the end
//! of `render(messages[..=i])`, which covers its content and its end-of-turn tokens (the model
//! must learn to stop). Each prefix's tokens must be a true prefix of the whole conversation's
//! tokens; a template or tokenizer for which that fails is reported, not silently mis-masked.
//!
//! Tool-integrated trajectories keep their tool turns inside the assistant text, as the engine
//! wrote them: the output block after each "```output" is what the sandbox printed, not what the
//! model wrote, so its tokens are context, not targets (as in the RL learner's tool mask).

use std::path::Path;

use mathrl::generation::tool_output_spans;
use mathrl::{ChatMessage, Tokenizer};
use serde::Deserialize;

use crate::checkpoint::DataCursor;
use crate::rng::SeededRng;
use crate::{Error, Result};

/// One training conversation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Conversation {
    /// The turns, in order.
    pub messages: Vec<ChatMessage>,
}

/// Reads a JSONL file of conversations; blank lines are skipped, and an error names the file and
/// the 1-based line.
pub fn load_conversations(path: impl AsRef<Path>) -> Result<Vec<Conversation>> {
    let path = path.as_ref();
    let mut out = Vec::new();
    for (line, text) in mathrl::data::read_jsonl_lines(path)? {
        let bad = |message: String| Error::Data {
            path: path.to_path_buf(),
            line,
            message,
        };
        let conversation: Conversation = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "expected {{\"messages\": [{{\"role\", \"content\"}}]}}: {e}"
            ))
        })?;
        if !conversation.messages.iter().any(|m| m.role == "assistant") {
            return Err(bad("the conversation has no assistant message".into()));
        }
        if let Some(m) = conversation
            .messages
            .iter()
            .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool"))
        {
            return Err(bad(format!(
                "unknown role `{}` (expected system, user, assistant or tool)",
                m.role
            )));
        }
        out.push(conversation);
    }
    Ok(out)
}

/// A tokenized conversation: `assistant_mask[t]` says whether token t is an assistant token,
/// i.e. a target the loss is taken on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    /// Token ids of the whole rendered conversation.
    pub input_ids: Vec<u32>,
    /// One flag per token: part of an assistant turn.
    pub assistant_mask: Vec<bool>,
}

impl SftExample {
    /// Number of assistant (trained) tokens.
    pub fn num_assistant_tokens(&self) -> usize {
        self.assistant_mask.iter().filter(|&&m| m).count()
    }
}

/// Tokenizes `messages` through the chat template, marks the assistant tokens, and truncates to
/// `max_length` tokens (keeping the start). The error says which turn broke the prefix property.
pub fn tokenize_conversation(
    tokenizer: &Tokenizer,
    messages: &[ChatMessage],
    max_length: usize,
) -> Result<SftExample> {
    let render = |upto: usize, generation_prompt: bool| -> Result<String> {
        Ok(tokenizer.apply_chat_template(&messages[..upto], generation_prompt)?)
    };
    let text = render(messages.len(), false)?;
    let ids = tokenizer.encode(&text)?;
    let mut mask = vec![false; ids.len()];
    let prefix_len = |prefix: &str, what: &str, turn: usize| -> Result<usize> {
        let prefix = tokenizer.encode(prefix)?;
        if ids.starts_with(&prefix) {
            Ok(prefix.len())
        } else {
            Err(Error::Input(format!(
                "chat template: the tokens of messages[..{turn}] {what} are not a prefix of the \
                 whole conversation's tokens, so assistant turn {turn} cannot be located"
            )))
        }
    };
    // Where each token starts in `text`: needed only for turns with tool output, found once.
    let mut offsets: Option<Vec<(usize, usize)>> = None;
    for (turn, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let before = render(turn, true)?;
        let start = prefix_len(&before, "with a generation prompt", turn)?;
        let end = prefix_len(&render(turn + 1, false)?, "through this turn", turn)?;
        let turn_tokens = start..end.max(start);
        mask[turn_tokens.clone()].fill(true);
        let spans = tool_output_spans(&message.content);
        if spans.is_empty() {
            continue;
        }
        let offsets = match &mut offsets {
            Some(offsets) => offsets,
            None => offsets.insert(token_offsets(tokenizer, &text, &ids)?),
        };
        // The tool output's tokens are context: the sandbox wrote them, not the model.
        let base = content_start(&text, &before, &message.content, turn)?;
        for t in turn_tokens {
            let token_start = offsets[t].0;
            if spans
                .iter()
                .any(|span| (base + span.start..base + span.end).contains(&token_start))
            {
                mask[t] = false;
            }
        }
    }
    let keep = ids.len().min(max_length);
    Ok(SftExample {
        input_ids: ids[..keep].to_vec(),
        assistant_mask: mask[..keep].to_vec(),
    })
}

/// The byte offsets of `ids`, the tokens of `text`, within it.
fn token_offsets(tokenizer: &Tokenizer, text: &str, ids: &[u32]) -> Result<Vec<(usize, usize)>> {
    let encoding = tokenizer
        .inner()
        .encode(text, false)
        .map_err(|e| Error::Input(format!("encoding the conversation: {e}")))?;
    if encoding.get_ids() != ids {
        return Err(Error::Input(
            "the conversation's tokens with offsets differ from its tokens, so its tool output \
             cannot be located"
                .into(),
        ));
    }
    Ok(encoding.get_offsets().to_vec())
}

/// Where assistant turn `turn`'s `content` starts in the rendered conversation `text`, whose
/// turns before it render as `before`.
fn content_start(text: &str, before: &str, content: &str, turn: usize) -> Result<usize> {
    text.strip_prefix(before)
        .and_then(|rest| rest.find(content))
        .map(|at| before.len() + at)
        .ok_or_else(|| {
            Error::Input(format!(
                "chat template: assistant turn {turn} does not appear verbatim in the rendered \
                 conversation, so its tool output cannot be masked"
            ))
        })
}

/// Rows of examples, each row a list of segments: one example per row, or several packed.
pub fn pack(examples: &[&SftExample], max_length: usize, packing: bool) -> Vec<Vec<usize>> {
    if !packing {
        return (0..examples.len()).map(|i| vec![i]).collect();
    }
    // Greedy first fit in the given order, so the packing is deterministic.
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, example) in examples.iter().enumerate() {
        let len = example.input_ids.len();
        match rows.iter_mut().find(|(used, _)| used + len <= max_length) {
            Some((used, members)) => {
                *used += len;
                members.push(i);
            }
            None => rows.push((len, vec![i])),
        }
    }
    rows.into_iter().map(|(_, members)| members).collect()
}

/// Walks a data set in seeded shuffled epochs; its position is a [`DataCursor`], so a resumed
/// run continues with exactly the examples the uninterrupted run would have seen.
#[derive(Debug, Clone)]
pub struct ShuffledLoader {
    len: usize,
    seed: u64,
    cursor: DataCursor,
    order: Vec<usize>,
}

impl ShuffledLoader {
    /// A loader over `len` items, shuffled per epoch from `seed`.
    pub fn new(len: usize, seed: u64) -> Self {
        let mut loader = Self {
            len,
            seed,
            cursor: DataCursor::default(),
            order: Vec::new(),
        };
        loader.shuffle();
        loader
    }

    /// Epoch `e`'s order depends only on (seed, e).
    fn shuffle(&mut self) {
        self.order = (0..self.len).collect();
        let mut rng = SeededRng::new(self.seed ^ self.cursor.epoch.wrapping_mul(0x9e37_79b9));
        rng.shuffle(&mut self.order);
    }

    /// The next `n` item indices, crossing into the next epoch when this one runs out.
    pub fn next_indices(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n && self.len > 0 {
            if self.cursor.position as usize >= self.len {
                self.cursor.epoch += 1;
                self.cursor.position = 0;
                self.shuffle();
            }
            out.push(self.order[self.cursor.position as usize]);
            self.cursor.position += 1;
        }
        out
    }

    /// Where the loader stands.
    pub fn cursor(&self) -> DataCursor {
        self.cursor
    }

    /// Continues from a stored cursor.
    pub fn seek(&mut self, cursor: DataCursor) {
        self.cursor = cursor;
        self.shuffle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/qwen2.5-tokenizer"
        ))
        .unwrap()
    }

    /// The text of each maximal run of assistant (trained) tokens.
    fn trained_runs(tok: &Tokenizer, ex: &SftExample) -> Vec<String> {
        let mut runs = Vec::new();
        let mut t = 0;
        while t < ex.input_ids.len() {
            if ex.assistant_mask[t] {
                let start = t;
                while t < ex.input_ids.len() && ex.assistant_mask[t] {
                    t += 1;
                }
                runs.push(tok.decode(&ex.input_ids[start..t], false).unwrap());
            }
            t += 1;
        }
        runs
    }

    #[test]
    fn assistant_tokens_are_exactly_the_assistant_turns() {
        let tok = tokenizer();
        let messages = vec![
            ChatMessage::new("user", "What is 2+3?"),
            ChatMessage::new("assistant", "2+3 = \\boxed{5}"),
            ChatMessage::new("user", "And 4+4?"),
            ChatMessage::new("assistant", "\\boxed{8}"),
        ];
        let ex = tokenize_conversation(&tok, &messages, 4096).unwrap();
        let spans = trained_runs(&tok, &ex);
        assert_eq!(
            spans,
            ["2+3 = \\boxed{5}<|im_end|>\n", "\\boxed{8}<|im_end|>\n"]
        );
        // Truncation keeps the start and its mask.
        let short = tokenize_conversation(&tok, &messages, 10).unwrap();
        assert_eq!(short.input_ids, ex.input_ids[..10]);
        assert_eq!(short.num_assistant_tokens(), 0);
    }

    #[test]
    fn tool_output_inside_an_assistant_turn_is_context_not_target() {
        let tok = tokenizer();
        let response =
            "Let me compute.\n```python\nprint(2+3)\n```\n```output\n5\n```\nSo \\boxed{5}.";
        let messages = vec![
            ChatMessage::new("user", "What is 2+3?"),
            ChatMessage::new("assistant", response),
        ];
        let ex = tokenize_conversation(&tok, &messages, 4096).unwrap();
        let spans = trained_runs(&tok, &ex);
        // The model's text is trained, "```output" included (it asks for the call); the
        // sandbox's output block is not.
        assert_eq!(
            spans,
            [
                "Let me compute.\n```python\nprint(2+3)\n```\n```output",
                "So \\boxed{5}.<|im_end|>\n"
            ]
        );
    }

    #[test]
    fn loader_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(
            &path,
            "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n",
        )
        .unwrap();
        let err = load_conversations(&path).unwrap_err().to_string();
        assert!(
            err.contains("data.jsonl:3:") && err.contains("no assistant"),
            "{err}"
        );
        std::fs::write(&path, "{\"messages\": [{\"role\": \"user\"}]}\n").unwrap();
        let err = load_conversations(&path).unwrap_err().to_string();
        assert!(
            err.contains("data.jsonl:1:") && err.contains("content"),
            "{err}"
        );
        std::fs::write(
            &path,
            "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n",
        )
        .unwrap();
        let err = load_conversations(&path).unwrap_err().to_string();
        assert!(err.contains("`bot`"), "{err}");
        assert!(load_conversations(dir.path().join("absent.jsonl"))
            .unwrap_err()
            .to_string()
            .contains("absent.jsonl"));
    }

    #[test]
    fn packing_is_first_fit_within_the_length() {
        let ex = |n: usize| SftExample {
            input_ids: vec![1; n],
            assistant_mask: vec![true; n],
        };
        let examples = [ex(6), ex(5), ex(3), ex(4), ex(1)];
        let refs: Vec<&SftExample> = examples.iter().collect();
        assert_eq!(pack(&refs, 10, true), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(pack(&refs, 10, false).len(), 5);
    }

    #[test]
    fn loader_is_seeded_resumable_and_covers_each_epoch() {
        let mut a = ShuffledLoader::new(7, 3);
        let first: Vec<usize> = a.next_indices(5);
        let cursor = a.cursor();
        let rest: Vec<usize> = a.next_indices(9);
        let mut epoch0: Vec<usize> = first.iter().chain(&rest[..2]).copied().collect();
        epoch0.sort_unstable();
        assert_eq!(epoch0, (0..7).collect::<Vec<_>>());
        let mut b = ShuffledLoader::new(7, 3);
        b.seek(cursor);
        assert_eq!(b.next_indices(9), rest);
        assert_eq!(b.cursor().epoch, 1);
    }
}
