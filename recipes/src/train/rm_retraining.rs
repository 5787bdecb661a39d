//! `rm-retraining`: sample n responses per query from the current policy, label them with the
//! answer checker, and train the reward model with the report's listwise ranking loss; reports
//! held-out pairwise accuracy before and after and writes the RM in the Hugging Face layout.
//!
//! `mathrl --recipe rm-retraining --model POLICY --data qa.jsonl [--rm START_RM] [--output DIR]`
//! (`qa.jsonl` lines: `{"question": .., "answer": ..}`; without `--rm` the RM starts from the
//! policy's backbone with a fresh Qwen2.5-Math-RM head).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::Tensor;
use mathrl::data::jsonl::{read_jsonl, write_jsonl};
use mathrl::data::{load_qa, GoldAnswers, QaRecord};
use mathrl::generation::SamplingParams;
use mathrl::model::Trainable;
use mathrl::{Policy, Tokenizer};
use mathrl_learners::{
    without_keys, CheckpointConfig, ResumeConfig, RmConfig, RmLearner, RmQuery, RunIdentity,
    RunState, SeededRng,
};
use mathrl_rewards::{RewardHeadKind, RewardModel, Verifier};
use mathrl_sandbox::SandboxConfig;
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::decontamination::decontaminate_qa;
use crate::driver::prepare;
use crate::precision::{DtypeSetting, Precision};
use crate::resume::checked_start;
use crate::run::{print_summary, require_dir, RunContext};
use crate::train::reasoning::{Reasoning, TIR_KEYS};

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
    /// Drop the queries that overlap the evaluation sets (`--data-dir`, default the shipped
    /// ones) before sampling.
    pub decontaminate: bool,
    /// Sample tool-integrated responses (the TIR system prompt, python blocks run in the
    /// sandbox, their output blocks kept in the text the RM learns to score). Default false.
    pub tir: bool,
    /// Wall-clock limit of one TIR program in milliseconds (the reference: 5 s); overrides
    /// `tool.timeout_ms`.
    pub tool_timeout_ms: u64,
    /// The TIR sandbox: limits and isolation layers (`tool.allow_weaker_isolation = true` runs
    /// with missing layers, with a warning).
    pub tool: SandboxConfig,
    /// The learner: AdamW, schedule, clipping, micro-batch.
    pub learner: RmConfig,
    /// Compute dtype of the policy and the RM (`--dtype` wins): auto (f32 on CPU, bf16 on CUDA),
    /// f32, bf16, f16. The RM's trained weights keep f32 masters.
    pub dtype: DtypeSetting,
    /// Dtype the retrained RM is saved in: auto (the loaded files' dtype) or a dtype.
    pub save_dtype: DtypeSetting,
    /// A checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Most recent checkpoints kept.
    pub keep_checkpoints: usize,
    /// Directory of the checkpoints and of the labelled samples (`samples.jsonl`, reused by a
    /// resumed run instead of sampling again), under the run's output directory.
    pub checkpoint_dir: String,
    /// Resuming: a checkpoint of another seed, data or settings is refused unless
    /// `resume.allow_changed`.
    pub resume: ResumeConfig,
}

/// Settings a resumed RM retraining run may change: they bound or watch it. `decontaminate`
/// acts through the queries, which the identity hashes.
const RESUMABLE_KEYS: &[&str] = &[
    "epochs",
    "checkpoint_every",
    "keep_checkpoints",
    "checkpoint_dir",
    "save_dtype",
    "resume",
    "decontaminate",
];

/// The labelled samples of one query, as `samples.jsonl` keeps them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LabelledQuery {
    question: String,
    /// (response, judged correct by the checker).
    responses: Vec<(String, bool)>,
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
            decontaminate: true,
            tir: false,
            tool_timeout_ms: 5000,
            tool: SandboxConfig::default(),
            learner: RmConfig::default(),
            dtype: DtypeSetting::Auto,
            save_dtype: DtypeSetting::Auto,
            checkpoint_every: 50,
            keep_checkpoints: 2,
            checkpoint_dir: "checkpoints".into(),
            resume: ResumeConfig::default(),
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
    // Before the run directory and the models: a bad setting fails at once.
    config
        .learner
        .validate()
        .context("config section `learner`")?;
    let model_dir = recipe.model_dir()?;
    let data = recipe.data_file("qa.jsonl")?;
    let items = decontaminate_qa(
        load_qa(data, GoldAnswers::Required)?,
        config.decontaminate,
        cli.data_dir.as_deref(),
        "queries",
    )?;
    // The sandbox before the run directory: one that cannot start fails at once.
    let reasoning = Reasoning::of_config(config.tir, &config.tool, config.tool_timeout_ms)?;
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
    let verifier = crate::train::verifier::default_verifier();
    let outcome = retrain_rm(
        &policy, rm, &tokenizer, &items, verifier, config, &reasoning, &run,
    )?;
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

/// Samples responses for each item and labels them with the checker.
fn label_samples(
    policy: &Policy,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    verifier: &dyn Verifier,
    config: &RmRetrainingConfig,
    reasoning: &Reasoning,
    seed: u64,
) -> Result<Vec<LabelledQuery>> {
    let prompts = items
        .iter()
        .map(|item| reasoning.prompt_ids(tokenizer, &item.question))
        .collect::<Result<Vec<_>>>()?;
    let frozen = policy.frozen_copy()?;
    let mut engine = reasoning.engine(&frozen, tokenizer);
    let params = SamplingParams {
        n: config.samples_per_query,
        temperature: config.temperature,
        top_p: config.top_p,
        max_new_tokens: config.max_new_tokens,
        seed,
        ..SamplingParams::default()
    };
    let out = engine.generate(&prompts, &params)?;
    let mut queries = Vec::with_capacity(items.len());
    for (group, item) in out.groups.iter().zip(items) {
        let mut responses = Vec::with_capacity(group.completions.len());
        for completion in &group.completions {
            let text = tokenizer.decode(&completion.token_ids, true)?;
            let correct = verifier
                .verify(&text, item.gold_or_empty(), None)
                .is_correct();
            responses.push((text, correct));
        }
        queries.push(LabelledQuery {
            question: item.question.clone(),
            responses,
        });
    }
    Ok(queries)
}

/// The labelled samples a resumed run wrote to `cache`, when there are as many as `items`.
fn read_back(cache: &Path, items: usize) -> Result<Option<Vec<LabelledQuery>>> {
    if !cache.is_file() {
        return Ok(None);
    }
    let labelled: Vec<LabelledQuery> = read_jsonl(cache)?;
    if labelled.len() != items {
        tracing::warn!(samples = %cache.display(), "labelled samples do not match the data; sampling again");
        return Ok(None);
    }
    tracing::info!(samples = %cache.display(), "resumed: labelled samples read back");
    Ok(Some(labelled))
}

/// Samples and labels responses for every item, in seeded chunks of 32.
fn sample_all(
    policy: &Policy,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    verifier: &dyn Verifier,
    config: &RmRetrainingConfig,
    reasoning: &Reasoning,
    run: &RunContext,
) -> Result<Vec<LabelledQuery>> {
    let bar = run.progress(items.len() as u64, "sampling");
    let mut labelled = Vec::with_capacity(items.len());
    for (chunk_index, chunk) in items.chunks(32).enumerate() {
        let seed = run.seed.wrapping_add(chunk_index as u64);
        labelled.extend(label_samples(
            policy, tokenizer, chunk, verifier, config, reasoning, seed,
        )?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(labelled)
}

/// Writes the labelled samples to `cache` atomically, for a resumed run to read back.
fn write_samples(cache: &Path, labelled: &[LabelledQuery]) -> Result<()> {
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = cache.with_extension("jsonl.tmp");
    write_jsonl(&partial, labelled)?;
    std::fs::rename(&partial, cache).with_context(|| format!("writing {}", cache.display()))?;
    Ok(())
}

/// The loop: label samples, hold out the last `eval_queries`, train for `epochs` in seeded
/// shuffled steps, and measure held-out pairwise accuracy before and after.
#[allow(clippy::too_many_arguments)] // the run's parts; a struct would only rename them
pub fn retrain_rm(
    policy: &Policy,
    rm: RewardModel,
    tokenizer: &Tokenizer,
    items: &[QaRecord],
    verifier: Arc<dyn Verifier>,
    config: &RmRetrainingConfig,
    reasoning: &Reasoning,
    run: &RunContext,
) -> Result<RmOutcome> {
    let used = if config.max_queries == 0 {
        items.len()
    } else {
        config.max_queries.min(items.len())
    };
    let items = &items[..used];
    let checkpoints = CheckpointConfig::new(
        run.path(&config.checkpoint_dir),
        config.checkpoint_every,
        config.keep_checkpoints,
    );
    let identity = RunIdentity::new(
        run.seed,
        run.data_file.as_deref(),
        items
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()?,
        without_keys(
            without_keys(serde_json::to_value(config)?, RESUMABLE_KEYS),
            if config.tir { &[] } else { TIR_KEYS },
        ),
    );
    let resume_from = checked_start(
        run.resume.as_ref(),
        &checkpoints.dir,
        &identity,
        config.resume,
    )?;
    // Sampling is most of the run's cost: a resumed run reads its samples back.
    let cache = checkpoints.dir.join("samples.jsonl");
    let read = match &resume_from {
        Some(_) => read_back(&cache, items.len())?,
        None => None,
    };
    let labelled = match read {
        Some(labelled) => labelled,
        None => {
            let labelled = sample_all(
                policy,
                tokenizer,
                items,
                verifier.as_ref(),
                config,
                reasoning,
                run,
            )?;
            write_samples(&cache, &labelled)?;
            labelled
        }
    };
    let mut queries = Vec::with_capacity(labelled.len());
    let mut positives = (0, 0);
    for query in &labelled {
        let pairs: Vec<(&str, bool)> = query
            .responses
            .iter()
            .map(|(t, c)| (t.as_str(), *c))
            .collect();
        queries.push(RmQuery::from_text(tokenizer, &query.question, &pairs)?);
        positives.0 += pairs.iter().filter(|(_, correct)| *correct).count();
        positives.1 += pairs.len();
    }
    let held = config.eval_queries.min(queries.len() / 2);
    let (train, eval) = queries.split_at(queries.len() - held);
    let mut learner = RmLearner::new(rm, config.learner, run.metrics.clone())?;
    // Before any restore: the accuracy of the RM the run started from.
    let accuracy_before = learner.evaluate(eval)?.pairwise_accuracy;
    if let Some(dir) = &resume_from {
        learner
            .restore(dir)
            .with_context(|| format!("resuming from {}", dir.display()))?;
        tracing::info!(step = learner.step_count(), checkpoint = %dir.display(), "resumed");
    }
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = SeededRng::new(run.seed ^ 0x5eed_4d52);
    let per_step = config.queries_per_step.max(1);
    let total_steps = (config.epochs * train.len()).div_ceil(per_step) as u64;
    let total_steps = run.max_steps.map_or(total_steps, |m| m.min(total_steps));
    let mut progress = run.step_progress("rm", total_steps);
    // Every epoch's shuffle is drawn, resumed or not, so a resumed run walks the same batches
    // and skips those its checkpoint already trained.
    let mut walked = 0u64;
    'epochs: for _ in 0..config.epochs {
        rng.shuffle(&mut order);
        for chunk in order.chunks(per_step) {
            if walked >= total_steps {
                break 'epochs;
            }
            walked += 1;
            if walked <= learner.step_count() {
                continue;
            }
            let batch: Vec<RmQuery> = chunk.iter().map(|&i| train[i].clone()).collect();
            let report = learner.step(&batch)?;
            let mut fields = Vec::new();
            if let Some(loss) = report.eval.loss {
                fields.push(("loss", format!("{loss:.4}")));
            }
            if let Some(accuracy) = report.eval.pairwise_accuracy {
                fields.push(("pair acc", format!("{:.1}%", 100.0 * accuracy)));
            }
            progress.step(report.step, &fields);
            let diverged = learner.check_diverged();
            if checkpoints.due(report.step) || report.step == total_steps || diverged.is_err() {
                let state = RunState {
                    identity: Some(identity.clone()),
                    ..RunState::default()
                };
                let dir = learner.save_checkpoint(&checkpoints, &state)?;
                diverged.with_context(|| {
                    format!("rm step {} (checkpoint {})", report.step, dir.display())
                })?;
            }
        }
    }
    progress.finish();
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
