//! `qwen25-math-rl`: GRPO with the report's shaped reward (answer checker + RM when one is given,
//! checker only otherwise), an optional query filter, and greedy held-out accuracy before and
//! after; with `--eval-data FILE` or `--datasets a,b` also greedy accuracy on those sets before
//! the first step, every `eval_every` steps and at the end (`eval/<set>/accuracy`).
//!
//! With no `--model` and no `--data` it runs the embedded default: the tiny policy and RM shipped
//! under `recipes/assets/` on the procedural task, with settings sized for a 2-core CPU (see
//! [`RlConfig::embedded_default`]); otherwise the report's settings (group 32, 128 prompts per
//! step, β = 1e-3, learning rate 1e-5) with completions of up to 2,048 new tokens, the length of
//! the Qwen2.5-Math evaluation.
//!
//! Training runs on the actor runtime (`mathrl-actors`): rollout and reward actor pools around
//! one learner, checkpoints under `<output>/checkpoints` (a second run with the same `--output`
//! resumes from the latest one), Ctrl-C finishes the current step and checkpoints it (twice:
//! exits at once), and `trainer.max_train_seconds` bounds the wall time. With `--listen
//! ADDR:PORT --cookie-file PATH` it also accepts `mathrl worker` processes into its pools
//! (DEPLOYMENT.md); `trainer.rollout_actors = 0` then leaves every rollout to them.
//!
//! With `tir = true` the rollouts are tool-integrated: prompts carry the TIR system prompt of
//! the `eval` recipe, and a python block the policy closes with "```output" runs in the sandbox
//! (the `tool` table, `tool_timeout_ms` per program; the reference protocol: at most
//! `trainer.sampling.max_tool_calls` = 4 calls, long outputs truncated). The output block's
//! tokens are context, masked out of the loss. Remote rollout workers build their own sandbox
//! from the same settings. The held-out before/after accuracy, the evaluation sets and the
//! query filter answer with TIR too.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use mathrl::data::procedural::Split;
use mathrl::data::{load_qa_report, QaRecord};
use mathrl::memory::MemoryPlan;
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::{Policy, Tokenizer};
use mathrl_actors::{Trainer, TrainerConfig};
use mathrl_learners::{
    without_keys, AdvantageEstimator, GrpoConfig, GrpoLearner, LossAggregation, LrSchedule,
    ResumeConfig,
};
use mathrl_rewards::{RewardResources, RewardSpec, Verifier};
use mathrl_sandbox::SandboxConfig;
use serde::{Deserialize, Serialize};

use crate::assets::{
    default_policy_dir, default_rm_dir, find_asset, procedural_items, BOOTSTRAP_TRAIN_PROBLEMS,
    POLICY_ASSET, RM_ASSET,
};
use crate::cli::Cli;
use crate::decontamination::decontaminate_qa;
use crate::driver::prepare_with;
use crate::eval::prompts::TIR_SYSTEM;
use crate::eval::EvalMode;
use crate::placement::Placement;
use crate::precision::{DtypeSetting, Precision};
use crate::progress::grpo_fields;
use crate::resume::ResumeFrom;
use crate::run::{print_summary, require_dir, RunContext};
use crate::tools::python::tir_settings;
use crate::train::accuracy::{greedy_accuracy, Accuracy};
use crate::train::memory_plan::{
    grpo_plan_input, longest_prompt_tokens, print_and_check, MemoryPlanConfig,
};
use crate::train::query_filter::{filter_queries, QueryFilterConfig};
use crate::train::reasoning::{Reasoning, TIR_KEYS};
use crate::train::rl_eval::{describe_sets, eval_sets, RlEvaluator};

/// How the reward is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Scale α of the RM score in σ(α·r_m) + (r_v − 1) (the report's 0.5).
    pub alpha: f32,
    /// Use the RM when one is given (`--rm`, or the embedded one); otherwise the checker alone.
    pub use_rm: bool,
    /// (question, response) pairs per RM forward pass.
    pub rm_batch_size: usize,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            alpha: 0.5,
            use_rm: true,
            rm_batch_size: 16,
        }
    }
}

impl RewardConfig {
    /// Checks the ranges; the error names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.alpha.is_finite() {
            return Err(format!("alpha must be finite, not {}", self.alpha));
        }
        if self.rm_batch_size == 0 {
            return Err("rm_batch_size must be at least 1".into());
        }
        Ok(())
    }

    /// The reward of a run: shaped with the RM when one is available and `use_rm`, the checker
    /// alone otherwise.
    pub fn spec(&self, rm_available: bool) -> RewardSpec {
        if rm_available && self.use_rm {
            RewardSpec::Shaped {
                alpha: self.alpha,
                rm_batch_size: self.rm_batch_size,
            }
        } else {
            RewardSpec::Checker
        }
    }
}

/// Settings of the `qwen25-math-rl` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// Optimisation steps (`--max-steps` bounds them further).
    pub steps: u64,
    /// The GRPO learner: rollout settings (group size 32, temperature, length), loss (ε,
    /// β = 1e-3, `grpo` aggregation), advantages, AdamW, schedule (1e-5), 512 completions per
    /// update (`mini_batch_size`), micro-batch. The embedded default: `dapo`, one update per step.
    pub grpo: GrpoConfig,
    /// Actor pools, prompts per step (128), other sampling settings, synchronisation.
    pub trainer: TrainerConfig,
    /// Reward shaping.
    pub reward: RewardConfig,
    /// The report's query filter.
    pub query_filter: QueryFilterConfig,
    /// Held-out questions of the greedy before/after accuracy (0 = skip).
    pub eval_questions: usize,
    /// Longest greedy answer in the before/after evaluation and on the evaluation sets.
    pub eval_max_new_tokens: usize,
    /// Evaluate on the evaluation sets (`--eval-data`, `--datasets`) every this many steps;
    /// 0 = only before the first step and at the end.
    pub eval_every: u64,
    /// Compute dtype of the policy, reference, RM and rollout engines (`--dtype` wins): auto (f32
    /// on CPU, bf16 on CUDA), f32, bf16, f16. The policy's trained weights keep f32 masters.
    pub dtype: DtypeSetting,
    /// Dtype of `final/` and the checkpoints' models: auto (the loaded files' dtype) or a dtype
    /// (`f32` keeps a bf16 run's full precision).
    pub save_dtype: DtypeSetting,
    /// The memory plan printed (and checked) before the weights load.
    pub memory_plan: MemoryPlanConfig,
    /// Resuming: a checkpoint of another seed, data or settings is refused unless
    /// `resume.allow_changed`.
    pub resume: ResumeConfig,
    /// How `--data` is read.
    pub data: RlDataConfig,
    /// Tool-integrated reasoning in the rollouts: the TIR system prompt, python blocks run in the
    /// sandbox, their output tokens masked out of the loss. Default false.
    pub tir: bool,
    /// Wall-clock limit of one TIR program in milliseconds (the reference: 5 s); overrides
    /// `tool.timeout_ms`.
    pub tool_timeout_ms: u64,
    /// The TIR sandbox: limits and isolation layers (`tool.allow_weaker_isolation = true` runs
    /// with missing layers, with a warning).
    pub tool: SandboxConfig,
    /// Drop the `--data` prompts that overlap the evaluation sets (`--data-dir`, default the
    /// shipped ones); the embedded default's procedural problems are not checked.
    pub decontaminate: bool,
}

/// How the RL prompts of `--data` are read (JSONL: `question`/`problem`/`prompt`, gold in
/// `answer`/`gold`/`solution`/`ground_truth`/`reward_model.ground_truth`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlDataConfig {
    /// The data set of lines that name none in a `dataset` field (`gsm8k`, `math`, ...): it
    /// picks the checker's answer extraction. Default none (the MATH rules).
    pub dataset: Option<String>,
}

/// Settings a resumed RL run may change: they bound, watch or parallelise the run, not what it
/// computes (`trainer.seed` is replaced by `--seed`, which the identity records itself).
const RESUMABLE_KEYS: &[&str] = &[
    "steps",
    "trainer.max_steps",
    "trainer.seed",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.max_train_seconds",
    "trainer.handle_signals",
    "trainer.sample_text_every",
    "trainer.sample_text_completions",
    "trainer.rollout_actors",
    "trainer.reward_actors",
    "trainer.threads_per_rollout_actor",
    "trainer.message_deadline",
    "trainer.rollout_deadline",
    "trainer.max_attempts",
    "eval_questions",
    "eval_max_new_tokens",
    "eval_every",
    "save_dtype",
    "memory_plan",
    "resume",
    // It acts through the prompts, which the identity hashes.
    "decontaminate",
    // The same update up to float rounding.
    "grpo.pack_groups",
];

/// New tokens per answer in the Qwen2.5-Math evaluation: the report-scale rollout length and the
/// length of the before/after evaluation (the `eval` recipe's default too).
const QWEN25_MATH_EVAL_MAX_NEW_TOKENS: usize = 2048;

impl Default for RlConfig {
    fn default() -> Self {
        // The report: 128 prompts per step, 32 completions each; completions as long as the
        // Qwen2.5-Math evaluation's (2,048 new tokens), which the learner's token-bounded
        // micro-batches (`grpo.micro_batch_tokens`) keep within memory.
        let mut grpo = GrpoConfig::default();
        grpo.rollout.group_size = 32;
        grpo.rollout.max_new_tokens = QWEN25_MATH_EVAL_MAX_NEW_TOKENS;
        // Recomputing the decoder layers' activations is what fits a 1.5B policy on one 80 GB GPU
        // at these lengths (BENCHMARKS.md, memory plans): 178 GiB planned without, 68 GiB with.
        grpo.gradient_checkpointing = true;
        // The report's GRPO: 512 completions per update (8 updates per step of 128 × 32), each
        // completion's token mean, then the mean over completions.
        grpo.mini_batch_size = 512;
        grpo.loss.aggregation = LossAggregation::Grpo;
        Self {
            steps: 1000,
            grpo,
            trainer: TrainerConfig {
                prompts_per_step: 128,
                checkpoint_every: 50,
                ..TrainerConfig::default()
            },
            reward: RewardConfig::default(),
            query_filter: QueryFilterConfig::default(),
            eval_questions: 200,
            eval_max_new_tokens: QWEN25_MATH_EVAL_MAX_NEW_TOKENS,
            eval_every: 0,
            dtype: DtypeSetting::Auto,
            save_dtype: DtypeSetting::Auto,
            memory_plan: MemoryPlanConfig::default(),
            resume: ResumeConfig::default(),
            data: RlDataConfig::default(),
            tir: false,
            tool_timeout_ms: 5000,
            tool: SandboxConfig::default(),
            decontaminate: true,
        }
    }
}

impl RlConfig {
    /// The embedded default's settings: the report's recipe scaled to a 1.7M-parameter policy
    /// and two CPU cores (smaller groups and batches, short answers, a higher learning rate).
    /// Tuned on the shipped policy (BENCHMARKS.md): Dr. GRPO advantages (no std scaling), so
    /// that the RM's small score differences in groups the checker scores alike do not become
    /// full-size advantages; learning rate 1e-4 (5e-5 learns the same, more slowly).
    pub fn embedded_default() -> Self {
        // 60 steps: +17.5 to +20.5 points on seeds 0–2 in 3 to 4.5 minutes on 2 cores
        // (BENCHMARKS.md, "Embedded default: the default run, 3 seeds").
        let mut config = Self {
            steps: 60,
            ..Self::default()
        };
        // A wall-clock budget so the default finishes in minutes on any laptop.
        config.trainer.max_train_seconds = 420.0;
        config.grpo.train_step.schedule = LrSchedule::constant(1e-4);
        config.grpo.advantage = AdvantageEstimator::DrGrpo;
        config.grpo.micro_batch_size = 16;
        // ~60 prompt tokens before 15–20 sampled ones: packing a group's prompt once with its
        // completions cuts the learner's tokens about threefold.
        config.grpo.pack_groups = true;
        config.grpo.log_entropy = false;
        config.grpo.loss.beta = 0.0; // no reference model: the run is short and CPU-bound
        config.grpo.filter_zero_variance_groups = true;
        config.trainer.prompts_per_step = 32;
        config.grpo.rollout.group_size = 8;
        config.trainer.checkpoint_every = 10;
        config.grpo.rollout.max_new_tokens = 160;
        // A 1.7M-parameter policy's activations are small: nothing to recompute.
        config.grpo.gradient_checkpointing = false;
        // One update per step, token-level loss: the settings the shipped policy was tuned with.
        config.grpo.mini_batch_size = 0;
        config.grpo.loss.aggregation = LossAggregation::Dapo;
        config.eval_max_new_tokens = 160;
        config
    }
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let embedded = cli.model.is_none() && cli.data.is_none();
    let base = if embedded {
        RlConfig::embedded_default()
    } else {
        RlConfig::default()
    };
    let Some(recipe) = prepare_with(cli, "qwen25-math-rl", base, |_| {})? else {
        return Ok(());
    };
    let config = recipe.config.clone();
    validate(&config, cli)?;
    let mut identity_config = without_keys(serde_json::to_value(&config)?, RESUMABLE_KEYS);
    if !config.tir {
        identity_config = without_keys(identity_config, TIR_KEYS);
    }
    let model_dir = cli.model.clone().unwrap_or_else(default_policy_dir);
    let rm_dir = cli.rm.clone().or_else(|| embedded.then(default_rm_dir));
    if cli.model.is_none() {
        require_embedded_assets(embedded && cli.rm.is_none())?;
    }
    require_dir(&model_dir, "model")?;
    // Prompts and the held-out questions, before the run directory exists: a bad data file
    // leaves nothing behind.
    let (prompts, held_out) = match &cli.data {
        Some(path) => (
            decontaminate_qa(
                load_prompts(path, config.data.dataset.as_deref())?,
                config.decontaminate,
                cli.data_dir.as_deref(),
                "prompts",
            )?,
            Vec::new(),
        ),
        None => (
            procedural_items(Split::Train, BOOTSTRAP_TRAIN_PROBLEMS, 20_000)?,
            procedural_items(Split::HeldOut, 0, config.eval_questions)?,
        ),
    };
    let eval_sets = eval_sets(cli, config.data.dataset.as_deref())?;
    if !eval_sets.is_empty() {
        eprintln!("evaluation sets: {}", describe_sets(&eval_sets));
    }
    if config.eval_every > 0 && eval_sets.is_empty() {
        anyhow::bail!(
            "eval_every = {} needs evaluation sets: --eval-data FILE or --datasets NAMES",
            config.eval_every
        );
    }

    // The sandbox before the run directory: one that cannot start fails with its own error
    // (which isolation layer is missing) and leaves nothing behind.
    let reasoning = Reasoning::of_config(config.tir, &config.tool, config.tool_timeout_ms)?;

    let run = recipe.start()?;
    let placement = Placement::from_cli(cli, &run.device)?;
    let tokenizer = Tokenizer::from_dir(&model_dir)?;
    let precision = Precision::resolve(cli.dtype, config.dtype, config.save_dtype);

    // The reward: the strict checker, shaped with the RM when there is one; remote reward
    // workers build theirs from the same spec.
    let reward_spec = config.reward.spec(rm_dir.is_some());
    let rm_dir = rm_dir.filter(|_| reward_spec.uses_reward_model());
    if let Some(dir) = &rm_dir {
        require_dir(dir, "reward model")?;
    }

    // The memory plan, from the config.json files, before any weight is loaded.
    let prompt_tokens = match config.memory_plan.prompt_tokens {
        0 => longest_prompt_tokens(
            &tokenizer,
            config.tir.then_some(TIR_SYSTEM),
            prompts.iter().map(|p| p.question.as_str()),
        )?,
        n => n,
    };
    let plan = MemoryPlan::new(&grpo_plan_input(
        Qwen2Config::from_model_dir(&model_dir)?,
        rm_dir
            .as_deref()
            .map(Qwen2Config::from_model_dir)
            .transpose()?,
        precision.compute,
        &config.grpo,
        &config.trainer,
        prompt_tokens,
        &placement,
    ));
    print_and_check(&plan, &placement, config.memory_plan.check)?;

    let policy = Policy::load(&model_dir, &run.device, precision.compute, Trainable::Yes)?
        .with_save_dtype(precision.save);
    let reward = reward_spec.build(&RewardResources {
        rm_dir: rm_dir.as_deref(),
        device: &placement.reward_model,
        dtype: precision.compute,
    })?;
    let verifier = crate::train::verifier::default_verifier();

    let evaluator = Arc::new(Mutex::new(RlEvaluator::new(
        eval_sets,
        tokenizer.clone(),
        verifier.clone(),
        config.eval_max_new_tokens,
        reasoning.clone(),
        run.metrics.clone(),
    )));
    let before = evaluate(
        &policy,
        &tokenizer,
        &held_out,
        verifier.as_ref(),
        &reasoning.greedy_mode(config.eval_max_new_tokens),
        &run,
        0,
    )?;
    let prompts = if config.query_filter.enabled {
        filter_queries(
            &policy,
            &tokenizer,
            &prompts,
            verifier.as_ref(),
            &config.query_filter,
            &reasoning,
            run.seed,
        )?
    } else {
        prompts
    };
    let records: Vec<QaRecord> = prompts
        .into_iter()
        .enumerate()
        .map(|(i, item)| QaRecord {
            id: format!("prompt-{i}"),
            ..item
        })
        .collect();

    // GRPO through the actor runtime.
    let mut trainer_config = config.trainer.clone();
    let max_steps = run.max_steps.map_or(config.steps, |m| m.min(config.steps));
    trainer_config.max_steps = max_steps;
    trainer_config.seed = run.seed;
    let rollout_actors = trainer_config.rollout_actors;
    let learner = GrpoLearner::new(policy, None, config.grpo, run.metrics.clone())?;
    let mut trainer = Trainer::new(
        trainer_config,
        learner,
        tokenizer.clone(),
        reward,
        run.metrics.clone(),
    )?
    .with_checkpoint_dir(run.path("checkpoints"))
    .with_rollout_device(placement.rollout.clone())
    .with_identity(identity_config, cli.data.clone(), config.resume)
    .with_resume_from(ResumeFrom::start(
        run.resume.as_ref(),
        &run.path("checkpoints"),
    )?);
    if let Some(tool) = reasoning.tool() {
        let worker_settings =
            serde_json::to_value(tir_settings(&config.tool, config.tool_timeout_ms))?;
        trainer = trainer
            .with_system_prompt(TIR_SYSTEM)
            .with_tool(tool.clone(), worker_settings);
    }
    if let Some(cluster) = crate::cluster::cluster_config(cli, Some(reward_spec))? {
        trainer = trainer.with_cluster(cluster);
    }
    let mut progress = run.step_progress("grpo", max_steps);
    trainer = trainer.with_step_observer(Box::new(move |summary| {
        progress.step(summary.step, &grpo_fields(summary));
        if summary.step >= summary.max_steps {
            progress.finish();
        }
    }));
    if !lock(&evaluator).is_empty() {
        // Before the first step (the resumed weights on a resume), then every `eval_every`.
        let watched = evaluator.clone();
        trainer = trainer.with_policy_observer(
            config.eval_every,
            Box::new(move |step, policy| lock(&watched).evaluate(policy, step)),
        );
    }
    let report = trainer.run(records)?;
    let final_dir = run.path("final");
    report
        .policy
        .save_with_masters(&final_dir, &report.master_weights)?;

    let after = evaluate(
        &report.policy,
        &tokenizer,
        &held_out,
        verifier.as_ref(),
        &reasoning.greedy_mode(config.eval_max_new_tokens),
        &run,
        report.steps,
    )?;
    let mut evaluator = lock(&evaluator);
    evaluator.evaluate(&report.policy, report.steps);
    let seconds = run.elapsed().as_secs_f64();
    run.write_summary(&serde_json::json!({
        "before": before,
        "after": after,
        "eval": evaluator.summary(),
        "steps": report.steps,
        "reward": reward_spec.kind(),
        "seconds": seconds,
        "groups_by_worker": report.groups_by_worker,
        "remote_workers": report
            .remote_workers
            .iter()
            .map(|(name, role)| serde_json::json!({ "name": name, "role": role }))
            .collect::<Vec<_>>(),
        "failures": report.failures,
        "disconnects": report.disconnects,
        "rejected_results": report.rejected_results,
        "dropped_workers": report.dropped_workers,
        "dropped_stale_groups": report.dropped_stale_groups,
        "unscored": report.unscored,
        "restarts": report.restarts,
        "stopped_early": report.stopped_early,
        "time_limit_reached": report.time_limit_reached,
        "rollout_busy_fraction": report
            .rollout_busy_fraction(report.rollout_workers(rollout_actors).max(1)),
    }))?;
    let table = accuracy_table(before, after);
    println!("{table}");
    run.metrics.text("eval/before_after", report.steps, &table);
    print_summary(
        &run,
        &[
            ("steps", report.steps.to_string()),
            ("accuracy", accuracy_change(before, after)),
            ("policy", final_dir.display().to_string()),
            ("checkpoints", run.path("checkpoints").display().to_string()),
        ],
    );
    Ok(())
}

/// Checks every section of the config and the cluster flags, before the run directory exists and
/// any model loads: a bad setting fails at once, not after the before-evaluation (minutes).
pub fn validate(config: &RlConfig, cli: &Cli) -> Result<()> {
    let section = |name: &str, result: std::result::Result<(), String>| {
        result.map_err(|e| anyhow::anyhow!("config section `{name}`: {e}"))
    };
    section("grpo", config.grpo.validate().map_err(|e| e.to_string()))?;
    let step_size = config
        .grpo
        .validate_step_size(config.trainer.prompts_per_step);
    section("grpo", step_size.map_err(|e| e.to_string()))?;
    section(
        "grpo.train_step.schedule",
        config
            .grpo
            .train_step
            .schedule
            .validate()
            .map_err(|e| e.to_string()),
    )?;
    // With --listen the local pools may be empty: remote workers fill them.
    let trainer = if cli.listen.is_some() {
        config.trainer.validate_with_remote_workers()
    } else {
        config.trainer.validate()
    };
    section("trainer", trainer.map_err(|e| e.to_string()))?;
    section("reward", config.reward.validate())?;
    section("query_filter", config.query_filter.validate())?;
    crate::cluster::cluster_config(cli, None)?;
    Ok(())
}

/// The RL prompts of `path`, with what was read and skipped printed; a file in which most golds
/// have no final answer (worked solutions without `####` or `\\boxed{}`) is refused, since
/// every reward would be 0.
pub(crate) fn load_prompts(path: &Path, dataset: Option<&str>) -> Result<Vec<QaRecord>> {
    let load = load_qa_report(path, dataset)?;
    let described = format!("{}: {}", path.display(), load.describe());
    if 2 * load.unparsed_golds.len() > load.records.len() {
        anyhow::bail!(
            "{described}; more than half the gold answers have no final answer the checker can \
             use: give the answer alone, after `####`, or in `\\boxed{{}}`"
        );
    }
    eprintln!("{described}");
    Ok(load.records)
}

/// The embedded default's policy (and RM, when it is the embedded one) must be found (see
/// [`crate::assets`] for where): a checkout without them, an installed binary without its
/// assets, or a wrong `$MATHRL_ASSETS` gets an error naming every place looked and the ways
/// forward.
fn require_embedded_assets(with_rm: bool) -> Result<()> {
    let names = if with_rm {
        &[POLICY_ASSET, RM_ASSET][..]
    } else {
        &[POLICY_ASSET][..]
    };
    for name in names {
        if let Err(missing) = find_asset(name) {
            anyhow::bail!(
                "the embedded default's assets are missing: {missing}\nInstall them beside the \
                 binary (copy recipes/assets/* to <prefix>/share/mathrl/, see the README), \
                 build them with `mathrl --recipe tiny-bootstrap --output DIR` and point \
                 $MATHRL_ASSETS at DIR/assets, or run a real model with --model DIR --data \
                 qa.jsonl"
            );
        }
    }
    Ok(())
}

/// Greedy held-out accuracy, logged under `eval/held_out_accuracy`; `None` without questions.
fn evaluate(
    policy: &Policy,
    tokenizer: &Tokenizer,
    held_out: &[QaRecord],
    verifier: &dyn Verifier,
    mode: &EvalMode,
    run: &RunContext,
    step: u64,
) -> Result<Option<Accuracy>> {
    if held_out.is_empty() {
        return Ok(None);
    }
    let accuracy = greedy_accuracy(policy, tokenizer, held_out, verifier, mode)
        .context("held-out evaluation")?;
    run.metrics
        .scalar("eval/held_out_accuracy", step, accuracy.accuracy);
    tracing::info!(
        step,
        accuracy = accuracy.accuracy,
        n = accuracy.n,
        "greedy held-out accuracy"
    );
    Ok(Some(accuracy))
}

/// The evaluator, also after a panic elsewhere while it was held (its records stay valid).
fn lock(evaluator: &Mutex<RlEvaluator>) -> MutexGuard<'_, RlEvaluator> {
    evaluator
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The before/after table printed at the end.
fn accuracy_table(before: Option<Accuracy>, after: Option<Accuracy>) -> String {
    let n = before.or(after).map_or(0, |a| a.n);
    format!(
        "| held-out (greedy, n={n}) | before | after |\n|---|---|---|\n| accuracy | {} | {} |",
        percent(before),
        percent(after)
    )
}

/// `44.5% → 41.5% (greedy, n=200)`, for the closing summary.
fn accuracy_change(before: Option<Accuracy>, after: Option<Accuracy>) -> String {
    let n = before.or(after).map_or(0, |a| a.n);
    format!(
        "{} → {} (greedy, held-out n={n})",
        percent(before),
        percent(after)
    )
}

/// `44.5%`, or `-` when the accuracy was not measured.
fn percent(a: Option<Accuracy>) -> String {
    a.map_or_else(|| "-".into(), |a| format!("{:.1}%", 100.0 * a.accuracy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrl::model::Qwen2Config;

    #[test]
    fn report_settings_use_the_evaluation_length_and_the_embedded_default_keeps_its_own() {
        let report = RlConfig::default();
        assert_eq!(report.grpo.rollout.max_new_tokens, 2048);
        assert_eq!(report.grpo.effective_loss().max_completion_length, 2048);
        assert_eq!(report.eval_max_new_tokens, 2048);
        // The report's GRPO: 8 updates of 512 completions per step, per-sequence loss.
        assert_eq!(report.grpo.mini_batch_size, 512);
        assert_eq!(report.grpo.loss.aggregation, LossAggregation::Grpo);
        let prompts = report.trainer.prompts_per_step;
        assert!(report.grpo.validate_step_size(prompts).is_ok());
        assert_eq!(prompts * report.grpo.rollout.group_size / 512, 8);

        let embedded = RlConfig::embedded_default();
        assert_eq!(embedded.grpo.rollout.max_new_tokens, 160);
        assert_eq!(embedded.eval_max_new_tokens, 160);
        // One update per step with the token-level loss, as the shipped policy was tuned.
        assert_eq!(embedded.grpo.mini_batch_size, 0);
        assert_eq!(embedded.grpo.loss.aggregation, LossAggregation::Dapo);
        // The token budget never splits the embedded default's micro-batches (a row is at most
        // the shipped policy's context), so its run is the one it was before the budget existed.
        let policy = Qwen2Config::from_file(default_policy_dir().join("config.json")).unwrap();
        assert!(
            embedded.grpo.micro_batch_size * policy.max_position_embeddings
                <= embedded.grpo.micro_batch_tokens
        );
    }
}
