//! Questions with their gold answers: the one record that RL prompts, RM retraining, SFT-data
//! evolution, synthesis and evaluation all carry, and the loader of `{"question", "answer"}` JSONL.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::jsonl::read_jsonl_numbered;
use crate::data::parquet::{dataset_of_source, is_parquet, read_parquet_rows};
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

/// Keys of the question, in the order they are tried: plain records, MATH, TRL/verl.
pub const QUESTION_KEYS: [&str; 3] = ["question", "problem", "prompt"];
/// Pointers to the gold answer, in the order they are tried: plain records, TRL
/// (`solution`, `ground_truth`) and verl (`reward_model.ground_truth`).
const GOLD_POINTERS: [&str; 5] = [
    "/answer",
    "/gold",
    "/solution",
    "/ground_truth",
    "/reward_model/ground_truth",
];

/// Reads QA JSONL: one object per non-blank line with the question in `question`, `problem` or
/// `prompt` (text, or a chat `messages` list: its last user turn) and the gold answer in
/// `answer`, `gold`, `solution`, `ground_truth` or `reward_model.ground_truth` (text or a
/// number), reduced to its final answer ([`final_answer`]); an optional `dataset` picks the
/// checker's rules, else a verl `data_source` the checker knows ([`dataset_of_source`]). A
/// `.parquet` file is read row by row in verl's layout, under the same rules. Each record keeps
/// its line (or row). Errors name the file and line (or row).
pub fn load_qa(path: &Path, gold: GoldAnswers) -> Result<Vec<QaRecord>> {
    let unit = RecordUnit::of(path);
    read_qa_values(path)?
        .into_iter()
        .map(|(line, value)| {
            let bad =
                |message: String| Error::Input(format!("{}: {message}", unit.place(path, line)));
            match (qa_of(&value), gold) {
                (Ok(record), GoldAnswers::Optional) => Ok(QaRecord { line, ..record }),
                (Ok(record), GoldAnswers::Required) if record.gold.is_some() => {
                    Ok(QaRecord { line, ..record })
                }
                (Ok(_), GoldAnswers::Required) => {
                    Err(bad(format!("no gold answer (looked for {})", gold_keys())))
                }
                (Err(BadLine::NoQuestion), _) => Err(bad(format!(
                    "no question (looked for text or a messages list in {})",
                    QUESTION_KEYS.join(", ")
                ))),
                (Err(BadLine::BadAnswer(other)), _) => Err(bad(format!(
                    "the gold answer must be a string or number, found {other}"
                ))),
            }
        })
        .collect()
}

/// The gold keys as a user writes them (`reward_model.ground_truth`).
fn gold_keys() -> String {
    GOLD_POINTERS
        .iter()
        .map(|p| p.trim_start_matches('/').replace('/', "."))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The JSON objects of a QA file with their 1-based line (JSONL) or row (`.parquet`) numbers.
fn read_qa_values(path: &Path) -> Result<Vec<(usize, Value)>> {
    if is_parquet(path) {
        read_parquet_rows(path)
    } else {
        read_jsonl_numbered::<Value>(path)
    }
}

/// What a QA file is made of: lines of JSONL or rows of Parquet, for messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordUnit {
    /// Lines of a JSONL file.
    #[default]
    Line,
    /// Rows of a Parquet file.
    Row,
}

impl RecordUnit {
    /// The unit of the file at `path`, by its extension.
    pub fn of(path: &Path) -> Self {
        if is_parquet(path) {
            Self::Row
        } else {
            Self::Line
        }
    }

    /// `line` or `row`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Row => "row",
        }
    }

    /// Where record `n` is: `file:7` for a line (as editors take it), `file: row 7` for a row.
    fn place(self, path: &Path, n: usize) -> String {
        match self {
            Self::Line => format!("{}:{n}", path.display()),
            Self::Row => format!("{}: row {n}", path.display()),
        }
    }
}

/// What a loader kept and skipped of a QA file.
#[derive(Debug, Clone, Default)]
pub struct QaLoad {
    /// The records with a question and a gold answer.
    pub records: Vec<QaRecord>,
    /// Whether the numbers below are lines (JSONL) or rows (Parquet).
    pub unit: RecordUnit,
    /// Non-blank lines (or rows) read.
    pub lines: usize,
    /// Lines (or rows) skipped: (number, why).
    pub skipped: Vec<(usize, String)>,
    /// Lines (or rows) whose gold has no final answer the loader could find (a worked solution
    /// without `####` or `\boxed{}`): kept, but no completion is likely to match them.
    pub unparsed_golds: Vec<usize>,
}

impl QaLoad {
    /// `read 120 lines: 118 prompts, 2 skipped (line 3: no question; ...), 0 golds without a
    /// final answer`.
    pub fn describe(&self) -> String {
        let unit = self.unit.name();
        let mut text = format!(
            "read {} {unit}s: {} prompts, {} skipped",
            self.lines,
            self.records.len(),
            self.skipped.len()
        );
        if !self.skipped.is_empty() {
            let first: Vec<String> = self
                .skipped
                .iter()
                .take(3)
                .map(|(line, why)| format!("{unit} {line}: {why}"))
                .collect();
            let more = if self.skipped.len() > 3 { "; ..." } else { "" };
            text.push_str(&format!(" ({}{more})", first.join("; ")));
        }
        text.push_str(&format!(
            ", {} golds without a final answer",
            self.unparsed_golds.len()
        ));
        if let Some(line) = self.unparsed_golds.first() {
            text.push_str(&format!(" (first: {unit} {line})"));
        }
        text
    }
}

/// Reads QA JSONL like [`load_qa`] with gold answers required, but skips (and reports) the
/// lines that are not records instead of failing on the first; `dataset` is the data set of
/// lines that name none. A file of nothing but bad lines is an error. A `.parquet` file (verl's
/// layout) is read row by row under the same rules.
pub fn load_qa_report(path: &Path, dataset: Option<&str>) -> Result<QaLoad> {
    let mut load = QaLoad {
        unit: RecordUnit::of(path),
        ..QaLoad::default()
    };
    for (line, value) in read_qa_values(path)? {
        load.lines += 1;
        match qa_of(&value) {
            Ok(record) if record.gold.is_some() => {
                if !has_final_answer(&value) {
                    load.unparsed_golds.push(line);
                }
                let dataset = record.dataset.clone().or(dataset.map(str::to_string));
                load.records.push(QaRecord {
                    line,
                    dataset,
                    ..record
                });
            }
            Ok(_) => load.skipped.push((line, "no gold answer".into())),
            Err(BadLine::NoQuestion) => load.skipped.push((line, "no question".into())),
            Err(BadLine::BadAnswer(v)) => load
                .skipped
                .push((line, format!("gold answer {v} is not text"))),
        }
    }
    if load.records.is_empty() {
        return Err(Error::Input(format!(
            "{}: no {} has a question and a gold answer ({})",
            path.display(),
            load.unit.name(),
            load.describe()
        )));
    }
    Ok(load)
}

/// The record of one line (see [`load_qa`]); absent or null gold means no gold.
fn qa_of(value: &Value) -> std::result::Result<QaRecord, BadLine> {
    let question = QUESTION_KEYS
        .iter()
        .find_map(|key| value.get(*key).and_then(question_text))
        .ok_or(BadLine::NoQuestion)?;
    let gold = match GOLD_POINTERS.iter().find_map(|p| value.pointer(p)) {
        None | Some(Value::Null) => None,
        Some(v) => Some(final_answer(
            &text(v).ok_or_else(|| BadLine::BadAnswer(v.clone()))?,
        )),
    };
    let dataset = value
        .get("dataset")
        .and_then(Value::as_str)
        .or_else(|| {
            value
                .get("data_source")
                .and_then(Value::as_str)
                .and_then(dataset_of_source)
        })
        .map(str::to_string);
    Ok(QaRecord {
        question,
        gold,
        dataset,
        ..QaRecord::default()
    })
}

/// A question: text, or a chat messages list, of which the last user turn is the question.
fn question_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(messages) => messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Whether the line's gold is a final answer: short, or marked by `####` or `\boxed{}`.
fn has_final_answer(value: &Value) -> bool {
    let Some(raw) = GOLD_POINTERS
        .iter()
        .find_map(|p| value.pointer(p))
        .and_then(text)
    else {
        return false;
    };
    raw.contains("####") || raw.contains("\\boxed") || raw.split_whitespace().count() <= 12
}

/// The final answer of a stored gold: what follows the last `####` (GSM8K's worked solutions),
/// else the content of the last `\boxed{...}` (MATH's solutions), else the text as it is.
pub fn final_answer(gold: &str) -> String {
    if let Some((_, tail)) = gold.rsplit_once("####") {
        return tail.trim().to_string();
    }
    last_boxed(gold).unwrap_or(gold).to_string()
}

/// The content of the last `\boxed{...}` of `text`, braces matched.
fn last_boxed(text: &str) -> Option<&str> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + i]);
                }
            }
            _ => {}
        }
    }
    None
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
            message.ends_with("qa.jsonl:4: no gold answer (looked for answer, gold, solution, ground_truth, reward_model.ground_truth)"),
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
            message.ends_with(
                "qa.jsonl:1: no question (looked for text or a messages list in question, problem, prompt)"
            ),
            "{message}"
        );
        let (_dir, path) = file("{\"question\": \"q\"}\n{\"question\": \"q\", \"answer\": [1]}\n");
        let message = load_qa(&path, GoldAnswers::Optional)
            .expect_err("a list is no answer")
            .to_string();
        assert!(
            message.ends_with("qa.jsonl:2: the gold answer must be a string or number, found [1]"),
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

    #[test]
    fn trl_verl_gsm8k_and_math_lines_give_final_answers() {
        let (_dir, path) = file(concat!(
            r##"{"question": "Ann has 3 apples and buys 4. How many?", "answer": "She has 3 + 4 = <<3+4=7>>7.\n#### 7"}"##,
            "\n",
            r##"{"problem": "Find x.", "solution": "So $x = \\frac{1}{2}$, i.e. $\\boxed{\\frac{1}{2}}$."}"##,
            "\n",
            r##"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "reward_model": {"style": "rule", "ground_truth": "4"}, "dataset": "gsm8k"}"##,
            "\n",
            r##"{"prompt": "3+3?", "ground_truth": 6}"##,
            "\n",
            r##"{"prompt": "no gold"}"##,
            "\n",
            r##"{"text": "no question", "answer": "1"}"##,
            "\n",
            r##"{"question": "Why?", "answer": "Because the sum of the two numbers is what we were asked to find and it is large"}"##,
            "\n",
        ));
        let load = load_qa_report(&path, Some("math")).unwrap();
        let got: Vec<(usize, &str, &str, Option<&str>)> = load
            .records
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.question.as_str(),
                    r.gold_or_empty(),
                    r.dataset.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "Ann has 3 apples and buys 4. How many?", "7", Some("math")),
                (2, "Find x.", "\\frac{1}{2}", Some("math")),
                (3, "2+2?", "4", Some("gsm8k")),
                (4, "3+3?", "6", Some("math")),
                (7, "Why?", "Because the sum of the two numbers is what we were asked to find and it is large", Some("math")),
            ]
        );
        assert_eq!(load.lines, 7);
        assert_eq!(
            load.skipped,
            vec![
                (5, "no gold answer".to_string()),
                (6, "no question".to_string())
            ]
        );
        assert_eq!(load.unparsed_golds, vec![7]);
        assert_eq!(
            load.describe(),
            "read 7 lines: 5 prompts, 2 skipped (line 5: no gold answer; line 6: no question), \
             1 golds without a final answer (first: line 7)"
        );
        // Nested braces and no closing brace.
        assert_eq!(final_answer("x \\boxed{\\frac{a}{b}} y"), "\\frac{a}{b}");
        assert_eq!(
            final_answer("\\boxed{1} then \\boxed{2"),
            "\\boxed{1} then \\boxed{2"
        );
        let (_dir, empty) = file("{\"text\": \"x\"}\n");
        let err = load_qa_report(&empty, None).unwrap_err().to_string();
        assert!(
            err.contains("no line has a question and a gold answer"),
            "{err}"
        );
    }

    #[test]
    fn verl_parquet_rows_give_questions_golds_and_data_sets() {
        // Written by pyarrow (tests/fixtures/verl-parquet/make_fixture.py), as verl's files are.
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/verl-parquet/train.parquet"
        ));
        let load = load_qa_report(path, Some("olympiadbench")).expect("read");
        let got: Vec<(usize, &str, &str, Option<&str>)> = load
            .records
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.question.as_str(),
                    r.gold_or_empty(),
                    r.dataset.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    "Tom has 3 apples and buys 4 more. How many apples? Let's think step by step \
                     and output the final answer after \"####\".",
                    "7",
                    Some("gsm8k")
                ),
                (
                    2,
                    "What is $\\frac{1}{2} + \\frac{1}{4}$? Let's think step by step and output \
                     the final answer within \\boxed{}.",
                    "\\frac{3}{4}",
                    Some("math")
                ),
                // The last user turn after the system turn; an unknown source takes the default.
                (3, "What is 5 + 7?", "12", Some("olympiadbench")),
            ]
        );
        assert_eq!(load.skipped, vec![(4, "no gold answer".to_string())]);
        assert_eq!(
            load.describe(),
            "read 4 rows: 3 prompts, 1 skipped (row 4: no gold answer), 0 golds without a final \
             answer"
        );
        let err = load_qa(path, GoldAnswers::Required)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.parquet: row 4: no gold answer"),
            "{err}"
        );
        let optional = load_qa(path, GoldAnswers::Optional).expect("read");
        assert_eq!(optional.len(), 4);
        assert_eq!(optional[3].question, "What is 2 + 2?");
    }

    #[test]
    fn a_jsonl_data_source_names_the_data_set_when_no_dataset_field_does() {
        let (_dir, path) = file(concat!(
            r#"{"question": "a", "answer": "1", "data_source": "openai/gsm8k"}"#,
            "\n",
            r#"{"question": "b", "answer": "2", "data_source": "openai/gsm8k", "dataset": "math"}"#,
            "\n",
        ));
        let load = load_qa_report(&path, None).unwrap();
        let sets: Vec<Option<&str>> = load.records.iter().map(|r| r.dataset.as_deref()).collect();
        assert_eq!(sets, vec![Some("gsm8k"), Some("math")]);
    }
}
