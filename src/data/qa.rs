//! Questions with their gold answers: the one record that RL prompts, RM retraining, SFT-data
//! evolution, synthesis and evaluation all carry, and the loader of `{"question", "answer"}` JSONL.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::jsonl::read_jsonl_numbered;
use crate::data::procedural::Problem;
use crate::{Error, Result};

/// One question with its gold answer, and where it came from.
///
/// Written to JSONL as `{"question": .., "answer": ..}`; the other fields are left out when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QaRecord {
    /// The question, as the user turn (the chat template is applied before generation).
    pub question: String,
    /// The gold answer as the data stores it (before normalisation); `None` when it has none.
    #[serde(rename = "answer", skip_serializing_if = "Option::is_none")]
    pub gold: Option<String>,
    /// The data set it belongs to, for the checker's extraction rules; `None` for no named set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// A stable id, used in reports and fault records; empty when the data gives none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// 1-based line of the question in the file it was read from; 0 when it was not read.
    #[serde(skip)]
    pub line: usize,
}

impl QaRecord {
    /// A question with its gold answer, of no named data set.
    pub fn new(question: impl Into<String>, gold: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            gold: Some(gold.into()),
            ..Self::default()
        }
    }

    /// The gold answer, or `""` when there is none (which no answer checks against).
    pub fn gold_or_empty(&self) -> &str {
        self.gold.as_deref().unwrap_or_default()
    }
}

impl From<&Problem> for QaRecord {
    fn from(p: &Problem) -> Self {
        Self::new(p.question.clone(), p.answer.clone())
    }
}

/// Whether every line of a QA file must carry a gold answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoldAnswers {
    /// RL prompts and RM retraining: a line without a usable answer is an error.
    Required,
    /// SFT-data evolution and synthesis: a line may leave `answer` out (or null).
    Optional,
}

/// Why one line is not a QA record.
enum BadLine {
    NoQuestion,
    BadAnswer(Value),
}

/// Reads QA JSONL: one `{"question"|"problem": .., "answer"|"gold": ..}` object per non-blank
/// line (strings, or numbers as written); each record keeps its line. Errors name the file and
/// line.
pub fn load_qa(path: &Path, gold: GoldAnswers) -> Result<Vec<QaRecord>> {
    read_jsonl_numbered::<Value>(path)?
        .into_iter()
        .map(|(line, value)| {
            let bad =
                |message: String| Error::Input(format!("{}:{line}: {message}", path.display()));
            match (qa_of(&value), gold) {
                (Ok(record), GoldAnswers::Optional) => Ok(QaRecord { line, ..record }),
                (Ok(record), GoldAnswers::Required) if record.gold.is_some() => {
                    Ok(QaRecord { line, ..record })
                }
                (_, GoldAnswers::Required) => {
                    Err(bad("expected string fields `question` and `answer`".into()))
                }
                (Err(BadLine::NoQuestion), GoldAnswers::Optional) => {
                    Err(bad("missing string field `question`".into()))
                }
                (Err(BadLine::BadAnswer(other)), GoldAnswers::Optional) => Err(bad(format!(
                    "`answer` must be a string or number, found {other}"
                ))),
            }
        })
        .collect()
}

/// The record of one line: the first of `question`/`problem` that is text, and `answer` (else
/// `gold`), absent or null meaning no gold.
fn qa_of(value: &Value) -> std::result::Result<QaRecord, BadLine> {
    let question = ["question", "problem"]
        .iter()
        .find_map(|key| value.get(*key).and_then(text))
        .ok_or(BadLine::NoQuestion)?;
    let gold = match value.get("answer").or_else(|| value.get("gold")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(text(v).ok_or_else(|| BadLine::BadAnswer(v.clone()))?),
    };
    Ok(QaRecord {
        question,
        gold,
        ..QaRecord::default()
    })
}

/// A string, or a number as JSON writes it.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("qa.jsonl");
        std::fs::write(&path, text).expect("written");
        (dir, path)
    }

    #[test]
    fn reads_questions_answers_and_their_lines() {
        let (_dir, path) = file(concat!(
            "{\"question\": \"1+1?\", \"answer\": \"2\"}\n",
            "\n",
            "{\"problem\": \"2+2?\", \"gold\": 4}\n",
            "{\"question\": \"open?\"}\n",
        ));
        let records = load_qa(&path, GoldAnswers::Optional).expect("read");
        let summary: Vec<(usize, &str, Option<&str>)> = records
            .iter()
            .map(|r| (r.line, r.question.as_str(), r.gold.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "1+1?", Some("2")),
                (3, "2+2?", Some("4")),
                (4, "open?", None)
            ]
        );
        let message = load_qa(&path, GoldAnswers::Required)
            .expect_err("line 4 has no answer")
            .to_string();
        assert!(
            message.ends_with("qa.jsonl:4: expected string fields `question` and `answer`"),
            "{message}"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let (_dir, path) = file("{\"answer\": \"2\"}\n");
        let message = load_qa(&path, GoldAnswers::Optional)
            .expect_err("no question")
            .to_string();
        assert!(
            message.ends_with("qa.jsonl:1: missing string field `question`"),
            "{message}"
        );
        let (_dir, path) = file("{\"question\": \"q\"}\n{\"question\": \"q\", \"answer\": [1]}\n");
        let message = load_qa(&path, GoldAnswers::Optional)
            .expect_err("a list is no answer")
            .to_string();
        assert!(
            message.ends_with("qa.jsonl:2: `answer` must be a string or number, found [1]"),
            "{message}"
        );
    }

    #[test]
    fn written_as_question_and_answer_only() {
        let record = QaRecord {
            line: 7,
            ..QaRecord::new("q", "1")
        };
        let json = serde_json::to_string(&record).expect("serialises");
        assert_eq!(json, r#"{"question":"q","answer":"1"}"#);
        let back: QaRecord = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, QaRecord::new("q", "1"));
    }
}
