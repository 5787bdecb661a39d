//! The command line of the `mathrl` binary.

use std::path::PathBuf;

use clap::Parser;

/// mathrl: train mathematical-expert language models by self-improvement.
#[derive(Debug, Clone, Parser)]
#[command(name = "mathrl", version)]
pub struct Cli {
    /// The recipe to run (see --list-recipes).
    #[arg(long)]
    pub recipe: Option<String>,
    /// List the recipes with a one-line description each.
    #[arg(long)]
    pub list_recipes: bool,
    /// Model directory in the Hugging Face layout.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Reward-model directory in the Hugging Face layout.
    #[arg(long)]
    pub rm: Option<std::path::PathBuf>,
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
    /// Dataset file (JSONL) of a training or evaluation recipe.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluation data sets, comma separated, or `all` (recipe `eval`).
    #[arg(long)]
    pub datasets: Option<String>,
    /// Questions per evaluation data set, from the top of each file (recipe `eval`).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Directory of the evaluation sets, `<dir>/<dataset>/test.jsonl` (default: the shipped ones).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A TOML file with the recipe's config (see --print-config).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set grpo.beta=0.0` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the recipe's resolved config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Stop after this many optimisation steps.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Resume from this checkpoint directory.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Answer-checker profile of the `grade` recipe: qwen25-math (the reference grader's
    /// verdicts) or strict (mathematically right verdicts).
    #[arg(long, default_value = "qwen25-math")]
    pub checker: String,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as `mathrl=debug`.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}
