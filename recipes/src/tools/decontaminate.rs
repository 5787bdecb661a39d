//! `decontaminate`: copy a JSONL data file without the lines whose question overlaps a question
//! of the evaluation sets (a shared 13-gram of normalised words, or a near-copy by LCS).
//!
//! A line's question is its `question`, `problem` or `prompt` (a string, or chat messages), or the
//! user turns of its `messages`; each user turn is checked. Kept lines are copied byte for byte;
//! removed ones go to `<OUT stem>.removed.jsonl` as `{"line", "record", "dataset", "eval_line",
//! "eval_question"}` plus `"ngram"` (the shared 13 words) or `"lcs"` (the similarity). Both files
//! are written whole or not at all.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mathrl::data::decontamination::{Contamination, Overlap};
use mathrl::data::{read_jsonl_lines, QUESTION_KEYS};
use serde_json::{json, Value};

use crate::cli::Cli;
use crate::decontamination::eval_index;
use crate::output::OutputFile;

/// Runs the recipe: `--input IN.jsonl --output OUT.jsonl [--data-dir DIR]`.
pub fn run(cli: &Cli) -> Result<()> {
    let input = cli
        .input
        .as_deref()
        .context("decontaminate needs --input IN.jsonl")?;
    let output = cli
        .output
        .as_deref()
        .context("decontaminate needs --output OUT.jsonl")?;
    let index = eval_index(cli.data_dir.as_deref())?;
    let removed_path = removed_path(output);
    let mut kept_out = OutputFile::create(output)?;
    let mut removed_out = OutputFile::create(&removed_path)?;
    let lines = read_jsonl_lines(input)?;
    let mut removed_by_set: BTreeMap<String, usize> = BTreeMap::new();
    for (line, text) in &lines {
        let at = || format!("{}:{line}", input.display());
        let record: Value =
            serde_json::from_str(text).with_context(|| format!("{}: not valid JSON", at()))?;
        let questions = questions_of(&record).with_context(at)?;
        match questions.iter().find_map(|q| index.check(q)) {
            None => writeln!(kept_out, "{text}")
                .with_context(|| format!("writing {}", output.display()))?,
            Some(found) => {
                *removed_by_set
                    .entry(found.eval.dataset.clone())
                    .or_default() += 1;
                serde_json::to_writer(&mut removed_out, &removal(*line, record.clone(), &found))?;
                writeln!(removed_out)
                    .with_context(|| format!("writing {}", removed_path.display()))?;
            }
        }
    }
    kept_out.commit()?;
    removed_out.commit()?;
    let removed: usize = removed_by_set.values().sum();
    let by_set: Vec<String> = removed_by_set
        .iter()
        .map(|(set, n)| format!("{set} {n}"))
        .collect();
    eprintln!(
        "decontaminate: kept {} of {} lines, removed {removed}{} against {} evaluation questions; removed lines in {}",
        lines.len() - removed,
        lines.len(),
        if by_set.is_empty() { String::new() } else { format!(" ({})", by_set.join(", ")) },
        index.len(),
        removed_path.display()
    );
    Ok(())
}

/// `OUT.jsonl` → `OUT.removed.jsonl`.
pub fn removed_path(output: &Path) -> PathBuf {
    let stem = match output.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => output.with_extension(""),
        _ => output.to_path_buf(),
    };
    let mut name = stem.file_name().unwrap_or_default().to_os_string();
    name.push(".removed.jsonl");
    stem.with_file_name(name)
}

/// The questions of one data line: `question`, `problem`, `prompt`, or the user turns of
/// `messages` (or of a `prompt` given as chat messages).
pub fn questions_of(record: &Value) -> Result<Vec<String>> {
    let Value::Object(fields) = record else {
        bail!("expected a JSON object");
    };
    for key in QUESTION_KEYS {
        match fields.get(key) {
            Some(Value::String(text)) => return Ok(vec![text.clone()]),
            Some(messages @ Value::Array(_)) => return user_turns(messages, key),
            Some(other) => bail!("`{key}` must be a string or chat messages, got {other}"),
            None => {}
        }
    }
    match fields.get("messages") {
        Some(messages) => user_turns(messages, "messages"),
        None => bail!("no question: expected `question`, `problem`, `prompt` or `messages`"),
    }
}

fn user_turns(messages: &Value, key: &str) -> Result<Vec<String>> {
    let Value::Array(turns) = messages else {
        bail!("`{key}` must be a list of chat messages");
    };
    let mut questions = Vec::new();
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str);
        let content = turn.get("content").and_then(Value::as_str);
        match (role, content) {
            (Some("user"), Some(content)) => questions.push(content.to_string()),
            (Some(_), Some(_)) => {}
            _ => bail!("`{key}[{i}]` needs string fields `role` and `content`"),
        }
    }
    if questions.is_empty() {
        bail!("`{key}` has no user turn");
    }
    Ok(questions)
}

fn removal(line: usize, record: Value, found: &Contamination<'_>) -> Value {
    let mut removal = json!({
        "line": line,
        "record": record,
        "dataset": found.eval.dataset,
        "eval_line": found.eval.line,
        "eval_question": found.eval.question,
    });
    match &found.overlap {
        Overlap::NGram(ngram) => removal["ngram"] = json!(ngram),
        Overlap::Lcs(similarity) => removal["lcs"] = json!(similarity),
    }
    removal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_lines_go_beside_the_output() {
        assert_eq!(
            removed_path(Path::new("out/clean.jsonl")),
            Path::new("out/clean.removed.jsonl")
        );
        assert_eq!(
            removed_path(Path::new("clean.txt")),
            Path::new("clean.txt.removed.jsonl")
        );
    }

    #[test]
    fn the_question_fields_in_order() {
        let q = |v: Value| questions_of(&v).unwrap();
        assert_eq!(q(json!({"question": "a", "problem": "b"})), ["a"]);
        assert_eq!(q(json!({"problem": "b"})), ["b"]);
        assert_eq!(
            q(
                json!({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]})
            ),
            ["u"]
        );
        assert_eq!(
            q(json!({"messages": [
                {"role": "user", "content": "u1"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "u2"}
            ]})),
            ["u1", "u2"]
        );
        for bad in [
            json!({"answer": "1"}),
            json!({"question": 3}),
            json!({"messages": [{"role": "assistant", "content": "a"}]}),
            json!({"messages": [{"content": "a"}]}),
            json!(["question"]),
        ] {
            assert!(questions_of(&bad).is_err(), "{bad}");
        }
    }
}
