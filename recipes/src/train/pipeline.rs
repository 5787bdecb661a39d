//! `pipeline`: the report's whole self-improvement loop — SFT → RM → rounds of (SFT-data
//! evolution → RM retraining) → RL → eval — each stage a run of the recipe of the same name, fed
//! the previous stages' outputs.
//!
//! `mathrl --recipe pipeline --model BASE --data sft.jsonl --set qa_data=qa.jsonl
//! [--set rounds=N] [--set 'sets.sft=["steps=100"]'] [--datasets gsm8k,math500 --limit 100]
//! [--output DIR]`
//!
//! Stage `k` writes under `DIR/<k>-<stage>/`. With `rounds=N` above 1, round `r`'s SFT-data
//! evolution and RM retraining write under `DIR/round-<r>/` instead: the evolution samples from
//! round `r-1`'s SFT model (the first round from the SFT stage's) and ranks with its RM, and
//! fine-tunes on its own candidates pooled with those of the rounds before it
//! (`DIR/round-<r-1>/candidates.jsonl`); the RM is retrained on samples of the new SFT model.
//! `--resume DIR` skips the stages that finished (those with a `summary.json`), in every round,
//! and resumes the rest from their checkpoints. A stage's settings are its recipe's (see
//! `mathrl --recipe NAME --print-config`), given as `key=value` lines in `sets.<stage>`, for
//! every round.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::driver::prepare;
use crate::run::print_summary;
use crate::train::sft_data_evolution::write_messages;
use crate::train::sft_pool::{evolution_data_files, extend_pool};

/// The stages, in the order the report runs them.
pub const STAGES: [&str; 6] = [
    "sft",
    "rm",
    "sft-data-evolution",
    "rm-retraining",
    "qwen25-math-rl",
    "eval",
];

/// The stages run once per round, in this order.
const ROUND_STAGES: [&str; 2] = ["sft-data-evolution", "rm-retraining"];

/// Settings of the `pipeline` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// (question, answer) JSONL for the RM, SFT-data evolution and RL stages (required).
    pub qa_data: Option<PathBuf>,
    /// Rounds of SFT-data evolution → RM retraining (default 1: the loop once, each stage in
    /// `<output>/<k>-<stage>/`). Round r samples from round r-1's SFT model with its RM and
    /// fine-tunes on the candidates of rounds 1..r; above 1, round r's stages write under
    /// `<output>/round-<r>/`.
    pub rounds: usize,
    /// Stages to run, a contiguous run of [`STAGES`] (empty = all). A later start needs the
    /// earlier stages' outputs under the same `--output`.
    pub stages: Vec<String>,
    /// `key=value` settings per stage, passed to that stage's recipe as `--set` (in every round).
    pub sets: BTreeMap<String, Vec<String>>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            qa_data: None,
            rounds: 1,
            stages: Vec::new(),
            sets: BTreeMap::new(),
        }
    }
}

/// One run of a stage's recipe in a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// One of [`STAGES`].
    pub stage: &'static str,
    /// The round of an SFT-data evolution or RM-retraining run.
    pub round: Option<usize>,
    /// Its output directory, relative to the pipeline's.
    pub dir: PathBuf,
}

/// The runs of `rounds` rounds, in order: SFT, RM, then per round SFT-data evolution and RM
/// retraining, then RL and eval. One round keeps the single loop's layout (`3-sft-data-evolution`
/// …); more put round r's runs under `round-<r>/`, with their stage numbers.
pub fn plan(rounds: usize) -> Vec<Step> {
    // A stage's directory is numbered by its place in STAGES, in every round.
    let name = |stage: &str| format!("{}-{stage}", stage_index(stage) + 1);
    let mut steps = Vec::new();
    for stage in STAGES {
        if stage == ROUND_STAGES[1] {
            continue; // planned with the round's evolution
        }
        if stage != ROUND_STAGES[0] {
            steps.push(Step {
                stage,
                round: None,
                dir: name(stage).into(),
            });
            continue;
        }
        for round in 1..=rounds {
            for stage in ROUND_STAGES {
                let dir = match rounds {
                    1 => PathBuf::from(name(stage)),
                    _ => Path::new(&round_dir(round)).join(name(stage)),
                };
                steps.push(Step {
                    stage,
                    round: Some(round),
                    dir,
                });
            }
        }
    }
    steps
}

/// The directory of round `round`'s runs and pool, relative to the pipeline's (rounds > 1).
fn round_dir(round: usize) -> String {
    format!("round-{round}")
}

/// The candidates of rounds 1..=`round`, pooled: `round-<round>/candidates.jsonl`.
fn pool_file(round: usize) -> String {
    format!("{}/candidates.jsonl", round_dir(round))
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
    if config.rounds == 0 {
        bail!("config key `rounds`: give at least 1 round");
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
    let first = stages.first().map_or(STAGES.len(), |s| stage_index(s));
    let mut done = Vec::new();
    for step in plan(config.rounds) {
        let dir = run.output_dir.join(&step.dir);
        let stage = step.stage;
        if !stages.contains(&stage) {
            // A stage before the selected ones hands on what it made in an earlier run; one
            // after them is left alone.
            if stage_index(stage) < first {
                products = handed_on(stage, &dir, products);
            }
            continue;
        }
        let record = serde_json::json!({
            "stage": stage,
            "round": step.round,
            "output": dir,
            "model": products.policy,
            "rm": if stage == "rm" { None } else { products.rm.clone() },
        });
        if cli.resume.is_some() && dir.join("summary.json").is_file() {
            // Resumed: a stage that wrote its summary finished; only the rest run (the one that
            // was killed resumes from its own checkpoints).
            tracing::info!(stage, round = step.round, output = %dir.display(), "pipeline stage already done");
        } else {
            tracing::info!(stage, round = step.round, output = %dir.display(), model = %products.policy.display(), "pipeline stage");
            let mut stage_cli = stage_cli(cli, stage, &dir, &products, qa, config);
            if let (Some(round), true) = (step.round, config.rounds > 1) {
                // Each round samples with its own seed; round 1 with the pipeline's.
                stage_cli.seed = cli.seed.wrapping_add(round as u64 - 1);
                if stage == "sft-data-evolution" && round > 1 {
                    let pool = run.path(&pool_file(round - 1));
                    let value = toml::Value::String(pool.display().to_string());
                    stage_cli.sets.push(format!("pool={value}"));
                }
            }
            let recipe = crate::registry::find_recipe(stage_recipe(stage))?;
            (recipe.run)(&stage_cli).with_context(|| match step.round {
                Some(round) => format!("pipeline stage `{stage}` of round {round}"),
                None => format!("pipeline stage `{stage}`"),
            })?;
        }
        if let (Some(round), "sft-data-evolution", true) = (step.round, stage, config.rounds > 1) {
            write_pool(&run, round, &dir)?;
        }
        products = handed_on(stage, &dir, products);
        done.push(record);
    }
    run.write_summary(&serde_json::json!({
        "stages": done,
        "rounds": config.rounds,
        "policy": products.policy,
        "rm": products.rm,
    }))?;
    let labels: Vec<String> = done
        .iter()
        .map(|d| match d["round"].as_u64() {
            Some(round) if config.rounds > 1 => {
                format!("round {round} {}", d["stage"].as_str().unwrap_or(""))
            }
            _ => d["stage"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    let mut lines: Vec<(&str, String)> = labels
        .iter()
        .zip(&done)
        .map(|(label, d)| {
            (
                label.as_str(),
                d["output"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    lines.push(("policy", products.policy.display().to_string()));
    print_summary(&run, &lines);
    Ok(())
}

/// Writes round `round`'s pool: the earlier rounds' pool and the candidates the round's
/// evolution run in `dir` kept, deduplicated.
fn write_pool(run: &crate::run::RunContext, round: usize, dir: &Path) -> Result<()> {
    let earlier = (round > 1).then(|| run.path(&pool_file(round - 1)));
    let new = evolution_data_files(dir);
    let pool = extend_pool(earlier.as_deref(), &new)?;
    let path = run.path(&pool_file(round));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_messages(&path, &pool)?;
    tracing::info!(round, candidates = pool.len(), pool = %path.display(), "round's SFT candidates pooled");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(steps: &[Step]) -> Vec<(&str, Option<usize>, String)> {
        steps
            .iter()
            .map(|s| (s.stage, s.round, s.dir.display().to_string()))
            .collect()
    }

    #[test]
    fn one_round_keeps_the_single_loops_layout() {
        let plan = plan(1);
        let expected: Vec<String> = STAGES
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}-{s}", i + 1))
            .collect();
        assert_eq!(
            plan.iter()
                .map(|s| s.dir.display().to_string())
                .collect::<Vec<_>>(),
            expected
        );
        assert_eq!(plan[2].round, Some(1));
        assert_eq!(plan[0].round, None);
    }

    #[test]
    fn rounds_alternate_evolution_and_rm_retraining_under_their_own_directories() {
        let plan = plan(3);
        let round = |r: usize, stage: &'static str, n: usize| {
            (stage, Some(r), format!("round-{r}/{n}-{stage}"))
        };
        let mut expected = vec![
            ("sft", None, "1-sft".to_string()),
            ("rm", None, "2-rm".to_string()),
        ];
        for r in 1..=3 {
            expected.push(round(r, "sft-data-evolution", 3));
            expected.push(round(r, "rm-retraining", 4));
        }
        expected.push(("qwen25-math-rl", None, "5-qwen25-math-rl".into()));
        expected.push(("eval", None, "6-eval".into()));
        assert_eq!(dirs(&plan), expected);
        assert_eq!(pool_file(2), "round-2/candidates.jsonl");
    }

    #[test]
    fn a_stage_of_round_r_starts_from_the_products_of_round_r_minus_1() {
        let tmp = tempfile::tempdir().unwrap();
        let mut products = Products {
            policy: "base".into(),
            rm: None,
        };
        let mut inputs = Vec::new();
        for step in plan(2) {
            let dir = tmp.path().join(&step.dir);
            inputs.push((
                step.dir.clone(),
                products.policy.clone(),
                products.rm.clone(),
            ));
            for made in ["final", "rm"] {
                std::fs::create_dir_all(dir.join(made)).unwrap();
            }
            products = handed_on(step.stage, &dir, products);
        }
        let at = |dir: &str| {
            inputs
                .iter()
                .find(|(d, _, _)| d == Path::new(dir))
                .cloned()
                .unwrap()
        };
        let path = |p: &str| tmp.path().join(p);
        let (_, policy, rm) = at("round-2/3-sft-data-evolution");
        assert_eq!(policy, path("round-1/3-sft-data-evolution/final"));
        assert_eq!(rm, Some(path("round-1/4-rm-retraining/rm")));
        let (_, policy, rm) = at("round-2/4-rm-retraining");
        assert_eq!(policy, path("round-2/3-sft-data-evolution/final"));
        assert_eq!(rm, Some(path("round-1/4-rm-retraining/rm")));
        let (_, policy, rm) = at("5-qwen25-math-rl");
        assert_eq!(policy, path("round-2/3-sft-data-evolution/final"));
        assert_eq!(rm, Some(path("round-2/4-rm-retraining/rm")));
    }
}
