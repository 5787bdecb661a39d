//! JSONL files: the one reader (every error names the file and line), and the writers of the
//! `{"messages": [...]}` conversations that SFT trainers read (TRL, LLaMA-Factory) and of the
//! `{"question", "answer"}` lines that the RL and evaluation recipes read.

use std::borrow::Borrow;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::procedural::Problem;
use crate::data::qa::QaRecord;
use crate::tokenizer::ChatMessage;
use crate::{Error, Result};

/// One SFT example: the question as the user turn, the worked solution as the assistant turn. No
/// system turn: the chat template adds the default one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesRecord {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
}

impl From<&Problem> for MessagesRecord {
    fn from(p: &Problem) -> Self {
        Self {
            messages: vec![
                ChatMessage::new("user", p.question.clone()),
                ChatMessage::new("assistant", p.solution.clone()),
            ],
        }
    }
}

/// Writes one JSON object per line to `path`; returns the number of lines.
pub fn write_jsonl<T: Serialize>(
    path: &Path,
    records: impl IntoIterator<Item = T>,
) -> Result<usize> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = BufWriter::new(file);
    let mut lines = 0;
    for record in records {
        serde_json::to_writer(&mut out, &record).map_err(|source| Error::Json {
            path: path.into(),
            source,
        })?;
        out.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        lines += 1;
    }
    out.flush().map_err(|e| Error::io(path, e))?;
    Ok(lines)
}

/// The non-blank lines of a JSONL file with their 1-based numbers: the one reader of JSONL
/// behind every loader, so each names the file and line the same way.
pub fn read_jsonl_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if !line.trim().is_empty() {
            lines.push((index + 1, line));
        }
    }
    Ok(lines)
}

/// Parses line `line` of `path`; the error names both, and says whether the line is not JSON at
/// all or JSON of the wrong shape.
pub fn parse_jsonl_line<T: DeserializeOwned>(path: &Path, line: usize, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not valid JSON: "
            }
            _ => "",
        };
        Error::Input(format!("{}:{line}: {what}{e}", path.display()))
    })
}

/// Reads a JSONL file, one `T` per non-blank line with its 1-based line number.
pub fn read_jsonl_numbered<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>> {
    read_jsonl_lines(path)?
        .into_iter()
        .map(|(line, text)| Ok((line, parse_jsonl_line(path, line, &text)?)))
        .collect()
}

/// Reads a JSONL file, one `T` per non-blank line; errors name the file and line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    Ok(read_jsonl_numbered(path)?
        .into_iter()
        .map(|(_, record)| record)
        .collect())
}

/// Writes problems as `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}` lines.
pub fn write_messages_jsonl<P: Borrow<Problem>>(
    path: &Path,
    problems: impl IntoIterator<Item = P>,
) -> Result<usize> {
    write_jsonl(
        path,
        problems
            .into_iter()
            .map(|p| MessagesRecord::from(p.borrow())),
    )
}

/// Writes problems as `{"question": ..., "answer": ...}` lines.
pub fn write_question_answer_jsonl<P: Borrow<Problem>>(
    path: &Path,
    problems: impl IntoIterator<Item = P>,
) -> Result<usize> {
    write_jsonl(
        path,
        problems.into_iter().map(|p| QaRecord::from(p.borrow())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::procedural::{ProceduralTask, Split, TaskConfig};

    fn problems(n: usize) -> Vec<Problem> {
        let task = ProceduralTask::new(TaskConfig::default()).expect("the default config is valid");
        task.problems(Split::Train).take(n).collect()
    }

    #[test]
    fn messages_lines_hold_a_user_and_an_assistant_turn() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("sft.jsonl");
        let problems = problems(20);
        assert_eq!(write_messages_jsonl(&path, &problems).expect("written"), 20);
        let text = std::fs::read_to_string(&path).expect("readable");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
        assert_eq!(
            first,
            serde_json::json!({"messages": [
                {"role": "user", "content": problems[0].question},
                {"role": "assistant", "content": problems[0].solution},
            ]})
        );
        let back: Vec<MessagesRecord> = read_jsonl(&path).expect("read back");
        assert_eq!(back.len(), 20);
        assert_eq!(back[19].messages[1].content, problems[19].solution);
    }

    #[test]
    fn question_answer_lines_round_trip() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("rl.jsonl");
        let problems = problems(10);
        write_question_answer_jsonl(&path, problems.iter()).expect("written");
        let back: Vec<QaRecord> = read_jsonl(&path).expect("read back");
        let expected: Vec<QaRecord> = problems.iter().map(Into::into).collect();
        assert_eq!(back, expected);
        let line = std::fs::read_to_string(&path).expect("readable");
        assert!(line.starts_with("{\"question\":\""), "{line}");
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("bad.jsonl");
        std::fs::write(
            &path,
            "{\"question\": \"q\", \"answer\": \"1\"}\n\n{\"question\": 3}\n",
        )
        .expect("written");
        let message = read_jsonl::<QaRecord>(&path)
            .expect_err("refused")
            .to_string();
        assert!(message.contains("bad.jsonl:3:"), "{message}");
    }

    #[test]
    fn lines_keep_their_numbers_and_broken_json_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"a\": 1}\n\n{\"a\": 2}\n").expect("written");
        let rows: Vec<(usize, serde_json::Value)> = read_jsonl_numbered(&path).expect("read");
        assert_eq!(rows.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 3]);
        std::fs::write(&path, "{\"a\": 1}\n\n{\"a\": 2\n").expect("written");
        let message = read_jsonl_numbered::<serde_json::Value>(&path)
            .expect_err("line 3 is cut short")
            .to_string();
        assert!(message.contains("x.jsonl:3: not valid JSON: "), "{message}");
    }
}
