//! The command line of the `mathrl` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mathrl::hub::{resolve_model_dir, HubId};

use crate::precision::DtypeSetting;

/// mathrl: train mathematical-expert language models by self-improvement.
#[derive(Debug, Clone, Parser)]
#[command(name = "mathrl", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// `worker`: join a training run started elsewhere with `--listen` (see DEPLOYMENT.md).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The recipe to run (see --list-recipes).
    #[arg(long)]
    pub recipe: Option<String>,
    /// List the recipes with a one-line description each.
    #[arg(long)]
    pub list_recipes: bool,
    /// Model directory in the Hugging Face layout, or a Hub id (`org/name[@revision]`) already in
    /// the local Hugging Face cache.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Reward-model directory in the Hugging Face layout, or a Hub id in the local cache.
    #[arg(long)]
    pub rm: Option<PathBuf>,
    /// Input file of a tool recipe.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file (tool recipes) or directory (training and evaluation recipes; default
    /// `runs/<recipe>-<timestamp>`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// TensorBoard log directory (default: the output directory).
    #[arg(long)]
    pub logdir: Option<PathBuf>,
    /// Dataset file of a training or evaluation recipe (JSONL; RL data also verl's `.parquet`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation data sets, comma separated, or `all` (recipes `eval` and `qwen25-math-rl`).
    #[arg(long)]
    pub datasets: Option<String>,
    /// A JSONL file of questions with gold answers (the formats of --data) on which
    /// `qwen25-math-rl` measures greedy accuracy during training, as `eval/<file stem>/accuracy`.
    #[arg(long, value_name = "FILE")]
    pub eval_data: Option<PathBuf>,
    /// Questions per evaluation data set, from the top of each file (recipe `eval`; with
    /// `qwen25-math-rl`, of --datasets and --eval-data).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Directory of the evaluation sets, `<dir>/<dataset>/test.jsonl` (default: the shipped ones):
    /// what `eval` evaluates on and what training data is decontaminated against.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A TOML file with the recipe's config (see --print-config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set grpo.loss.beta=0.0` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the recipe's resolved config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Stop after this many optimisation steps.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Resume a training run: a checkpoint directory, or a run directory (its newest
    /// checkpoint); the run continues in --output, by default the resumed run's directory.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Answer-checker profile of the `grade` recipe: qwen25-math (the reference grader's
    /// verdicts) or strict (mathematically right verdicts).
    #[arg(long, default_value = "qwen25-math")]
    pub checker: String,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", global = true)]
    pub device: String,
    /// Compute dtype of the models a recipe loads (policy, reference, RM, rollout engines):
    /// auto (f32 on CPU, bf16 on CUDA), f32, bf16 or f16; wins over the config key `dtype`.
    /// Trained weights keep f32 master copies.
    #[arg(long, value_enum, global = true)]
    pub dtype: Option<DtypeSetting>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device of the rollout engines (their one shared copy of the weights and their KV
    /// caches): cpu, cuda or cuda:N. Default: --device. Recipe qwen25-math-rl.
    #[arg(long, value_name = "DEVICE")]
    pub rollout_device: Option<String>,
    /// Device of the reward model: cpu, cuda or cuda:N. Default: --device. Recipe
    /// qwen25-math-rl.
    #[arg(long, value_name = "DEVICE")]
    pub rm_device: Option<String>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as `mathrl=debug`.
    #[arg(long, default_value = "info", global = true)]
    pub log_level: String,
    /// Training recipes on the actor runtime: also accept `mathrl worker` processes on
    /// ADDR:PORT (port 0 picks a free one and logs it). Needs a cookie: --cookie-file,
    /// MATHRL_COOKIE or --cookie.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// With --listen: read the shared secret workers must present from this file (a trailing
    /// newline is dropped). Wins over MATHRL_COOKIE and --cookie. At least 16 bytes.
    #[arg(long, value_name = "PATH")]
    pub cookie_file: Option<PathBuf>,
    /// With --listen: the shared secret on the command line, where every local user can read it
    /// (`ps`, /proc/PID/cmdline): prefer --cookie-file or MATHRL_COOKIE. It authenticates
    /// peers; it does not encrypt the traffic (see DEPLOYMENT.md).
    #[arg(long, value_name = "SECRET")]
    pub cookie: Option<String>,
    /// With --listen: close a connection that has not authenticated within this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub handshake_timeout: u64,
    /// With --listen: wait for this many workers to join before the first step.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub wait_for_workers: usize,
}

impl Cli {
    /// The `--dtype` of a recipe without a config key for it (`None`: the device's default).
    pub fn compute_dtype(&self) -> Option<candle_core::DType> {
        self.dtype.and_then(DtypeSetting::dtype)
    }

    /// Replaces each `--model` / `--rm` that is a Hub id rather than a directory by its snapshot
    /// in the local Hugging Face cache, so that every recipe gets a directory.
    pub fn resolve_hub_ids(&mut self) -> anyhow::Result<()> {
        let worker_rm = match &mut self.command {
            Some(Command::Worker(args)) => args.rm.as_mut(),
            None => None,
        };
        for path in [self.model.as_mut(), self.rm.as_mut(), worker_rm]
            .into_iter()
            .flatten()
        {
            if !path.is_dir() && path.to_str().and_then(HubId::parse).is_some() {
                *path = resolve_model_dir(path)?;
            }
        }
        Ok(())
    }
}

/// Subcommands of the binary (the recipes are chosen with --recipe instead).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Join a coordinator as a remote rollout or reward worker; runs until the run ends.
    Worker(WorkerArgs),
}

/// What a worker runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerRole {
    /// Generates groups with a copy of the policy (weights come from the coordinator).
    Rollout,
    /// Scores completions with the run's reward.
    Reward,
}

/// `mathrl worker ...`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// The coordinator's HOST:PORT (its --listen address).
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: String,
    /// File holding the coordinator's cookie (a trailing newline is dropped). Wins over
    /// MATHRL_COOKIE and --cookie.
    #[arg(long, value_name = "PATH")]
    pub cookie_file: Option<PathBuf>,
    /// The coordinator's cookie on the command line, where every local user can read it: prefer
    /// --cookie-file or MATHRL_COOKIE.
    #[arg(long, value_name = "SECRET")]
    pub cookie: Option<String>,
    /// rollout or reward.
    #[arg(long, value_enum)]
    pub role: WorkerRole,
    /// Compute threads of this worker.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Its name in the run's reports (default: <hostname>-<pid>); unique per run.
    #[arg(long)]
    pub name: Option<String>,
    /// Reward-model directory (or Hub id in the local cache), for reward workers of a run whose
    /// reward uses the RM.
    #[arg(long)]
    pub rm: Option<PathBuf>,
    /// Seconds to wait for the coordinator to accept the connection.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout: u64,
}
