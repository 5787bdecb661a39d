//! `rm-retraining`: sample n responses per query from the current policy, label them with the
//! answer checker, and train the reward model with the report's listwise ranking loss; reports
//! held-out pairwise accuracy before and after and writes the RM in the Hugging Face layout.
//!
//! `mathrl --recipe rm-retraining --model POLICY --data qa.jsonl [--rm START_RM] [--output DIR]`
//! (`qa.jsonl` lines: `{"question": .., "answer": ..}`; without `--rm` the RM starts from the
//! policy's backbone with a fresh Qwen2.5-Math-RM head).

use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::Tensor;
use mathrl::data::{load_qa, GoldAnswers, QaRecord};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::Trainable;
use mathrl::{Policy, Tokenizer};
use mathrl_learners::{RmConfig, RmLearner, RmQuery, SeededRng};
use mathrl_rewards::{RewardHeadKind, RewardModel, Verifier};
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::driver::prepare;
use crate::precision::{DtypeSetting, Precision};
use crate::run::{print_summary, require_dir, RunContext};

/// Settings of the `rm-retraining` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmRetrainingConfig {
    /// Responses sampled per query (the report's n = 6).
    pub samples_per_query: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus sampling mass.
    pub top_p: f64,
    /// Longest response in tokens.
    pub max_new_tokens: usize,
    /// Queries used (the head of the data), 0 = all.
    pub max_queries: usize,
    /// Queries held out for the pairwise accuracy (taken from the end of the used queries).
    pub eval_queries: usize,
    /// Passes over the training queries.
    pub epochs: usize,
    /// Queries per optimisation step.
    pub queries_per_step: usize,
    /// The learner: AdamW, schedule, clipping, micro-batch.
    pub learner: RmConfig,
    /// Compute dtype of the policy and the RM (`--dtype` wins): auto (f32 on CPU, bf16 on CUDA),
    /// f32, bf16, f16. The RM's trained weights keep f32 masters.
    pub dtype: DtypeSetting,
    /// Dtype the retrained RM is saved in: auto (the loaded files' dtype) or a dtype.
    pub save_dtype: DtypeSetting,
}

impl Default for RmRetrainingConfig {
    fn default() -> Self {
        Self {
            samples_per_query: 6,
            temperature: 0.7,
            top_p: 0.8,
            max_new_tokens: 512,
            max_queries: 0,
            eval_queries: 64,
            epochs: 1,
            queries_per_step: 8,
            learner: RmConfig::default(),
            dtype: DtypeSetting::Auto,
            save_dtype: DtypeSetting::Auto,
        }
    }
}

/// What an RM retraining run produced.
pub struct RmOutcome {
    /// The trained reward model.
    pub rm: RewardModel,
    /// Its weights in f32 by name, the optimiser's masters.
    pub master_weights: Vec<(String, Tensor)>,
    /// Held-out pairwise accuracy before training.
    pub accuracy_before: Option<f64>,
    /// Held-out pairwise accuracy after training.
    pub accuracy_after: Option<f64>,
    /// Optimisation steps taken.
    pub steps: u64,
    /// Sampled responses the checker judged correct, out of all sampled.
    pub positives: (usize, usize),
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<RmRetrainingConfig>(cli, "rm-retraining")? else {
        return Ok(());
    };
    let config = &recipe.config;
    let model_dir = recipe.model_dir()?;
    let data = recipe.data_file("qa.jsonl")?;
    let run = recipe.start()?;
    let tokenizer = Tokenizer::from_dir(model_dir)?;
    let precision = Precision::resolve(cli.dtype, config.dtype, config.save_dtype);
    let policy = Policy::load(model_dir, &run.device, precision.compute, Trainable::No)?;
    let rm = match &cli.rm {
        Some(dir) => {
            require_dir(dir, "reward model")?;
            RewardModel::load(dir, &run.device, precision.compute, Trainable::Yes)?
        }
        None => RewardModel::from_policy(
            &policy,
            RewardHeadKind::Qwen25MathRm,
            run.seed,
            Trainable::Yes,
        )?,
    }
    .with_save_dtype(precision.save);
    let items = load_qa(data, GoldAnswers::Required)?;
    let verifier = crate::train::verifier::default_verifier();
    let outcome = retrain_rm(&policy, rm, &tokenizer, &items, verifier, config, &run)?;
    let rm_dir = run.path("rm");
    outcome
        .rm
        .save_with_masters(&rm_dir, &outcome.master_weights)?;
    run.write_summary(&serde_json::json!({
        "pairwise_accuracy_before": outcome.accuracy_before,
        "pairwise_accuracy_after": outcome.accuracy_after,
        "steps": outcome.steps,
        "positives": outcome.positives.0,
        "samples": outcome.positives.1,
        "seconds": run.elapsed().as_secs_f64(),
    }))?;
    print_summary(
        &run,
        &[
            ("steps", outcome.steps.to_string()),
            (
                "correct samples",
                format!("{}/{}", outcome.positives.0, outcome.positives.1),
            ),
            (
                "pairwise acc",
                format!(
                    "{} -> {}",
                    pct(outcome.accuracy_before),
                    pct(outcome.accuracy_after)
                ),
            ),
            ("reward model", rm_dir.display().to_string()),
        ],
    );
    Ok(())
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// Samples and labels responses for each item, one [`RmQuery`] per item.
pub fn label_samples(
    policy: &Policy,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    verifier: &dyn Verifier,
    config: &RmRetrainingConfig,
    seed: u64,
) -> Result<(Vec<RmQuery>, (usize, usize))> {
    let prompts = items
        .iter()
        .map(|item| Ok(tokenizer.encode(&tokenizer.question_prompt(&item.question, None)?)?))
        .collect::<Result<Vec<_>>>()?;
    let frozen = policy.frozen_copy()?;
    let mut engine =
        Engine::from_policy(&frozen, EngineConfig::default()).with_tokenizer(tokenizer.clone());
    let params = SamplingParams {
        n: config.samples_per_query,
        temperature: config.temperature,
        top_p: config.top_p,
        max_new_tokens: config.max_new_tokens,
        seed,
        ..SamplingParams::default()
    };
    let out = engine.generate(&prompts, &params)?;
    let (mut positives, mut total) = (0, 0);
    let mut queries = Vec::with_capacity(items.len());
    for (group, item) in out.groups.iter().zip(items) {
        let mut responses = Vec::with_capacity(group.completions.len());
        for completion in &group.completions {
            let text = tokenizer.decode(&completion.token_ids, true)?;
            let correct = verifier
                .verify(&text, item.gold_or_empty(), None)
                .is_correct();
            positives += usize::from(correct);
            total += 1;
            responses.push((text, correct));
        }
        let pairs: Vec<(&str, bool)> = responses.iter().map(|(t, c)| (t.as_str(), *c)).collect();
        queries.push(RmQuery::from_text(tokenizer, &item.question, &pairs)?);
    }
    Ok((queries, (positives, total)))
}

/// The loop: label samples, hold out the last `eval_queries`, train for `epochs` in seeded
/// shuffled steps, and measure held-out pairwise accuracy before and after.
pub fn retrain_rm(
    policy: &Policy,
    rm: RewardModel,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    verifier: Arc<dyn Verifier>,
    config: &RmRetrainingConfig,
    run: &RunContext,
) -> Result<RmOutcome> {
    let used = if config.max_queries == 0 {
        items.len()
    } else {
        config.max_queries.min(items.len())
    };
    let items = &items[..used];
    let bar = run.progress(items.len() as u64, "sampling");
    let mut queries = Vec::with_capacity(items.len());
    let mut positives = (0, 0);
    for (chunk_index, chunk) in items.chunks(32).enumerate() {
        let seed = run.seed.wrapping_add(chunk_index as u64);
        let (labelled, counts) =
            label_samples(policy, tokenizer, chunk, verifier.as_ref(), config, seed)?;
        queries.extend(labelled);
        positives = (positives.0 + counts.0, positives.1 + counts.1);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let held = config.eval_queries.min(queries.len() / 2);
    let (train, eval) = queries.split_at(queries.len() - held);
    let mut learner = RmLearner::new(rm, config.learner, run.metrics.clone())?;
    let accuracy_before = learner.evaluate(eval)?.pairwise_accuracy;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = SeededRng::new(run.seed ^ 0x5eed_4d52);
    let per_step = config.queries_per_step.max(1);
    let total_steps = (config.epochs * train.len()).div_ceil(per_step) as u64;
    let total_steps = run.max_steps.map_or(total_steps, |m| m.min(total_steps));
    let bar = run.progress(total_steps, "rm");
    'epochs: for _ in 0..config.epochs {
        rng.shuffle(&mut order);
        for chunk in order.chunks(per_step) {
            if learner.step_count() >= total_steps {
                break 'epochs;
            }
            let batch: Vec<RmQuery> = chunk.iter().map(|&i| train[i].clone()).collect();
            let report = learner.step(&batch)?;
            bar.set_position(report.step);
            // RM retraining keeps no checkpoints: a diverged run ends here, nothing to save.
            learner
                .check_diverged()
                .with_context(|| format!("rm step {}", report.step))?;
        }
    }
    bar.finish_and_clear();
    let after = learner.evaluate(eval)?;
    tracing::info!(
        before = ?accuracy_before, after = ?after.pairwise_accuracy, pairs = after.pairs,
        "held-out pairwise accuracy"
    );
    Ok(RmOutcome {
        steps: learner.step_count(),
        rm: learner.model().clone(),
        master_weights: learner.master_weights()?,
        accuracy_before,
        accuracy_after: after.pairwise_accuracy,
        positives,
    })
}
