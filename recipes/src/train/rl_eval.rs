//! Evaluation during `qwen25-math-rl`: greedy accuracy of the policy on evaluation sets
//! (`--eval-data FILE`, `--datasets a,b --limit N`) before the first step, every `eval_every`
//! steps and at the end, logged as `eval/<set>/accuracy` and kept for `summary.json`.
//!
//! The trainer shows the evaluator each published version on its coordinator thread
//! ([`mathrl_actors::Trainer::with_policy_observer`]); the evaluator only reads that frozen copy.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mathrl::data::QaRecord;
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_rewards::Verifier;
use serde::Serialize;

use crate::cli::Cli;
use crate::eval::datasets::{default_data_dir, load_dataset, parse_dataset_list};
use crate::eval::evaluate;
use crate::train::qwen25_math_rl::load_prompts;
use crate::train::reasoning::Reasoning;

/// Questions evaluated under one name.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// `gsm8k`, `math500`, ... or the stem of the `--eval-data` file.
    pub name: String,
    /// The questions with their gold answers.
    pub items: Vec<QaRecord>,
}

/// The evaluation sets the command line names: the `--eval-data` file (named by its stem, read
/// like `--data`, with `dataset` for lines that name none) and the `--datasets` sets from
/// `--data-dir` (default the shipped `data/eval/`); `--limit` keeps the first questions of each.
pub fn eval_sets(cli: &Cli, dataset: Option<&str>) -> Result<Vec<EvalSet>> {
    let limit = cli.limit.filter(|&n| n > 0);
    let mut sets = Vec::new();
    if let Some(path) = &cli.eval_data {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .with_context(|| format!("--eval-data {}: no file name", path.display()))?;
        let mut items = load_prompts(path, dataset)?;
        items.truncate(limit.unwrap_or(usize::MAX));
        if items.is_empty() {
            bail!(
                "--eval-data {}: no question with a gold answer",
                path.display()
            );
        }
        sets.push(EvalSet { name, items });
    }
    if let Some(list) = &cli.datasets {
        let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
        for name in parse_dataset_list(list)? {
            if sets.iter().any(|s| s.name == name) {
                bail!("two evaluation sets are named `{name}`: rename the --eval-data file");
            }
            let items = load_dataset(&data_dir, &name, limit)
                .with_context(|| format!("loading evaluation set `{name}`"))?;
            sets.push(EvalSet { name, items });
        }
    }
    Ok(sets)
}

/// One measured accuracy of a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepAccuracy {
    /// Learner steps behind the evaluated weights (0 = the initial policy).
    pub step: u64,
    /// Share of greedy answers the checker accepted.
    pub accuracy: f64,
}

/// Evaluates a policy on every set and remembers what it found.
pub struct RlEvaluator {
    sets: Vec<EvalSet>,
    tokenizer: Tokenizer,
    verifier: Arc<dyn Verifier>,
    max_new_tokens: usize,
    reasoning: Reasoning,
    metrics: Metrics,
    by_set: BTreeMap<String, Vec<StepAccuracy>>,
    failures: Vec<String>,
}

impl RlEvaluator {
    /// An evaluator of `sets`, answering greedily as `reasoning` says with at most
    /// `max_new_tokens` new tokens, logging to `metrics`.
    pub fn new(
        sets: Vec<EvalSet>,
        tokenizer: Tokenizer,
        verifier: Arc<dyn Verifier>,
        max_new_tokens: usize,
        reasoning: Reasoning,
        metrics: Metrics,
    ) -> Self {
        Self {
            sets,
            tokenizer,
            verifier,
            max_new_tokens,
            reasoning,
            metrics,
            by_set: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    /// Whether there is anything to evaluate.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Greedy accuracy of `policy` (the weights after `step` steps) on every set, logged as
    /// `eval/<set>/accuracy`. A step already evaluated is not evaluated again (the last
    /// periodic evaluation is often the final one). A failure is logged and kept for the
    /// summary rather than ending hours of training.
    pub fn evaluate(&mut self, policy: &Policy, step: u64) {
        for set in &self.sets {
            let results = self.by_set.entry(set.name.clone()).or_default();
            if results.iter().any(|r| r.step == step) {
                continue;
            }
            let mut mode = self.reasoning.greedy_mode(self.max_new_tokens);
            // Questions share one KV cache per batch: a whole large set at once could not fit.
            mode.questions_per_batch = set.items.len().clamp(1, 64);
            match evaluate(
                policy,
                &self.tokenizer,
                &set.items,
                &mode,
                self.verifier.as_ref(),
                None,
            ) {
                Ok(result) => {
                    let tag = format!("eval/{}/accuracy", set.name);
                    self.metrics.scalar(&tag, step, result.accuracy);
                    tracing::info!(step, set = %set.name, n = result.n, accuracy = result.accuracy, "greedy evaluation");
                    results.push(StepAccuracy {
                        step,
                        accuracy: result.accuracy,
                    });
                }
                Err(e) => {
                    let message = format!("step {step}, {}: {e:#}", set.name);
                    tracing::warn!("evaluation failed: {message}");
                    self.failures.push(message);
                }
            }
        }
    }

    /// Per set: questions, the last accuracy and every measured one; with the failures.
    pub fn summary(&self) -> serde_json::Value {
        let sets: serde_json::Map<String, serde_json::Value> = self
            .sets
            .iter()
            .map(|set| {
                let results = self.by_set.get(&set.name).cloned().unwrap_or_default();
                let value = serde_json::json!({
                    "n": set.items.len(),
                    "accuracy": results.last().map(|r| r.accuracy),
                    "by_step": results,
                });
                (set.name.clone(), value)
            })
            .collect();
        serde_json::json!({ "sets": sets, "failures": self.failures })
    }
}

/// `gsm8k (n=50), heldout (n=20)`: the sets of a run, for its log.
pub fn describe_sets(sets: &[EvalSet]) -> String {
    sets.iter()
        .map(|s| format!("{} (n={})", s.name, s.items.len()))
        .collect::<Vec<_>>()
        .join(", ")
}
