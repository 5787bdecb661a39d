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
use crate::config::{dotted_keys, markdown_table, resolve_from, to_toml};
use crate::config_docs::{annotate, ConfigDocs};
use crate::recipe_flags::keys_set_by_recipe;
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
    let set_by_recipe = keys_set_by_recipe(recipe, &dotted_keys(&config)?);
    for set in &cli.sets {
        let key = set.split_once('=').map_or(set.as_str(), |(k, _)| k.trim());
        if let Some((_, by)) = set_by_recipe.iter().find(|(k, _)| k == key) {
            tracing::warn!(
                "--set {set}: {recipe} sets `{key}` itself from {by}; the value is ignored"
            );
        }
    }
    if cli.print_config {
        print!("{}", documented_toml(&config, &set_by_recipe)?);
        return Ok(None);
    }
    Ok(Some(Prepared {
        cli,
        recipe,
        config,
    }))
}

/// `config` as TOML with each key's doc comment above it and the keys of `set_by_recipe`
/// commented out (what `--print-config` prints).
pub fn documented_toml<C: Serialize>(
    config: &C,
    set_by_recipe: &[(String, String)],
) -> Result<String> {
    let set: Vec<(&str, &str)> = set_by_recipe
        .iter()
        .map(|(k, by)| (k.as_str(), by.as_str()))
        .collect();
    Ok(annotate(&to_toml(config)?, &ConfigDocs::of::<C>(), &set))
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
    /// The config also goes to the metrics as the `hyperparameters` text (a key | value table).
    pub fn start_with(&self, cli: &Cli) -> Result<RunContext> {
        let run = RunContext::new(cli, self.recipe)?;
        let path = run.path("config.toml");
        // Every key stays (documented, not commented out), so the file parses back to exactly
        // this config; the header line is what `--resume` reads the recipe from.
        let text = crate::resume::config_header(self.recipe) + &documented_toml(&self.config, &[])?;
        mathrl::policy::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        run.metrics
            .text("hyperparameters", 0, &markdown_table(&self.config)?);
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

        let run = recipe.start().unwrap();
        let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
        let again: SftRecipeConfig = toml::from_str(&written).unwrap();
        assert_eq!(
            again, recipe.config,
            "config.toml holds the resolved config"
        );
        assert_eq!(
            written.lines().next().unwrap(),
            crate::resume::config_header("sft").trim_end()
        );
        assert!(
            written.contains("# Optimisation steps"),
            "config.toml documents its keys:\n{written}"
        );

        run.metrics.flush().unwrap();
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let text = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["tag"] == "hyperparameters")
            .expect("a hyperparameters text")["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.starts_with("| key | value |\n|---|---|\n"), "{text}");
        assert!(text.contains("\n| steps | 7 |\n"), "{text}");
        assert_eq!(
            text.lines().count() - 2,
            dotted_keys(&recipe.config).unwrap().len()
        );
    }

    #[test]
    fn documented_toml_parses_back_less_the_keys_the_recipe_sets() {
        let config = SftRecipeConfig {
            steps: 11,
            ..SftRecipeConfig::default()
        };
        let keys = dotted_keys(&config).unwrap();
        let set = keys_set_by_recipe("sft", &keys);
        assert!(!set.is_empty(), "the schedule sets the optimizer's lr");
        let text = documented_toml(&config, &set).unwrap();
        let again: SftRecipeConfig = toml::from_str(&text).unwrap();
        assert_eq!(again, config);
        let doc_lines = text.lines().filter(|l| l.starts_with("# ")).count();
        assert!(doc_lines >= keys.len(), "{text}");
        for (key, _) in &set {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.contains(&format!("\n# {leaf} = ")),
                "{key} not commented out:\n{text}"
            );
        }
    }

    #[test]
    fn print_config_prints_and_stops_after_the_flags_apply() {
        let cli = cli(&["--print-config"]);
        let prepared =
            prepare_with(&cli, "sft", SftRecipeConfig::default(), |c| c.steps = 3).unwrap();
        assert!(prepared.is_none());
    }
}
