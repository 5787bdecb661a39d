//! SFT candidates pooled across rounds: a round's kept conversations join those of the rounds
//! before it, exact duplicates dropped, so that the round fine-tunes on all of them (the report
//! keeps its evolved SFT data across rounds).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mathrl_learners::sft_data::{load_conversations, Conversation};

/// `earlier`, then the conversations of `new` not seen before, in order; a conversation seen
/// twice (same turns, same texts) is kept once, at its first place.
pub fn pooled(earlier: &[Conversation], new: &[Conversation]) -> Vec<Conversation> {
    let mut seen = HashSet::new();
    earlier
        .iter()
        .chain(new)
        .filter(|c| seen.insert(key(c)))
        .cloned()
        .collect()
}

/// The identity of a conversation: its turns as JSON.
fn key(conversation: &Conversation) -> String {
    serde_json::to_string(&conversation.messages).unwrap_or_default()
}

/// The kept-data files of an `sft-data-evolution` run in `dir`, in round order
/// (`round-1/data.jsonl`, `round-2/data.jsonl`, … up to the first missing one).
pub fn evolution_data_files(dir: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|round| dir.join(format!("round-{round}")).join("data.jsonl"))
        .take_while(|path| path.is_file())
        .collect()
}

/// The pool after one more round: the conversations of `earlier` (a pool file, when there is
/// one) followed by those of `new_files`, deduplicated.
pub fn extend_pool(earlier: Option<&Path>, new_files: &[PathBuf]) -> Result<Vec<Conversation>> {
    let mut pool = match earlier {
        Some(path) => load_conversations(path)
            .with_context(|| format!("reading the earlier rounds' pool {}", path.display()))?,
        None => Vec::new(),
    };
    for path in new_files {
        let new = load_conversations(path)
            .with_context(|| format!("reading the round's candidates {}", path.display()))?;
        pool = pooled(&pool, &new);
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrl::tokenizer::ChatMessage;

    fn conversation(question: &str, answer: &str) -> Conversation {
        Conversation {
            messages: vec![
                ChatMessage::new("user", question),
                ChatMessage::new("assistant", answer),
            ],
        }
    }

    #[test]
    fn the_pool_keeps_earlier_rounds_first_and_each_conversation_once() {
        let (a, b, c) = (
            conversation("1+1", "\\boxed{2}"),
            conversation("2+2", "\\boxed{4}"),
            conversation("1+1", "two: \\boxed{2}"),
        );
        let pool = pooled(&[a.clone(), b.clone()], &[c.clone(), a.clone(), c.clone()]);
        assert_eq!(pool, vec![a.clone(), b.clone(), c.clone()]);
        // The same question with the same answer in another role is another conversation.
        let d = Conversation {
            messages: vec![ChatMessage::new("system", "1+1"), a.messages[1].clone()],
        };
        assert_eq!(
            pooled(std::slice::from_ref(&a), std::slice::from_ref(&d)),
            vec![a, d]
        );
    }

    #[test]
    fn a_pool_file_grows_by_the_rounds_data_files_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |path: &Path, lines: &[&str]| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, lines.join("\n")).unwrap();
        };
        let line = |q: &str| {
            format!(
                r#"{{"messages": [{{"role": "user", "content": "{q}"}}, {{"role": "assistant", "content": "\\boxed{{1}}"}}]}}"#
            )
        };
        let earlier = tmp.path().join("round-1/candidates.jsonl");
        write(&earlier, &[&line("a"), &line("b")]);
        let stage = tmp.path().join("round-2/evolution");
        write(&stage.join("round-1/data.jsonl"), &[&line("b"), &line("c")]);
        write(&stage.join("round-2/data.jsonl"), &[&line("d")]);
        write(&stage.join("round-4/data.jsonl"), &[&line("e")]);
        let files = evolution_data_files(&stage);
        assert_eq!(files.len(), 2, "round-4 follows a missing round-3");
        let pool = extend_pool(Some(&earlier), &files).unwrap();
        let questions: Vec<&str> = pool
            .iter()
            .map(|c| c.messages[0].content.as_str())
            .collect();
        assert_eq!(questions, ["a", "b", "c", "d"]);
        let err = extend_pool(Some(&tmp.path().join("none.jsonl")), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("none.jsonl"), "{err:#}");
    }
}
