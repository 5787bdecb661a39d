//! `sandbox-check`: prints which isolation layers of the TIR sandbox are active on this machine
//! with the resolved `tool` config, why a missing one is missing, and whether TIR would start.

use anyhow::{Context, Result};
use mathrl_sandbox::{PythonSandbox, SandboxConfig};

use crate::cli::Cli;
use crate::driver::prepare;
use crate::tools::python::PythonConfig;

/// Runs the recipe: probes one empty program and prints a line per layer.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<PythonConfig>(cli, "sandbox-check")? else {
        return Ok(());
    };
    let wanted = &recipe.config.tool;
    // Probe with refusal off: the point is to say what is missing.
    let probe = PythonSandbox::new(SandboxConfig {
        allow_weaker_isolation: true,
        ..wanted.clone()
    })
    .context("the TIR sandbox could not run a probe program (needs python3)")?;
    let statuses = probe.layer_statuses()?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    println!("python sandbox layers (running as uid {uid}):");
    for status in &statuses {
        let state = match (status.active, status.wanted) {
            (true, _) => "active",
            (false, true) => "MISSING",
            (false, false) => "inactive",
        };
        println!("  {:<26} {:<9} {}", status.layer, state, status.detail);
    }
    let missing: Vec<&str> = statuses
        .iter()
        .filter(|s| s.wanted && !s.active)
        .map(|s| s.layer)
        .collect();
    if missing.is_empty() {
        println!("TIR starts with this config: every layer it asks for is active.");
    } else if wanted.allow_weaker_isolation {
        println!(
            "TIR starts with weaker isolation (tool.allow_weaker_isolation = true) and warns: \
             missing {}",
            missing.join(", ")
        );
    } else {
        println!(
            "TIR refuses to start with this config: missing {} (--set \
             tool.allow_weaker_isolation=true runs without them)",
            missing.join(", ")
        );
    }
    Ok(())
}
