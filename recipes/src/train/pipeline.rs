//! `pipeline`: the report's whole self-improvement loop — SFT → RM → SFT-data evolution → RM
//! retraining → RL → eval — each stage a run of the recipe of the same name, fed the previous
//! stages' outputs.
//!
//! `mathrl --recipe pipeline --model BASE --data sft.jsonl --set qa_data=qa.jsonl
//! [--set 'sets.sft=["steps=100"]'] [--datasets gsm8k,math500 --limit 100] [--output DIR]`
//!
//! Stage `k` writes under `DIR/<k>-<stage>/`; `--resume DIR` skips the stages that finished
//! (those with a `summary.json`) and resumes the rest from their checkpoints. A stage's settings are its recipe's (see
//! `mathrl --recipe NAME --print-config`), given as `key=value` lines in `sets.<stage>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::driver::prepare;
use crate::run::print_summary;

/// The stages, in the order the report runs them.
pub const STAGES: [&str; 6] = [
    "sft",
    "rm",
    "sft-data-evolution",
    "rm-retraining",
    "qwen25-math-rl",
    "eval",
];

/// Settings of the `pipeline` recipe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// (question, answer) JSONL for the RM, SFT-data evolution and RL stages (required).
    pub qa_data: Option<PathBuf>,
    /// Stages to run, a contiguous run of [`STAGES`] (empty = all). A later start needs the
    /// earlier stages' outputs under the same `--output`.
    pub stages: Vec<String>,
    /// `key=value` settings per stage, passed to that stage's recipe as `--set`.
    pub sets: BTreeMap<String, Vec<String>>,
}

/// What the stages so far have produced.
#[derive(Debug, Clone)]
struct Products {
    policy: PathBuf,
    rm: Option<PathBuf>,
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<PipelineConfig>(cli, "pipeline")? else {
        return Ok(());
    };
    let config = &recipe.config;
    let stages = selected_stages(config)?;
    for stage in config.sets.keys() {
        if !STAGES.contains(&stage.as_str()) {
            bail!(
                "config key `sets.{stage}`: unknown stage (stages: {})",
                STAGES.join(", ")
            );
        }
    }
    let base = recipe.model_dir()?;
    let qa = config
        .qa_data
        .as_deref()
        .context("pipeline needs --set qa_data=qa.jsonl (question/answer lines)")?;
    if stages.first() == Some(&"sft") && cli.data.is_none() {
        bail!("pipeline's sft stage needs --data sft.jsonl ({{\"messages\": [...]}} lines)");
    }
    let run = recipe.start()?;
    let mut products = Products {
        policy: base.to_path_buf(),
        rm: cli.rm.clone(),
    };
    let mut done = Vec::new();
    for (index, stage) in STAGES.iter().enumerate() {
        let dir = run.path(&format!("{}-{stage}", index + 1));
        if !stages.contains(stage) {
            // A stage before the selected ones hands on what it made in an earlier run; one
            // after them is left alone.
            if stages
                .first()
                .is_some_and(|first| index < stage_index(first))
            {
                products = handed_on(stage, &dir, products);
            }
            continue;
        }
        if cli.resume.is_some() && dir.join("summary.json").is_file() {
            // Resumed: a stage that wrote its summary finished; only the rest run (the one that
            // was killed resumes from its own checkpoints).
            tracing::info!(stage, output = %dir.display(), "pipeline stage already done");
            products = handed_on(stage, &dir, products);
            done.push((stage.to_string(), dir.display().to_string()));
            continue;
        }
        tracing::info!(stage, output = %dir.display(), "pipeline stage");
        let stage_cli = stage_cli(cli, stage, &dir, &products, qa, config);
        let recipe = crate::registry::find_recipe(stage_recipe(stage))?;
        (recipe.run)(&stage_cli).with_context(|| format!("pipeline stage `{stage}`"))?;
        products = handed_on(stage, &dir, products);
        done.push((stage.to_string(), dir.display().to_string()));
    }
    run.write_summary(&serde_json::json!({
        "stages": done.iter().map(|(s, d)| serde_json::json!({"stage": s, "output": d})).collect::<Vec<_>>(),
        "policy": products.policy,
        "rm": products.rm,
    }))?;
    let mut lines: Vec<(&str, String)> =
        done.iter().map(|(s, d)| (s.as_str(), d.clone())).collect();
    lines.push(("policy", products.policy.display().to_string()));
    print_summary(&run, &lines);
    Ok(())
}

/// The stages `config.stages` names, checked to be a contiguous run in report order.
fn selected_stages(config: &PipelineConfig) -> Result<Vec<&'static str>> {
    if config.stages.is_empty() {
        return Ok(STAGES.to_vec());
    }
    let mut indices = Vec::new();
    for name in &config.stages {
        let index = STAGES.iter().position(|s| s == name).with_context(|| {
            format!(
                "config key `stages`: unknown stage `{name}` (stages: {})",
                STAGES.join(", ")
            )
        })?;
        indices.push(index);
    }
    if indices.windows(2).any(|w| w[1] != w[0] + 1) {
        bail!(
            "config key `stages`: give consecutive stages in the order {}",
            STAGES.join(" → ")
        );
    }
    Ok(indices.into_iter().map(|i| STAGES[i]).collect())
}

/// Position of `stage` in [`STAGES`] (`stage` is one of them).
fn stage_index(stage: &str) -> usize {
    STAGES
        .iter()
        .position(|s| *s == stage)
        .unwrap_or(STAGES.len())
}

/// The recipe a stage runs (`rm` is the first RM-retraining round, from the SFT policy).
fn stage_recipe(stage: &str) -> &str {
    match stage {
        "rm" => "rm-retraining",
        other => other,
    }
}

/// The command line of one stage: the pipeline's, with the stage's model, RM, data and output.
fn stage_cli(
    cli: &Cli,
    stage: &str,
    dir: &Path,
    products: &Products,
    qa: &Path,
    config: &PipelineConfig,
) -> Cli {
    let mut stage_cli = cli.clone();
    stage_cli.recipe = Some(stage_recipe(stage).to_string());
    stage_cli.output = Some(dir.to_path_buf());
    stage_cli.logdir = None;
    stage_cli.config = None;
    stage_cli.resume = None;
    stage_cli.sets = config.sets.get(stage).cloned().unwrap_or_default();
    stage_cli.model = Some(products.policy.clone());
    stage_cli.rm = products.rm.clone();
    stage_cli.data = match stage {
        "sft" => cli.data.clone(),
        "eval" => None,
        _ => Some(qa.to_path_buf()),
    };
    if stage == "rm" {
        // A fresh RM from the SFT policy's backbone, as the report trains its first RM.
        stage_cli.rm = None;
    }
    stage_cli
}

/// What `stage` leaves for the next ones, given its output directory.
fn handed_on(stage: &str, dir: &Path, products: Products) -> Products {
    let made = |sub: &str| Some(dir.join(sub)).filter(|p| p.is_dir());
    match stage {
        "sft" | "sft-data-evolution" | "qwen25-math-rl" => Products {
            policy: made("final").unwrap_or(products.policy),
            ..products
        },
        "rm" | "rm-retraining" => Products {
            rm: made("rm").or(products.rm),
            ..products
        },
        _ => products,
    }
}
