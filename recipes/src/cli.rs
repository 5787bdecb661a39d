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
    /// Input file of a tool recipe.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file or directory.
    #[arg(long)]
    pub output: Option<PathBuf>,
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
