//! The decontamination filter of the recipes that make or read training data: drop the items
//! whose question overlaps a question of the evaluation sets (a shared 13-gram, or a near-copy by
//! LCS; [`mathrl::data::decontamination`] has the tests and their thresholds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context, Result};
use mathrl::data::decontamination::{Contamination, Decontaminator, EvalQuestion, Overlap};
use mathrl::data::{read_jsonl_numbered, QaRecord};
use serde_json::Value;

use crate::eval::datasets::{default_data_dir, question_of};

/// The questions of every `<data_dir>/<set>/test.jsonl`, sets in name order. A directory without
/// any set, or a line without a question, is an error: a filter that read nothing would pass
/// everything silently.
pub fn eval_questions(data_dir: &Path) -> Result<Vec<EvalQuestion>> {
    let entries = std::fs::read_dir(data_dir).with_context(|| {
        format!(
            "reading the evaluation sets for decontamination in {}",
            data_dir.display()
        )
    })?;
    let mut sets: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", data_dir.display()))?;
        let file = entry.path().join("test.jsonl");
        if file.is_file() {
            sets.push((entry.file_name().to_string_lossy().into_owned(), file));
        }
    }
    if sets.is_empty() {
        bail!(
            "{}: no evaluation set (<set>/test.jsonl) to decontaminate against; give --data-dir, \
             or --set decontaminate=false",
            data_dir.display()
        );
    }
    sets.sort();
    let mut questions = Vec::new();
    for (name, file) in sets {
        for (line, row) in read_jsonl_numbered::<Value>(&file)? {
            // No gold: the question as written, without the true/false hint eval appends.
            let question = question_of(&name, &row, "")
                .with_context(|| format!("{}:{line}: reading the question", file.display()))?;
            questions.push(EvalQuestion {
                dataset: name.clone(),
                line,
                question,
            });
        }
    }
    Ok(questions)
}

/// The index of the evaluation sets in `data_dir` (default: the shipped ones), built once per
/// process and directory: a pipeline filters at several stages.
pub fn eval_index(data_dir: Option<&Path>) -> Result<Arc<Decontaminator>> {
    static INDEXES: OnceLock<Mutex<HashMap<PathBuf, Arc<Decontaminator>>>> = OnceLock::new();
    let dir = data_dir.map_or_else(default_data_dir, Path::to_path_buf);
    let mut indexes = INDEXES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(index) = indexes.get(&dir) {
        return Ok(index.clone());
    }
    let index = Arc::new(Decontaminator::new(eval_questions(&dir)?));
    indexes.insert(dir, index.clone());
    Ok(index)
}

/// One line of evidence: the evaluation question and what the item shares with it.
pub fn describe(found: &Contamination<'_>) -> String {
    let how = match &found.overlap {
        Overlap::NGram(ngram) => format!("13-gram \"{ngram}\""),
        Overlap::Lcs(similarity) => format!("LCS similarity {similarity:.2}"),
    };
    format!("{} line {} ({how})", found.eval.dataset, found.eval.line)
}

/// Keeps the items whose question overlaps no evaluation question, logging how many `what` it
/// removed and the first one's evidence; `enabled = false` keeps everything.
pub fn decontaminate<T>(
    items: Vec<T>,
    question: impl Fn(&T) -> &str,
    enabled: bool,
    data_dir: Option<&Path>,
    what: &str,
) -> Result<Vec<T>> {
    if !enabled {
        return Ok(items);
    }
    let index = eval_index(data_dir)?;
    let total = items.len();
    let mut first = None;
    let kept: Vec<T> = items
        .into_iter()
        .filter(|item| match index.check(question(item)) {
            Some(found) => {
                first.get_or_insert_with(|| describe(&found));
                false
            }
            None => true,
        })
        .collect();
    let removed = total - kept.len();
    match first {
        Some(first) => tracing::info!(
            "decontamination: removed {removed} of {total} {what} that overlap the evaluation \
             sets (the first: {first}); --set decontaminate=false keeps them"
        ),
        None => {
            tracing::info!("decontamination: none of {total} {what} overlaps the evaluation sets")
        }
    }
    Ok(kept)
}

/// [`decontaminate`] for the questions of a training data file: a file all of whose questions
/// overlap the evaluation sets is an error, since nothing would be left to train on.
pub fn decontaminate_qa(
    records: Vec<QaRecord>,
    enabled: bool,
    data_dir: Option<&Path>,
    what: &str,
) -> Result<Vec<QaRecord>> {
    let total = records.len();
    let kept = decontaminate(records, |r| r.question.as_str(), enabled, data_dir, what)?;
    if total > 0 && kept.is_empty() {
        bail!(
            "decontamination: all {total} {what} overlap the evaluation sets, nothing is left to \
             train on (`mathrl --recipe decontaminate` lists the matches; --set \
             decontaminate=false keeps them)"
        );
    }
    Ok(kept)
}
