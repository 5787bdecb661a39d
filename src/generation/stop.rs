//! Stop strings, matched on the decoded text of a completion's newest tokens.
//!
//! Decoding the whole completion after every token would cost O(n²); only a window of the last
//! tokens is decoded. A string of L bytes spans at most L tokens (every byte-level token decodes
//! to at least one byte), so a window of L + 2 tokens holds any occurrence that the newest token
//! completes, plus one token of slack for a character split across tokens. An occurrence counts
//! only if it ends inside the newest token's text: earlier ones were seen at earlier steps or lie
//! in tool output.

use crate::{Result, Tokenizer};

/// Finds stop strings completed by the newest token of a completion.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    patterns: Vec<String>,
    window_tokens: usize,
}

/// Length in bytes of the longest common prefix of `a` and `b`.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

impl StopStrings {
    /// Matches any of `patterns` (none may be empty).
    pub fn new(patterns: Vec<String>) -> Self {
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        Self {
            patterns,
            window_tokens: longest + 2,
        }
    }

    /// Whether there is nothing to match.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The index of a pattern that the last token of `tokens` completes, if any (the first such
    /// pattern in order).
    pub fn completed_by_last(
        &self,
        tokenizer: &Tokenizer,
        tokens: &[u32],
    ) -> Result<Option<usize>> {
        if self.patterns.is_empty() || tokens.is_empty() {
            return Ok(None);
        }
        let start = tokens.len().saturating_sub(self.window_tokens);
        let with_last = tokenizer.decode(&tokens[start..], false)?;
        let without_last = tokenizer.decode(&tokens[start..tokens.len() - 1], false)?;
        // Bytes that were already there before the newest token (a split character may decode
        // differently once completed, hence the common prefix rather than the length).
        let old = common_prefix_len(&with_last, &without_last);
        Ok(self.patterns.iter().position(|pattern| {
            with_last
                .match_indices(pattern.as_str())
                .any(|(at, m)| at + m.len() > old)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tokenizer whose vocabulary is the printable ASCII characters, "\n", and a few
    /// multi-character tokens.
    fn tokenizer() -> Tokenizer {
        let mut vocab = serde_json::Map::new();
        let mut id = 0u32;
        for c in (32u8..127)
            .map(char::from)
            .map(String::from)
            .chain(["\n".to_string()])
        {
            vocab.insert(c, id.into());
            id += 1;
        }
        let added: Vec<serde_json::Value> = ["```output", "put\n", "<eos>"]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({"id": id + i as u32, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": *t == "<eos>"})
            })
            .collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": {"type": "Fuse"},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []}
        });
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
        Tokenizer::new(inner, &serde_json::Value::Null).unwrap()
    }

    /// Feeds `text` token by token; returns (token index, pattern index) of every match.
    fn matches(stop: &StopStrings, tok: &Tokenizer, text: &str) -> Vec<(usize, usize)> {
        let ids = tok.encode(text).unwrap();
        (1..=ids.len())
            .filter_map(|n| {
                stop.completed_by_last(tok, &ids[..n])
                    .unwrap()
                    .map(|p| (n - 1, p))
            })
            .collect()
    }

    #[test]
    fn a_string_matches_once_at_the_token_that_completes_it() {
        let tok = tokenizer();
        let stop = StopStrings::new(vec!["\n\nQuestion:".into(), "END".into()]);
        let text = "some text\n\nQuestion: more END";
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids.len(), text.len(), "one token per character");
        let end_of = |pattern: &str| text.find(pattern).unwrap() + pattern.len() - 1;
        assert_eq!(
            matches(&stop, &tok, text),
            vec![(end_of("\n\nQuestion:"), 0), (end_of("END"), 1)]
        );
        assert!(matches(&stop, &tok, "no stop here, E N D").is_empty());
    }

    #[test]
    fn a_string_ending_inside_a_multi_character_token_matches() {
        let tok = tokenizer();
        let stop = StopStrings::new(vec!["```output".into(), "out".into()]);
        // "```output" is one token; both patterns end inside it, the first listed wins.
        let ids = tok.encode("x```output").unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(stop.completed_by_last(&tok, &ids).unwrap(), Some(0));
        // "t\n" ends inside the token "put\n".
        let ids = tok.encode("ab`put\n").unwrap();
        assert_eq!(ids.len(), 4);
        let pattern = StopStrings::new(vec!["bu".into(), "t\n".into()]);
        assert_eq!(pattern.completed_by_last(&tok, &ids).unwrap(), Some(1));
    }

    #[test]
    fn occurrences_before_the_newest_token_do_not_match_again() {
        let tok = tokenizer();
        let stop = StopStrings::new(vec!["ab".into()]);
        let ids = tok.encode("abxyz").unwrap();
        assert_eq!(stop.completed_by_last(&tok, &ids[..2]).unwrap(), Some(0));
        for n in 3..=ids.len() {
            assert_eq!(
                stop.completed_by_last(&tok, &ids[..n]).unwrap(),
                None,
                "prefix of {n} tokens"
            );
        }
    }
}
