//! `evaluate`: accuracy of a policy on evaluation items in one mode (greedy CoT, TIR, Maj@N,
//! RM@N), reusable by any recipe that needs a before/after accuracy.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mathrl::data::QaRecord;
use mathrl::generation::{Engine, EngineConfig, SamplingParams, ToolExecutor};
use mathrl::{Policy, Tokenizer};
use mathrl_rewards::{RewardModel, Verifier};
use serde::Serialize;

use super::prompts::{render_prompt, user_message, PromptFormat};
use super::voting::{best_by_score, majority_vote};
use crate::run::progress_bar;

/// How one response is picked per question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// One greedy response (temperature 0).
    Greedy,
    /// N samples; the most common extracted answer (Maj@N).
    Majority(usize),
    /// N samples; the response with the highest reward-model score (RM@N).
    RewardModel(usize),
}

/// An evaluation mode: prompt format, selection rule and generation settings.
#[derive(Clone)]
pub struct EvalMode {
    /// Chain of thought or tool-integrated reasoning.
    pub format: PromptFormat,
    /// Greedy, Maj@N or RM@N.
    pub selection: Selection,
    /// Most tokens per response (tool output included).
    pub max_new_tokens: usize,
    /// Sampling temperature of Maj@N and RM@N (the report: 0.7).
    pub temperature: f64,
    /// Nucleus mass of Maj@N and RM@N (the report: 0.8).
    pub top_p: f64,
    /// Seed of the sampling streams.
    pub seed: u64,
    /// Questions per `generate` call (their samples share the KV cache).
    pub questions_per_batch: usize,
    /// Limits of the generation engine.
    pub engine: EngineConfig,
    /// Runs the python blocks of TIR responses; required by [`PromptFormat::Tir`].
    pub tool: Option<Arc<dyn ToolExecutor>>,
}

impl std::fmt::Debug for EvalMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalMode")
            .field("name", &self.name())
            .field("max_new_tokens", &self.max_new_tokens)
            .field("temperature", &self.temperature)
            .field("top_p", &self.top_p)
            .field("seed", &self.seed)
            .field("tool", &self.tool.is_some())
            .finish()
    }
}

impl EvalMode {
    /// Greedy chain of thought, the report's main setting.
    pub fn greedy_cot(max_new_tokens: usize) -> Self {
        Self {
            format: PromptFormat::Cot,
            selection: Selection::Greedy,
            max_new_tokens,
            temperature: 0.7,
            top_p: 0.8,
            seed: 0,
            questions_per_batch: 16,
            engine: EngineConfig::default(),
            tool: None,
        }
    }

    /// The mode's name in tables: `cot`, `tir`, `maj@8`, `rm@8`, `tir-maj@8`, ...
    pub fn name(&self) -> String {
        let prefix = match self.format {
            PromptFormat::Cot => "",
            PromptFormat::Tir => "tir-",
        };
        match self.selection {
            Selection::Greedy => match self.format {
                PromptFormat::Cot => "cot".to_string(),
                PromptFormat::Tir => "tir".to_string(),
            },
            Selection::Majority(n) => format!("{prefix}maj@{n}"),
            Selection::RewardModel(n) => format!("{prefix}rm@{n}"),
        }
    }

    fn sampling(&self) -> SamplingParams {
        match self.selection {
            Selection::Greedy => SamplingParams::greedy(self.max_new_tokens),
            Selection::Majority(n) | Selection::RewardModel(n) => SamplingParams {
                n,
                temperature: self.temperature,
                top_p: self.top_p,
                seed: self.seed,
                max_new_tokens: self.max_new_tokens,
                ..SamplingParams::default()
            },
        }
    }
}

/// The picked response of one question and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRecord {
    /// The question's data set.
    pub dataset: String,
    /// Its line in the data set's `test.jsonl`.
    pub line: usize,
    /// The gold answer as stored.
    pub gold: String,
    /// The picked response.
    pub response: String,
    /// The checker's extracted, normalised answer of the picked response.
    pub extracted: Option<String>,
    /// Whether the picked response's answer is correct.
    pub correct: bool,
    /// Samples whose answer is correct (pass@N numerator; 0 or 1 for greedy).
    pub correct_samples: usize,
    /// The RM score of the picked response (RM@N only).
    pub rm_score: Option<f32>,
    /// Why the picked response ended (`stop_token`, `length`, ...).
    pub finish_reason: String,
}

/// Accuracy of one data set in one mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetAccuracy {
    /// The data set.
    pub dataset: String,
    /// The mode's name.
    pub mode: String,
    /// Questions evaluated.
    pub n: usize,
    /// Share of correct picked responses in [0, 1].
    pub accuracy: f64,
}

/// What `evaluate` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalResult {
    /// The mode's name.
    pub mode: String,
    /// Questions evaluated.
    pub n: usize,
    /// Correct picked responses.
    pub correct: usize,
    /// `correct / n` (0 when `n` is 0).
    pub accuracy: f64,
    /// Per data set, in order of first appearance.
    pub per_dataset: Vec<DatasetAccuracy>,
    /// One record per question, in input order.
    pub records: Vec<EvalRecord>,
}

/// Generates for every item in `mode`, checks the answers with `checker` (the data set's rule)
/// and returns the accuracy. RM@N needs `rm`, which must share the policy's tokenizer (as the
/// Qwen2.5-Math RM and policies do); TIR needs `mode.tool`.
pub fn evaluate(
    policy: &Policy,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    mode: &EvalMode,
    checker: &dyn Verifier,
    rm: Option<&RewardModel>,
) -> Result<EvalResult> {
    if matches!(mode.selection, Selection::RewardModel(_)) && rm.is_none() {
        bail!("RM@N evaluation needs a reward model (--rm DIR)");
    }
    let frozen = policy.frozen_copy()?;
    let mut engine =
        Engine::from_policy(&frozen, mode.engine.clone()).with_tokenizer(tokenizer.clone());
    match (mode.format, &mode.tool) {
        (PromptFormat::Tir, Some(tool)) => engine = engine.with_tool(tool.clone()),
        (PromptFormat::Tir, None) => bail!("TIR evaluation needs a tool executor"),
        (PromptFormat::Cot, _) => {}
    }
    let params = mode.sampling();
    let bar = progress_bar(items.len() as u64, &mode.name());
    let mut records = Vec::with_capacity(items.len());
    for chunk in items.chunks(mode.questions_per_batch.max(1)) {
        let prompts = chunk
            .iter()
            .map(|item| Ok(tokenizer.encode(&render_prompt(tokenizer, mode.format, item)?)?))
            .collect::<Result<Vec<_>>>()?;
        let out = engine
            .generate(&prompts, &params)
            .context("generating evaluation responses")?;
        for (group, item) in out.groups.iter().zip(chunk) {
            let texts = group.texts(tokenizer)?;
            let dataset = item.dataset.as_deref().filter(|d| !d.is_empty());
            let verdicts: Vec<_> = texts
                .iter()
                .map(|t| checker.verify(t, item.gold_or_empty(), dataset))
                .collect();
            let answers: Vec<Option<String>> =
                verdicts.iter().map(|v| v.extracted.clone()).collect();
            let (picked, rm_score) = match mode.selection {
                Selection::Greedy => (Some(0), None),
                Selection::Majority(_) => (majority_vote(&answers), None),
                Selection::RewardModel(_) => {
                    let rm = rm.expect("checked above");
                    let question = user_message(item);
                    let pairs: Vec<(&str, &str)> = texts
                        .iter()
                        .map(|t| (question.as_str(), t.as_str()))
                        .collect();
                    let scores = rm.score_pairs(tokenizer, &pairs, 8)?;
                    let best = best_by_score(&scores);
                    (best, best.map(|b| scores[b]))
                }
            };
            // No answer in any sample: the first sample stands, and is wrong.
            let index = picked.unwrap_or(0);
            records.push(EvalRecord {
                dataset: item.dataset.clone().unwrap_or_default(),
                line: item.line,
                gold: item.gold_or_empty().to_string(),
                response: texts[index].clone(),
                extracted: verdicts[index].extracted.clone(),
                correct: picked.is_some() && verdicts[index].is_correct(),
                correct_samples: verdicts.iter().filter(|v| v.is_correct()).count(),
                rm_score,
                finish_reason: group.completions[index].finish_reason.to_string(),
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(summarise(mode.name(), records))
}

/// Totals and per-data-set accuracies of `records`.
pub fn summarise(mode: String, records: Vec<EvalRecord>) -> EvalResult {
    let mut per_dataset: Vec<(String, usize, usize)> = Vec::new();
    for r in &records {
        match per_dataset.iter_mut().find(|(d, _, _)| *d == r.dataset) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += usize::from(r.correct);
            }
            None => per_dataset.push((r.dataset.clone(), 1, usize::from(r.correct))),
        }
    }
    let share = |correct: usize, n: usize| {
        if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        }
    };
    let correct = records.iter().filter(|r| r.correct).count();
    EvalResult {
        n: records.len(),
        correct,
        accuracy: share(correct, records.len()),
        per_dataset: per_dataset
            .into_iter()
            .map(|(dataset, n, c)| DatasetAccuracy {
                dataset,
                mode: mode.clone(),
                n,
                accuracy: share(c, n),
            })
            .collect(),
        mode,
        records,
    }
}
