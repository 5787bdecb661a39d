//! The `mathrl` binary: parses the command line and runs a recipe from the registry.

use std::io::IsTerminal;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches};
use mathrl_recipes::cli::{Cli, Command};
use mathrl_recipes::recipe_flags::{given_flags, ignored_flags};
use mathrl_recipes::{cluster, find_recipe, recipes};

fn main() -> Result<()> {
    mathrl::device::pin_cpu_threads();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_level)?)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs redirected to a file stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    cli.resolve_hub_ids()?;
    if let Some(Command::Worker(args)) = &cli.command {
        return cluster::run_worker(args, &cli.device);
    }
    if cli.list_recipes {
        for recipe in recipes() {
            println!("{:<20} {}", recipe.name, recipe.description);
        }
        return Ok(());
    }
    let Some(name) = cli.recipe.as_deref() else {
        anyhow::bail!("no recipe given: pass --recipe NAME (see --list-recipes)");
    };
    let recipe = find_recipe(name)?;
    for flag in ignored_flags(recipe.name, &given_flags(&matches)) {
        tracing::warn!(
            "{flag} is not read by recipe {}: it has no effect",
            recipe.name
        );
    }
    mathrl_recipes::resume::resolve_resume(&mut cli, recipe.name)?;
    (recipe.run)(&cli)
}
