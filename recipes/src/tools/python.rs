//! `python`: runs each line's `{"code": ...}` in the TIR sandbox, with the limits and isolation
//! layers of the `tool` config table, and writes `{"output", "status", "seconds"}` per line:
//! `output` is what a model would see, `status` how the program ended. Also the one place the
//! recipes build the TIR sandbox ([`tir_sandbox`]) and its executor ([`tir_executor`]), so that
//! `eval`, `generate`, `qwen25-math-rl`, `tir-data-evolution`, remote rollout workers and this
//! recipe refuse to start alike when a layer is missing.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mathrl::data::read_jsonl_numbered;
use mathrl::generation::ToolExecutor;
use mathrl_sandbox::{ExecutionStatus, PythonSandbox, SandboxConfig, SandboxExecutor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::Cli;
use crate::driver::prepare;
use crate::output::OutputFile;

/// Settings of the `python` and `sandbox-check` recipes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PythonConfig {
    /// The TIR sandbox: limits and isolation layers (`tool.allow_weaker_isolation = true` runs
    /// with missing layers, with a warning).
    pub tool: SandboxConfig,
}

/// The TIR sandbox of `config`; an error names each missing isolation layer and why.
pub fn tir_sandbox(config: &SandboxConfig) -> Result<Arc<PythonSandbox>> {
    let sandbox = PythonSandbox::new(config.clone()).context(
        "the TIR sandbox could not start (`mathrl --recipe sandbox-check` lists the isolation \
         layers of this machine)",
    )?;
    Ok(Arc::new(sandbox))
}

/// The sandbox settings of a TIR run: the `tool` table with `timeout_ms` as each program's
/// wall-clock limit (the recipes' `tool_timeout_ms`, the reference's 5 s by default).
pub fn tir_settings(tool: &SandboxConfig, timeout_ms: u64) -> SandboxConfig {
    SandboxConfig {
        timeout_ms,
        ..tool.clone()
    }
}

/// The sandboxed Python executor of TIR programs, with `timeout_ms` per program.
pub fn tir_executor(tool: &SandboxConfig, timeout_ms: u64) -> Result<Arc<dyn ToolExecutor>> {
    let sandbox = tir_sandbox(&tir_settings(tool, timeout_ms))?;
    Ok(Arc::new(SandboxExecutor::new(sandbox)))
}

/// A remote rollout worker's executor, built on its own node from the sandbox settings the
/// coordinator sent (its [`tir_settings`] as JSON).
pub fn worker_tir_executor(settings: &Value) -> Result<Arc<dyn ToolExecutor>> {
    let tool: SandboxConfig = serde_json::from_value(settings.clone())
        .context("the coordinator's TIR sandbox settings")?;
    let sandbox = tir_sandbox(&tool)?;
    Ok(Arc::new(SandboxExecutor::new(sandbox)))
}

/// Reads the programs, each a non-empty `code` string; errors name the file and line.
fn read_programs(input: &std::path::Path) -> Result<Vec<String>> {
    read_jsonl_numbered::<Value>(input)?
        .into_iter()
        .map(|(line, row)| match row.get("code") {
            Some(Value::String(code)) => Ok(code.clone()),
            Some(other) => bail!(
                "{}:{line}: `code` must be a string, got {other}",
                input.display()
            ),
            None => bail!(
                "{}:{line}: expected an object with a `code` string",
                input.display()
            ),
        })
        .collect()
}

/// Runs the recipe: `--input programs.jsonl --output results.jsonl [--set tool.KEY=VALUE]`.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<PythonConfig>(cli, "python")? else {
        return Ok(());
    };
    let input = cli
        .input
        .as_deref()
        .context("python needs --input programs.jsonl")?;
    let output = cli
        .output
        .as_deref()
        .context("python needs --output results.jsonl")?;
    let programs = read_programs(input)?;
    let sandbox = tir_sandbox(&recipe.config.tool)?;
    let mut out = OutputFile::create(output)?;
    let mut succeeded = 0usize;
    let started = Instant::now();
    for code in &programs {
        let run_started = Instant::now();
        let result = sandbox.run(code)?;
        succeeded += usize::from(result.status == ExecutionStatus::Success);
        let row = serde_json::json!({
            "output": result.output,
            "status": result.status,
            "seconds": run_started.elapsed().as_secs_f64(),
        });
        serde_json::to_writer(&mut out, &row)
            .with_context(|| format!("writing {}", output.display()))?;
        out.write_all(b"\n")?;
    }
    out.commit()?;
    eprintln!(
        "ran {} programs in {:.1} s: {succeeded} succeeded",
        programs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
