//! The start every recipe shares: its config resolved (defaults, `--config`, `--set`),
//! `--print-config`, the command-line inputs it requires, and the run directory with the config
//! it ran with.
//!
//! ```ignore
//! let Some(recipe) = prepare::<SftRecipeConfig>(cli, "sft")? else { return Ok(()) };
//! let model_dir = recipe.model_dir()?;
//! let data = recipe.data_file("FILE.jsonl")?;
//! let run = recipe.start()?; // <output>/config.toml, metrics, progress
//! ```

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use mathrl::metrics::{flatten_hparams, HParamValue};

use crate::cli::Cli;
use crate::config::{resolve_from, to_toml};
use crate::run::{require_dir, RunContext};

/// A recipe whose config is resolved and which has not started its run yet.
pub struct Prepared<'a, C> {
    /// The command line.
    pub cli: &'a Cli,
    /// The recipe's name (the run directory's prefix, the errors' subject).
    pub recipe: &'static str,
    /// The resolved config.
    pub config: C,
}

/// Resolves `recipe`'s config from its defaults; `None` when `--print-config` printed it.
pub fn prepare<'a, C>(cli: &'a Cli, recipe: &'static str) -> Result<Option<Prepared<'a, C>>>
where
    C: Serialize + DeserializeOwned + Default,
{
    prepare_with(cli, recipe, C::default(), |_| {})
}

/// Like [`prepare`] from `base` (a recipe's alternative defaults), with `flags` applying the
/// command-line flags that override config keys before the config is printed.
pub fn prepare_with<'a, C>(
    cli: &'a Cli,
    recipe: &'static str,
    base: C,
    flags: impl FnOnce(&mut C),
) -> Result<Option<Prepared<'a, C>>>
where
    C: Serialize + DeserializeOwned,
{
    let mut config: C = resolve_from(base, cli.config.as_deref(), &cli.sets)?;
    flags(&mut config);
    if cli.print_config {
        print!("{}", to_toml(&config)?);
        return Ok(None);
    }
    Ok(Some(Prepared {
        cli,
        recipe,
        config,
    }))
}

impl<'a, C: Serialize> Prepared<'a, C> {
    /// `--model`, required, and an existing directory.
    pub fn model_dir(&self) -> Result<&'a Path> {
        let dir = self
            .cli
            .model
            .as_deref()
            .with_context(|| format!("{} needs --model DIR", self.recipe))?;
        require_dir(dir, "model")?;
        Ok(dir)
    }

    /// `--data`, required; `what` describes the file in the error (`qa.jsonl`).
    pub fn data_file(&self, what: &str) -> Result<&'a Path> {
        self.cli
            .data
            .as_deref()
            .with_context(|| format!("{} needs --data {what}", self.recipe))
    }

    /// Starts the run: the output and log directories, the metrics, and `<output>/config.toml`,
    /// the resolved config the run uses (`--config` it to run again with the same settings).
    pub fn start(&self) -> Result<RunContext> {
        self.start_with(self.cli)
    }

    /// [`Prepared::start`] with another command line (a stage of a recipe, in its own directory).
    pub fn start_with(&self, cli: &Cli) -> Result<RunContext> {
        let run = RunContext::new(cli, self.recipe)?;
        let path = run.path("config.toml");
        let text = crate::resume::config_header(self.recipe) + &to_toml(&self.config)?;
        mathrl::policy::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        run.metrics.hparams(&self.hparams(cli, run.seed)?);
        Ok(run)
    }

    /// The run's settings for TensorBoard's HParams tab: every config key (dotted), with the
    /// recipe, seed, model, data and device of the command line.
    fn hparams(&self, cli: &Cli, seed: u64) -> Result<Vec<(String, HParamValue)>> {
        let mut hparams = flatten_hparams(&serde_json::to_value(&self.config)?);
        let text = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let command_line = [
            ("recipe", Some(self.recipe.to_string())),
            ("model", text(&cli.model)),
            ("data", text(&cli.data)),
            ("device", Some(cli.device.clone())),
        ];
        let command_line = command_line
            .into_iter()
            .filter_map(|(key, value)| Some((key, HParamValue::Text(value?))))
            // Up to 2^53 exactly: TensorBoard keeps every hyperparameter number as a double.
            .chain([("seed", HParamValue::Number(seed as f64))]);
        for (key, value) in command_line {
            // The command line wins over a config key of the same name (a map has one value).
            hparams.retain(|(k, _)| k != key);
            hparams.push((key.to_string(), value));
        }
        Ok(hparams)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::train::sft::SftRecipeConfig;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("mathrl").chain(args.iter().copied()))
    }

    #[test]
    fn missing_inputs_name_the_recipe_and_flag_and_start_writes_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let cli = cli(&["--output", out.to_str().unwrap(), "--set", "steps=7"]);
        let recipe = prepare::<SftRecipeConfig>(&cli, "sft").unwrap().unwrap();
        assert_eq!(recipe.config.steps, 7);
        let err = recipe.model_dir().unwrap_err().to_string();
        assert_eq!(err, "sft needs --model DIR");
        let err = recipe.data_file("FILE.jsonl").unwrap_err().to_string();
        assert_eq!(err, "sft needs --data FILE.jsonl");

        recipe.start().unwrap();
        let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
        let again: SftRecipeConfig = toml::from_str(&written).unwrap();
        assert_eq!(
            again, recipe.config,
            "config.toml holds the resolved config"
        );
    }

    #[test]
    fn print_config_prints_and_stops_after_the_flags_apply() {
        let cli = cli(&["--print-config"]);
        let prepared =
            prepare_with(&cli, "sft", SftRecipeConfig::default(), |c| c.steps = 3).unwrap();
        assert!(prepared.is_none());
    }
}
