//! `sft`: supervised fine-tuning on `{"messages": [...]}` JSONL conversations (the loss on
//! assistant tokens only), with checkpoints in the Hugging Face layout and exact resume.
//!
//! `mathrl --recipe sft --model DIR --data train.jsonl [--output DIR] [--set steps=..]`

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use mathrl::model::Trainable;
use mathrl::{Policy, Tokenizer};
use mathrl_learners::sft::{SftConfig, SftLearner};
use mathrl_learners::sft_data::{
    load_conversations, tokenize_conversation, Conversation, SftExample, ShuffledLoader,
};
use mathrl_learners::{
    without_keys, CheckpointConfig, Decay, LrSchedule, ResumeConfig, RunIdentity, RunState,
};
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::driver::prepare;
use crate::precision::{DtypeSetting, Precision};
use crate::resume::checked_start;
use crate::run::{print_summary, RunContext};

/// Settings of the `sft` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftRecipeConfig {
    /// Optimisation steps (`--max-steps` bounds them further).
    pub steps: u64,
    /// Conversations per optimisation step.
    pub batch_size: usize,
    /// Conversations at the head of the data held out for the held-out loss (not trained on).
    pub eval_examples: usize,
    /// Held-out loss every this many steps (0 = only at the end).
    pub eval_every: u64,
    /// A checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Most recent checkpoints kept.
    pub keep_checkpoints: usize,
    /// Directory of the checkpoints, under the run's output directory; a loop resumes from the
    /// latest one there (two loops of one run need two directories).
    pub checkpoint_dir: String,
    /// The learner: AdamW, schedule (peak 1e-5 with cosine decay over `steps`, the report's),
    /// micro-batch size, maximum length and packing.
    pub learner: SftConfig,
    /// Compute dtype of the policy (`--dtype` wins): auto (f32 on CPU, bf16 on CUDA), f32, bf16,
    /// f16. Trained weights keep f32 masters.
    pub dtype: DtypeSetting,
    /// Dtype of `final/` and the checkpoints' models: auto (the loaded files' dtype) or a dtype.
    pub save_dtype: DtypeSetting,
    /// Resuming: a checkpoint of another seed, data or settings is refused unless
    /// `resume.allow_changed`.
    pub resume: ResumeConfig,
}

/// Settings a resumed SFT run may change: they bound or watch the run, not what it computes.
const RESUMABLE_KEYS: &[&str] = &[
    "steps",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "checkpoint_dir",
    "save_dtype",
    "resume",
];

impl Default for SftRecipeConfig {
    fn default() -> Self {
        let mut learner = SftConfig::default();
        learner.train_step.schedule = LrSchedule {
            peak_lr: 1e-5,
            warmup_steps: 0,
            decay: Decay::Cosine {
                total_steps: 1000,
                min_lr_ratio: 0.07,
            },
        };
        Self {
            steps: 1000,
            batch_size: 32,
            eval_examples: 64,
            eval_every: 100,
            checkpoint_every: 200,
            keep_checkpoints: 2,
            checkpoint_dir: "checkpoints".into(),
            learner,
            dtype: DtypeSetting::Auto,
            save_dtype: DtypeSetting::Auto,
            resume: ResumeConfig::default(),
        }
    }
}

/// What an SFT run produced.
pub struct SftOutcome {
    /// The trained policy.
    pub policy: Policy,
    /// Its weights in f32 by name, the optimiser's masters (see [`Policy::save_with_masters`]).
    pub master_weights: Vec<(String, Tensor)>,
    /// Optimisation steps taken (including those of a resumed run before the resume).
    pub steps: u64,
    /// Training loss of the last step.
    pub final_loss: f64,
    /// Held-out loss at the end, when examples were held out.
    pub eval_loss: Option<f64>,
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<SftRecipeConfig>(cli, "sft")? else {
        return Ok(());
    };
    let config = &recipe.config;
    // Before the run directory and the model: a bad setting fails at once.
    config
        .learner
        .validate()
        .context("config section `learner`")?;
    let model_dir = recipe.model_dir()?;
    let data = recipe.data_file("FILE.jsonl")?;
    let run = recipe.start()?;
    let tokenizer = Tokenizer::from_dir(model_dir)?;
    let conversations = load_conversations(data)?;
    let precision = Precision::resolve(cli.dtype, config.dtype, config.save_dtype);
    let policy = Policy::load(model_dir, &run.device, precision.compute, Trainable::Yes)?
        .with_save_dtype(precision.save);
    let outcome = train_sft(policy, &tokenizer, &conversations, config, &run)?;
    let final_dir = run.path("final");
    outcome
        .policy
        .save_with_masters(&final_dir, &outcome.master_weights)?;
    run.write_summary(&serde_json::json!({
        "steps": outcome.steps,
        "final_loss": outcome.final_loss,
        "eval_loss": outcome.eval_loss,
        "seconds": run.elapsed().as_secs_f64(),
    }))?;
    print_summary(
        &run,
        &[
            ("steps", outcome.steps.to_string()),
            ("train loss", format!("{:.4}", outcome.final_loss)),
            ("held-out loss", fmt_loss(outcome.eval_loss)),
            ("model", final_dir.display().to_string()),
        ],
    );
    Ok(())
}

fn fmt_loss(loss: Option<f64>) -> String {
    loss.map_or_else(|| "-".into(), |l| format!("{l:.4}"))
}

/// Tokenizes `conversations`; an error names the conversation.
pub fn tokenize_all(
    tokenizer: &Tokenizer,
    conversations: &[Conversation],
    max_length: usize,
) -> Result<Vec<SftExample>> {
    conversations
        .iter()
        .enumerate()
        .map(|(i, c)| {
            tokenize_conversation(tokenizer, &c.messages, max_length)
                .with_context(|| format!("conversation {}", i + 1))
        })
        .collect()
}

/// An example's bytes for the run's data hash: its tokens and mask, so that another template,
/// tokenizer or `max_length` counts as other data.
fn example_bytes(example: &SftExample) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(example.input_ids.len() * 5);
    for id in &example.input_ids {
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    bytes.extend(example.assistant_mask.iter().map(|&m| u8::from(m)));
    bytes
}

/// The SFT loop: held-out split, seeded shuffled batches, periodic held-out loss and
/// checkpoints under `<output>/<checkpoint_dir>`, resuming from the latest checkpoint there, else
/// from `--resume`.
pub fn train_sft(
    policy: Policy,
    tokenizer: &Tokenizer,
    conversations: &[Conversation],
    config: &SftRecipeConfig,
    run: &RunContext,
) -> Result<SftOutcome> {
    let examples = tokenize_all(tokenizer, conversations, config.learner.max_length)?;
    let held = config.eval_examples.min(examples.len() / 2);
    let (eval_set, train_set) = examples.split_at(held);
    if train_set.is_empty() {
        bail!("sft: no training conversations left after holding out {held}");
    }
    let eval_refs: Vec<&SftExample> = eval_set.iter().collect();
    let checkpoints = CheckpointConfig::new(
        run.path(&config.checkpoint_dir),
        config.checkpoint_every,
        config.keep_checkpoints,
    );
    let identity = RunIdentity::new(
        run.seed,
        run.data_file.as_deref(),
        examples.iter().map(example_bytes),
        without_keys(serde_json::to_value(config)?, RESUMABLE_KEYS),
    );
    let resume_from = checked_start(
        run.resume.as_ref(),
        &checkpoints.dir,
        &identity,
        config.resume,
    )?;
    let mut learner = SftLearner::new(policy, config.learner, run.metrics.clone())?;
    let mut loader = ShuffledLoader::new(train_set.len(), run.seed);
    if let Some(dir) = &resume_from {
        let state = learner
            .restore(dir)
            .with_context(|| format!("resuming from {}", dir.display()))?;
        if let Some(cursor) = state.data_cursor {
            loader.seek(cursor);
        }
        tracing::info!(step = learner.step_count(), checkpoint = %dir.display(), "resumed");
    }
    let total = run.max_steps.map_or(config.steps, |m| m.min(config.steps));
    let mut progress = run.step_progress("sft", total);
    let mut final_loss = f64::NAN;
    while learner.step_count() < total {
        let batch: Vec<&SftExample> = loader
            .next_indices(config.batch_size)
            .into_iter()
            .map(|i| &train_set[i])
            .collect();
        let report = learner.step(&batch)?;
        final_loss = report.loss;
        let step = report.step;
        progress.step(
            step,
            &[
                ("loss", format!("{final_loss:.4}")),
                ("lr", format!("{:.2e}", report.update.lr)),
            ],
        );
        if config.eval_every > 0 && step % config.eval_every == 0 && !eval_refs.is_empty() {
            let loss = learner.evaluate(&eval_refs)?;
            run.metrics.scalar("eval/loss", step, loss);
            tracing::info!(step, train_loss = final_loss, eval_loss = loss, "sft step");
        }
        let diverged = learner.check_diverged();
        if checkpoints.due(step) || step == total || diverged.is_err() {
            let state = RunState {
                data_cursor: Some(loader.cursor()),
                identity: Some(identity.clone()),
                ..RunState::default()
            };
            let dir = learner.save_checkpoint(&checkpoints, &state)?;
            diverged.with_context(|| format!("sft step {step} (checkpoint {})", dir.display()))?;
        }
    }
    progress.finish();
    let eval_loss = if eval_refs.is_empty() {
        None
    } else {
        Some(learner.evaluate(&eval_refs)?)
    };
    let steps = learner.step_count();
    Ok(SftOutcome {
        policy: learner.policy().clone(),
        master_weights: learner.master_weights()?,
        steps,
        final_loss,
        eval_loss,
    })
}
