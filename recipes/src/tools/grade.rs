//! `grade`: check answers against gold answers with the math answer checker.
//!
//! Each input line has `"gold"` and either `"pred"` (a final answer, graded as if the response
//! were `The final answer is $\boxed{pred}$.`) or `"response"` (a full response), optionally
//! `"dataset"` (selects that set's extraction and gold-parsing rules). Each output line repeats
//! the input and adds `"extracted"`, `"correct"`, and `"reason"` when unparseable. A summary
//! (count, accuracy, unparseable, checks/s) goes to stderr.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mathrl::data::read_jsonl_numbered;
use mathrl_rewards::{Checker, CheckerProfile, Outcome};
use serde_json::Value;

use crate::cli::Cli;
use crate::output::OutputFile;

/// Runs the recipe: `--input IN.jsonl --output OUT.jsonl [--checker qwen25-math|strict]`.
pub fn run(cli: &Cli) -> Result<()> {
    let input = cli
        .input
        .as_deref()
        .context("grade needs --input IN.jsonl")?;
    let output = cli
        .output
        .as_deref()
        .context("grade needs --output OUT.jsonl")?;
    let profile: CheckerProfile = cli.checker.parse().context("--checker")?;
    let checker = Checker::new(profile);
    let rows = read_jsonl_numbered::<Value>(input)?;
    let mut out = OutputFile::create(output)?;
    let (mut correct, mut unparseable) = (0usize, 0usize);
    let start = Instant::now();
    for (line, mut row) in rows.iter().cloned() {
        let at = || format!("{}:{line}", input.display());
        let Value::Object(fields) = &mut row else {
            bail!("{}: expected a JSON object", at())
        };
        let text = |key: &str| -> Result<Option<String>> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => bail!(
                    "{}: `{key}` must be a string or a number, got {other}",
                    at()
                ),
            }
        };
        let gold = text("gold")?.with_context(|| format!("{}: missing `gold`", at()))?;
        let dataset = text("dataset")?;
        let verdict = match (text("response")?, text("pred")?) {
            (Some(response), _) => checker.check_response(&response, &gold, dataset.as_deref()),
            (None, Some(pred)) => checker.check_answer(&pred, &gold, dataset.as_deref()),
            (None, None) => bail!("{}: needs `pred` or `response`", at()),
        };
        correct += usize::from(verdict.is_correct());
        unparseable += usize::from(verdict.outcome == Outcome::Unparseable);
        fields.insert(
            "extracted".into(),
            verdict.extracted.clone().map_or(Value::Null, Value::String),
        );
        fields.insert("correct".into(), Value::Bool(verdict.is_correct()));
        if let Some(reason) = verdict.reason {
            fields.insert("reason".into(), Value::String(reason));
        }
        serde_json::to_writer(&mut out, &row)
            .with_context(|| format!("writing {}", output.display()))?;
        out.write_all(b"\n")?;
    }
    out.commit()?;
    let seconds = start.elapsed().as_secs_f64();
    let count = rows.len();
    eprintln!(
        "graded {count} with checker {profile}: accuracy {:.4} ({correct}/{count}), unparseable {unparseable}, {:.0} checks/s",
        if count == 0 { 0.0 } else { correct as f64 / count as f64 },
        count as f64 / seconds.max(1e-9)
    );
    Ok(())
}
