//! `eval`: accuracy on the Qwen2.5-Math evaluation sets, in any of the modes greedy CoT, TIR,
//! Maj@N and RM@N (sampling at temperature 0.7, top-p 0.8 as the report does), answers checked
//! with the `qwen25-math` checker profile.
//!
//! `mathrl --recipe eval [--model DIR] [--datasets gsm8k,math500] [--limit N] [--data-dir DIR]
//! [--rm DIR] [--set 'modes=["cot","maj@8"]']` prints a table (dataset, n, accuracy, mode), writes
//! `<output>/eval.json` = `{"results": [{"dataset", "mode", "n", "accuracy"}]}`, the picked
//! responses as `<output>/responses/<dataset>.<mode>.jsonl`, and the table to TensorBoard
//! (scalars `eval/<dataset>/<mode>` and a text table). Without `--model` it evaluates the
//! embedded default model.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mathrl::model::Trainable;
use mathrl::{Policy, Tokenizer};
use mathrl_rewards::{Checker, CheckerProfile, RewardModel, Verifier};
use serde::{Deserialize, Serialize};

use super::datasets::{load_dataset, parse_dataset_list};
use super::prompts::PromptFormat;
use super::runner::{evaluate, DatasetAccuracy, EvalMode, EvalResult, Selection};
use crate::assets::{find_asset, EVAL_ASSET, POLICY_ASSET};
use crate::cli::Cli;
use crate::driver::prepare_with;
use crate::precision::{DtypeSetting, Precision};
use crate::run::{print_summary, require_dir, RunContext};

/// Settings of the `eval` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Data sets, comma separated, or `all` (`--datasets` overrides).
    pub datasets: String,
    /// Questions per data set, from the top of each file; 0 = all (`--limit` overrides).
    pub limit: usize,
    /// Directory holding `<dataset>/test.jsonl`; empty = the shipped `data/eval`
    /// (`--data-dir` overrides).
    pub data_dir: String,
    /// Modes, each evaluated on every data set: `cot` (greedy chain of thought), `tir` (greedy
    /// tool-integrated reasoning), `maj@N`, `rm@N` (N samples; RM@N needs `--rm`), and
    /// `tir-maj@N`, `tir-rm@N`.
    pub modes: Vec<String>,
    /// Most new tokens per response (the reference evaluation: 2048).
    pub max_new_tokens: usize,
    /// Sampling temperature of Maj@N / RM@N (the report: 0.7).
    pub temperature: f64,
    /// Top-p of Maj@N / RM@N (the report: 0.8).
    pub top_p: f64,
    /// Questions per generation call.
    pub questions_per_batch: usize,
    /// Answer-checker profile (`qwen25-math`, the reference's grader).
    pub checker: String,
    /// Wall-clock limit of one TIR program in milliseconds (the reference: 5 s); overrides
    /// `tool.timeout_ms`.
    pub tool_timeout_ms: u64,
    /// The TIR sandbox: limits and isolation layers (`tool.allow_weaker_isolation = true` runs
    /// with missing layers, with a warning).
    pub tool: mathrl_sandbox::SandboxConfig,
    /// Write every picked response to `<output>/responses/`.
    pub save_responses: bool,
    /// Compute dtype of the policy and the RM (`--dtype` wins): auto (f32 on CPU, bf16 on CUDA),
    /// f32, bf16, f16.
    pub dtype: DtypeSetting,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            datasets: "gsm8k,math500".into(),
            limit: 0,
            data_dir: String::new(),
            modes: vec!["cot".into()],
            max_new_tokens: 2048,
            temperature: 0.7,
            top_p: 0.8,
            questions_per_batch: 16,
            checker: "qwen25-math".into(),
            tool_timeout_ms: 5000,
            tool: mathrl_sandbox::SandboxConfig::default(),
            save_responses: true,
            dtype: DtypeSetting::Auto,
        }
    }
}

/// The embedded default policy, trained by `tiny-bootstrap` and shipped in the repository.
pub fn default_model_dir() -> PathBuf {
    crate::assets::default_policy_dir()
}

/// Parses a mode name (`cot`, `tir`, `maj@8`, `rm@4`, `tir-maj@8`, `tir-rm@4`).
pub fn parse_mode(name: &str, config: &EvalConfig, seed: u64) -> Result<EvalMode> {
    // `rest` is None for the greedy modes.
    let (format, rest) = match name.strip_prefix("tir-") {
        Some(rest) => (PromptFormat::Tir, Some(rest)),
        None if name == "tir" => (PromptFormat::Tir, None),
        None if name == "cot" => (PromptFormat::Cot, None),
        None => (PromptFormat::Cot, Some(name)),
    };
    let samples = |n: &str| -> Result<usize> {
        match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!("mode `{name}`: the sample count must be a positive integer"),
        }
    };
    let selection = match rest {
        None => Selection::Greedy,
        Some(rest) => {
            if let Some(n) = rest.strip_prefix("maj@") {
                Selection::Majority(samples(n)?)
            } else if let Some(n) = rest.strip_prefix("rm@") {
                Selection::RewardModel(samples(n)?)
            } else {
                bail!(
                    "unknown eval mode `{name}`; known: cot, tir, maj@N, rm@N, tir-maj@N, tir-rm@N"
                );
            }
        }
    };
    Ok(EvalMode {
        format,
        selection,
        max_new_tokens: config.max_new_tokens,
        temperature: config.temperature,
        top_p: config.top_p,
        seed,
        questions_per_batch: config.questions_per_batch,
        engine: Default::default(),
        tool: None,
    })
}

/// The answer checker of a profile name (`qwen25-math`, `strict`).
pub fn checker(profile: &str) -> Result<Arc<dyn Verifier>> {
    let profile: CheckerProfile = profile
        .parse()
        .map_err(|e| anyhow::anyhow!("config key `checker`: {e}"))?;
    Ok(Arc::new(Checker::new(profile)))
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let flags = |config: &mut EvalConfig| {
        if let Some(datasets) = &cli.datasets {
            config.datasets = datasets.clone();
        }
        if let Some(limit) = cli.limit {
            config.limit = limit;
        }
        if let Some(dir) = &cli.data_dir {
            config.data_dir = dir.display().to_string();
        }
    };
    let Some(recipe) = prepare_with(cli, "eval", EvalConfig::default(), flags)? else {
        return Ok(());
    };
    let config = &recipe.config;
    let datasets = parse_dataset_list(&config.datasets)?;
    let mut modes = config
        .modes
        .iter()
        .map(|m| parse_mode(m, config, cli.seed))
        .collect::<Result<Vec<_>>>()?;
    let checker = checker(&config.checker)?;
    let needs_rm = modes
        .iter()
        .any(|m| matches!(m.selection, Selection::RewardModel(_)));
    if needs_rm && cli.rm.is_none() {
        bail!("RM@N modes need a reward model: pass --rm DIR");
    }
    let model_dir = match &cli.model {
        Some(dir) => dir.clone(),
        None => find_asset(POLICY_ASSET).map_err(|missing| {
            anyhow::anyhow!(
                "the embedded default's policy: {missing}\npass --model DIR, or install the assets \
                 (see the README)"
            )
        })?,
    };
    require_dir(&model_dir, "model")?;
    if modes.iter().any(|m| m.format == PromptFormat::Tir) {
        let tool = crate::tools::python::tir_executor(&config.tool, config.tool_timeout_ms)?;
        for mode in modes.iter_mut().filter(|m| m.format == PromptFormat::Tir) {
            mode.tool = Some(tool.clone());
        }
    }
    let data_dir = if config.data_dir.is_empty() {
        find_asset(EVAL_ASSET).map_err(|missing| {
            anyhow::anyhow!(
                "the evaluation sets: {missing}\nset data_dir to a copy of the repository's \
                 data/eval, or install them (see the README)"
            )
        })?
    } else {
        PathBuf::from(&config.data_dir)
    };
    require_dir(&data_dir, "evaluation data directory")?;

    let run = recipe.start()?;
    let tokenizer = Tokenizer::from_dir(&model_dir)
        .with_context(|| format!("eval needs a tokenizer in {}", model_dir.display()))?;
    let dtype = Precision::resolve(cli.dtype, config.dtype, DtypeSetting::Auto).compute;
    let policy = Policy::load(&model_dir, &run.device, dtype, Trainable::No)?;
    let rm = match &cli.rm {
        Some(dir) => Some(RewardModel::load(dir, &run.device, dtype, Trainable::No)?),
        None => None,
    };
    let limit = (config.limit > 0).then_some(config.limit);
    let mut table: Vec<DatasetAccuracy> = Vec::new();
    for name in &datasets {
        let items = load_dataset(&data_dir, name, limit)?;
        for mode in &modes {
            let result = evaluate(
                &policy,
                &tokenizer,
                &items,
                mode,
                checker.as_ref(),
                rm.as_ref(),
            )
            .with_context(|| format!("evaluating {name} in mode {}", mode.name()))?;
            if config.save_responses {
                save_responses(&run, name, &result)?;
            }
            run.metrics.text(
                &format!("eval/{name}/{}/samples", result.mode),
                0,
                &sample_text(&result, 3),
            );
            for row in &result.per_dataset {
                run.metrics.scalar(
                    &format!("eval/{}/{}", row.dataset, row.mode),
                    0,
                    row.accuracy,
                );
            }
            tracing::info!(dataset = %name, mode = %result.mode, n = result.n, accuracy = result.accuracy, "evaluated");
            table.extend(result.per_dataset);
        }
    }
    let text = format_table(&table);
    print!("{text}");
    run.metrics.text("eval/table", 0, &markdown_table(&table));
    let json = serde_json::json!({ "results": table });
    let path = run.path("eval.json");
    mathrl::policy::write_atomic(&path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    run.write_summary(&serde_json::json!({
        "model": model_dir.display().to_string(),
        "results": table,
        "seconds": run.elapsed().as_secs_f64(),
    }))?;
    let mean = table.iter().map(|r| r.accuracy).sum::<f64>() / table.len().max(1) as f64;
    print_summary(
        &run,
        &[
            ("model", model_dir.display().to_string()),
            ("evaluations", table.len().to_string()),
            ("mean accuracy", format!("{:.1}%", 100.0 * mean)),
            ("results", path.display().to_string()),
        ],
    );
    Ok(())
}

fn save_responses(run: &RunContext, dataset: &str, result: &EvalResult) -> Result<()> {
    let dir = run.path("responses");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{dataset}.{}.jsonl", result.mode));
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for record in &result.records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The first `k` picked responses with their gold answer and verdict, for TensorBoard.
fn sample_text(result: &EvalResult, k: usize) -> String {
    result
        .records
        .iter()
        .take(k)
        .map(|r| {
            format!(
                "**line {}** gold `{}`, extracted `{}`, {}\n\n```\n{}\n```\n",
                r.line,
                r.gold,
                r.extracted.as_deref().unwrap_or("-"),
                if r.correct { "correct" } else { "wrong" },
                r.response
            )
        })
        .collect()
}

/// The plain-text table printed at the end.
pub fn format_table(rows: &[DatasetAccuracy]) -> String {
    let mut text = format!(
        "{:<20} {:>6} {:>9}  {}\n",
        "dataset", "n", "accuracy", "mode"
    );
    for r in rows {
        text.push_str(&format!(
            "{:<20} {:>6} {:>8.1}%  {}\n",
            r.dataset,
            r.n,
            100.0 * r.accuracy,
            r.mode
        ));
    }
    text
}

/// The same table in Markdown, for TensorBoard's text plugin.
fn markdown_table(rows: &[DatasetAccuracy]) -> String {
    let mut text = String::from("| dataset | n | accuracy | mode |\n|---|---|---|---|\n");
    for r in rows {
        text.push_str(&format!(
            "| {} | {} | {:.1}% | {} |\n",
            r.dataset,
            r.n,
            100.0 * r.accuracy,
            r.mode
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_parse_and_round_trip() {
        let config = EvalConfig::default();
        for name in ["cot", "tir", "maj@8", "rm@4", "tir-maj@8", "tir-rm@2"] {
            assert_eq!(parse_mode(name, &config, 0).unwrap().name(), name);
        }
        let maj = parse_mode("maj@8", &config, 3).unwrap();
        assert_eq!(maj.selection, Selection::Majority(8));
        assert_eq!((maj.temperature, maj.top_p, maj.seed), (0.7, 0.8, 3));
        for bad in ["maj@0", "maj@x", "greedy", "tir-cot"] {
            assert!(parse_mode(bad, &config, 0).is_err(), "{bad}");
        }
    }
}
