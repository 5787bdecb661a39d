//! `sft-data-evolution`: the report's iterative SFT-data construction. Each round samples K
//! responses per question with the current model, keeps those whose answer checks correct,
//! ranks them by reward-model score and keeps the top m per question (the rejection sampling of
//! [`crate::train::rejection_sampling`]), writes them as `{"messages": [...]}` JSONL and
//! fine-tunes the model on them with the SFT learner.
//!
//! `mathrl --recipe sft-data-evolution --model DIR --data qa.jsonl [--rm DIR] [--output DIR]`
//! (`qa.jsonl` lines: `{"question": .., "answer": ..}`, `answer` optional).
//!
//! For a question without a gold answer, an RM-weighted majority vote over the K answers picks
//! the answer first (as the report does) and the responses giving it count as correct; without
//! `--rm` the vote is a plain majority and the kept responses are the first m in sample order.
//! Held-out accuracy (greedy, questions with a gold answer taken from the end of the data, never
//! trained on) is reported before the first round and after each.
//!
//! With `tir = true` the rounds sample tool-integrated trajectories (the TIR system prompt, python
//! blocks run in the sandbox) and the held-out accuracy is greedy TIR; the kept responses keep
//! their output blocks, which the fine-tuning masks out of the loss. `tir-data-evolution` is this
//! loop ([`run_rounds`]) with TIR on by default.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mathrl::data::{load_qa, GoldAnswers, QaRecord};
use mathrl::model::Trainable;
use mathrl::{Policy, Tokenizer};
use mathrl_learners::sft_data::{load_conversations, Conversation};
use mathrl_rewards::RewardModel;
use mathrl_sandbox::SandboxConfig;
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::decontamination::decontaminate_qa;
use crate::driver::{prepare, Prepared};
use crate::eval::evaluate;
use crate::precision::Precision;
use crate::run::{print_summary, require_dir, RunContext};
use crate::train::reasoning::Reasoning;
use crate::train::rejection_sampling::sample_and_filter;
use crate::train::sft::{train_sft, SftRecipeConfig};
use crate::train::sft_pool::pooled;

/// Settings of the `sft-data-evolution` and `tir-data-evolution` recipes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvolutionConfig {
    /// Rounds of sample → filter → fine-tune.
    pub rounds: usize,
    /// Conversations (`{"messages": [...]}` JSONL) kept by earlier rounds, fine-tuned on with
    /// each round's kept responses, exact duplicates dropped; the round's training data is then
    /// written to `round-<r>/sft-data.jsonl`. Unset by default; `pipeline --set rounds=N` sets
    /// it to the candidates of its earlier rounds.
    pub pool: Option<PathBuf>,
    /// Responses sampled per question (K).
    pub samples_per_question: usize,
    /// Responses kept per question, the best by RM score (m).
    pub keep_per_question: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Longest response in tokens.
    pub max_new_tokens: usize,
    /// Questions with a gold answer held out for the accuracy, from the end of the data.
    pub eval_questions: usize,
    /// Training questions used per round (the head of the rest), 0 = all.
    pub max_questions: usize,
    /// Questions per generation call.
    pub questions_per_batch: usize,
    /// Checker profile: `qwen25-math` (the reference's grader).
    pub checker: String,
    /// Drop the questions that overlap the evaluation sets (`--data-dir`, default the shipped
    /// ones) before anything samples them.
    pub decontaminate: bool,
    /// The fine-tuning of each round (steps, batch size, learning rate, ...).
    pub sft: SftRecipeConfig,
    /// Tool-integrated reasoning: sample (and evaluate) with the TIR system prompt, python blocks
    /// run in the sandbox, output blocks kept in the data and masked out of the fine-tuning.
    /// Default false here, true in `tir-data-evolution`.
    pub tir: bool,
    /// Wall-clock limit of one TIR program in milliseconds (the reference: 5 s); overrides
    /// `tool.timeout_ms`.
    pub tool_timeout_ms: u64,
    /// The TIR sandbox: limits and isolation layers (`tool.allow_weaker_isolation = true` runs
    /// with missing layers, with a warning).
    pub tool: SandboxConfig,
    /// For a question without a gold answer: the least fraction of its K responses that must
    /// give the majority answer for that answer to be trusted (0: any plurality; 0.5 in
    /// `tir-data-evolution`).
    pub min_agreement: f64,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        let mut sft = SftRecipeConfig {
            steps: 200,
            batch_size: 16,
            eval_examples: 0,
            eval_every: 0,
            checkpoint_every: 0,
            keep_checkpoints: 1,
            ..SftRecipeConfig::default()
        };
        if let mathrl_learners::Decay::Cosine { total_steps, .. } =
            &mut sft.learner.train_step.schedule.decay
        {
            *total_steps = 200;
        }
        Self {
            rounds: 3,
            pool: None,
            samples_per_question: 8,
            keep_per_question: 2,
            temperature: 0.7,
            top_p: 0.8,
            max_new_tokens: 512,
            eval_questions: 64,
            max_questions: 0,
            questions_per_batch: 16,
            checker: "qwen25-math".into(),
            decontaminate: true,
            sft,
            tir: false,
            tool_timeout_ms: 5000,
            tool: SandboxConfig::default(),
            min_agreement: 0.0,
        }
    }
}

impl EvolutionConfig {
    /// Checks the ranges; the error names the key.
    pub fn validate(&self) -> Result<()> {
        self.sft
            .learner
            .validate()
            .context("config section `sft.learner`")?;
        if !(0.0..=1.0).contains(&self.min_agreement) {
            bail!(
                "min_agreement must be within [0, 1], not {}",
                self.min_agreement
            );
        }
        if self.samples_per_question == 0 {
            bail!("samples_per_question must be at least 1");
        }
        Ok(())
    }
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundReport {
    /// 1-based round.
    pub round: usize,
    /// Responses kept for fine-tuning.
    pub kept: usize,
    /// Responses sampled.
    pub total: usize,
    /// Questions with at least one kept response.
    pub questions_kept: usize,
    /// Held-out greedy accuracy before the round's fine-tuning.
    pub accuracy_before: f64,
    /// ... and after it.
    pub accuracy_after: f64,
    /// SFT steps of the round (0 when nothing was kept).
    pub sft_steps: u64,
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<EvolutionConfig>(cli, "sft-data-evolution")? else {
        return Ok(());
    };
    run_rounds(recipe)
}

/// The rounds of sample → filter → fine-tune of `sft-data-evolution` and `tir-data-evolution`
/// (which differ only in their defaults).
pub fn run_rounds(recipe: Prepared<'_, EvolutionConfig>) -> Result<()> {
    let cli = recipe.cli;
    let config = &recipe.config;
    // Before the run directory and the models: a bad setting fails at once.
    config.validate()?;
    let model_dir = recipe.model_dir()?;
    let data = recipe.data_file("qa.jsonl")?;
    if let Some(rm) = &cli.rm {
        require_dir(rm, "reward model")?;
    }
    let checker = crate::eval::recipe::checker(&config.checker)?;
    let questions = decontaminate_qa(
        load_qa(data, GoldAnswers::Optional)?,
        config.decontaminate,
        cli.data_dir.as_deref(),
        "questions",
    )?;
    let pool = match &config.pool {
        Some(path) => load_conversations(path)
            .with_context(|| format!("config key `pool`: {}", path.display()))?,
        None => Vec::new(),
    };
    let (train, eval) = split_held_out(&questions, config.eval_questions);
    if train.is_empty() {
        bail!(
            "{}: no training questions left after holding out {} for evaluation",
            data.display(),
            eval.len()
        );
    }
    // The sandbox before the run directory: one that cannot start fails with its own error.
    let reasoning = Reasoning::of_config(config.tir, &config.tool, config.tool_timeout_ms)?;
    let run = recipe.start()?;
    let tokenizer = Tokenizer::from_dir(model_dir)?;
    // The fine-tuning's `sft.dtype` / `sft.save_dtype` (or `--dtype`) set the policy's and the
    // RM's precision for every round.
    let precision = Precision::resolve(cli.dtype, config.sft.dtype, config.sft.save_dtype);
    let mut policy = Policy::load(model_dir, &run.device, precision.compute, Trainable::Yes)?
        .with_save_dtype(precision.save);
    let mut master_weights = Vec::new();
    let rm = match &cli.rm {
        Some(dir) => Some(RewardModel::load(
            dir,
            &run.device,
            precision.compute,
            Trainable::No,
        )?),
        None => None,
    };
    let eval_mode = reasoning.greedy_mode(config.max_new_tokens);
    let accuracy = |policy: &Policy| -> Result<f64> {
        if eval.is_empty() {
            return Ok(f64::NAN);
        }
        Ok(evaluate(
            policy,
            &tokenizer,
            &eval,
            &eval_mode,
            checker.as_ref(),
            rm.as_ref(),
        )?
        .accuracy)
    };
    let used = match config.max_questions {
        0 => train.len(),
        n => n.min(train.len()),
    };
    let mut accuracy_before = accuracy(&policy)?;
    run.metrics.scalar("evolution/accuracy", 0, accuracy_before);
    let mut reports = Vec::new();
    for round in 1..=config.rounds {
        let kept = sample_and_filter(
            &policy,
            &tokenizer,
            &train[..used],
            checker.as_ref(),
            rm.as_ref(),
            &reasoning,
            config,
            run.seed.wrapping_add(round as u64),
        )?;
        let round_dir = run.path(&format!("round-{round}"));
        std::fs::create_dir_all(&round_dir)
            .with_context(|| format!("creating {}", round_dir.display()))?;
        write_messages(&round_dir.join("data.jsonl"), &kept.conversations)?;
        let pooled_data;
        let training = if config.pool.is_some() {
            pooled_data = pooled(&pool, &kept.conversations);
            write_messages(&round_dir.join("sft-data.jsonl"), &pooled_data)?;
            &pooled_data
        } else {
            &kept.conversations
        };
        let sft_steps = if training.is_empty() {
            tracing::warn!(round, "no response was kept; the round trains nothing");
            0
        } else {
            // Each round is its own SFT run (own checkpoints and step count) under round-<r>/.
            let mut round_cli = cli.clone();
            round_cli.output = Some(round_dir.clone());
            round_cli.logdir = Some(round_dir.clone());
            round_cli.resume = None;
            let round_run = RunContext::new(&round_cli, "sft")?;
            let outcome = train_sft(policy, &tokenizer, training, &config.sft, &round_run)?;
            round_run.metrics.flush()?;
            policy = outcome.policy;
            master_weights = outcome.master_weights;
            outcome.steps
        };
        let accuracy_after = accuracy(&policy)?;
        let report = RoundReport {
            round,
            kept: kept.conversations.len(),
            total: kept.sampled,
            questions_kept: kept.questions,
            accuracy_before,
            accuracy_after,
            sft_steps,
        };
        let step = round as u64;
        run.metrics
            .scalar("evolution/accuracy", step, accuracy_after);
        run.metrics.scalar(
            "evolution/kept_fraction",
            step,
            report.kept as f64 / report.total.max(1) as f64,
        );
        tracing::info!(
            round,
            kept = report.kept,
            total = report.total,
            accuracy_before,
            accuracy_after,
            "round done"
        );
        eprintln!(
            "round {round}: kept {}/{} responses ({} questions), accuracy {} -> {}",
            report.kept,
            report.total,
            report.questions_kept,
            pct(accuracy_before),
            pct(accuracy_after)
        );
        accuracy_before = accuracy_after;
        reports.push(report);
    }
    let final_dir = run.path("final");
    policy.save_with_masters(&final_dir, &master_weights)?;
    run.write_summary(&serde_json::json!({
        "rounds": reports,
        "eval_questions": eval.len(),
        "train_questions": used,
        "seconds": run.elapsed().as_secs_f64(),
    }))?;
    let last = reports.last();
    print_summary(
        &run,
        &[
            ("rounds", reports.len().to_string()),
            (
                "kept (last)",
                last.map_or("-".into(), |r| format!("{}/{}", r.kept, r.total)),
            ),
            (
                "accuracy",
                match (reports.first(), last) {
                    (Some(first), Some(last)) => {
                        format!(
                            "{} -> {}",
                            pct(first.accuracy_before),
                            pct(last.accuracy_after)
                        )
                    }
                    _ => "-".into(),
                },
            ),
            ("model", final_dir.display().to_string()),
        ],
    );
    Ok(())
}

fn pct(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * x)
    }
}

/// Splits off up to `n` questions with a gold answer from the end as the held-out set.
fn split_held_out(questions: &[QaRecord], n: usize) -> (Vec<QaRecord>, Vec<QaRecord>) {
    let mut eval = Vec::new();
    let mut held = vec![false; questions.len()];
    for (i, q) in questions.iter().enumerate().rev() {
        if eval.len() == n {
            break;
        }
        if let Some(gold) = &q.gold {
            held[i] = true;
            eval.push(QaRecord {
                question: q.question.clone(),
                gold: Some(gold.clone()),
                line: i + 1,
                ..QaRecord::default()
            });
        }
    }
    eval.reverse();
    let train = questions
        .iter()
        .zip(&held)
        .filter(|(_, &h)| !h)
        .map(|(q, _)| q.clone())
        .collect();
    (train, eval)
}

/// Writes `conversations` as `{"messages": [...]}` JSONL lines.
pub(crate) fn write_messages(path: &Path, conversations: &[Conversation]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for c in conversations {
        writeln!(out, "{}", serde_json::json!({ "messages": c.messages }))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_questions_have_gold_and_come_from_the_end() {
        let q = |s: &str, g: Option<&str>| QaRecord {
            question: s.into(),
            gold: g.map(Into::into),
            ..QaRecord::default()
        };
        let all = [
            q("a", Some("1")),
            q("b", None),
            q("c", Some("3")),
            q("d", None),
            q("e", Some("5")),
        ];
        let (train, eval) = split_held_out(&all, 2);
        assert_eq!(
            eval.iter().map(|e| e.question.as_str()).collect::<Vec<_>>(),
            ["c", "e"]
        );
        assert_eq!(
            train
                .iter()
                .map(|t| t.question.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "d"]
        );
    }
}
