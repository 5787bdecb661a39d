//! The command line's side of multi-machine runs: `mathrl worker ...`, and the `--listen` /
//! `--cookie` flags that let a training recipe accept workers (see DEPLOYMENT.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mathrl_actors::cluster::{run_worker as serve, RewardBuilder, WorkerOptions};
use mathrl_actors::{ClusterConfig, Role};

use crate::cli::{Cli, WorkerArgs, WorkerRole};

/// The cluster settings of a training run from `--listen`, `--cookie` and
/// `--wait-for-workers`; `None` without `--listen`. `reward_spec` is what remote reward workers
/// build the run's reward from (see [`crate::qwen25_math_rl::reward_from_spec`]).
pub fn cluster_config(
    cli: &Cli,
    reward_spec: Option<serde_json::Value>,
) -> Result<Option<ClusterConfig>> {
    let Some(listen) = cli.listen.as_deref() else {
        if cli.cookie.is_some() {
            tracing::warn!("--cookie without --listen: no worker can join this run");
        }
        return Ok(None);
    };
    let listen: SocketAddr = listen.parse().with_context(|| {
        format!("--listen `{listen}`: expected ADDR:PORT, e.g. 0.0.0.0:7400 or 127.0.0.1:0")
    })?;
    let cookie = cli
        .cookie
        .clone()
        .filter(|c| !c.is_empty())
        .context("--listen needs --cookie SECRET: workers authenticate with it")?;
    let mut config = ClusterConfig::new(listen, cookie);
    config.reward_spec = reward_spec;
    config.wait_for_workers = cli.wait_for_workers;
    Ok(Some(config))
}

/// `mathrl worker`: joins the coordinator and serves until the run ends.
pub fn run_worker(args: &WorkerArgs, device: &str) -> Result<()> {
    let device = mathrl::device::parse_device(device)?;
    let name = args.name.clone().unwrap_or_else(default_name);
    let role = match args.role {
        WorkerRole::Rollout => Role::Rollout,
        WorkerRole::Reward => Role::Reward,
    };
    let rewards: RewardBuilder = {
        let rm = args.rm.clone();
        let device = device.clone();
        Arc::new(move |spec: &serde_json::Value| {
            crate::qwen25_math_rl::reward_from_spec(spec, rm.as_deref(), &device)
        })
    };
    let options = WorkerOptions {
        connect: args.connect.clone(),
        cookie: args.cookie.clone(),
        role,
        threads: args.threads,
        name: name.clone(),
        device,
        connect_timeout: Duration::from_secs(args.connect_timeout),
    };
    let report = serve(options, rewards).with_context(|| format!("worker `{name}`"))?;
    eprintln!(
        "worker `{name}`: the run is over ({} groups generated, {} batches scored, {} weights \
         versions loaded)",
        report.groups, report.batches, report.weights_loaded
    );
    Ok(())
}

/// `<hostname>-<pid>`: unique across the workers of a run.
fn default_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mathrl").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn listen_needs_a_cookie_and_a_socket_address() {
        assert!(cluster_config(&cli(&["--recipe", "x"]), None)
            .unwrap()
            .is_none());
        let err = cluster_config(&cli(&["--listen", "127.0.0.1:0"]), None).unwrap_err();
        assert!(err.to_string().contains("--cookie"), "{err}");
        let err = cluster_config(&cli(&["--listen", "here", "--cookie", "s"]), None).unwrap_err();
        assert!(err.to_string().contains("--listen `here`"), "{err}");
        let config = cluster_config(
            &cli(&[
                "--listen",
                "127.0.0.1:7400",
                "--cookie",
                "s",
                "--wait-for-workers",
                "2",
            ]),
            Some(serde_json::json!({"kind": "checker"})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.listen.port(), 7400);
        assert_eq!(config.cookie, "s");
        assert_eq!(config.wait_for_workers, 2);
        assert!(config.reward_spec.is_some());
    }

    #[test]
    fn the_worker_subcommand_parses_beside_the_recipe_flags() {
        let parsed = cli(&[
            "worker",
            "--connect",
            "10.0.0.1:7400",
            "--cookie",
            "s",
            "--role",
            "reward",
            "--threads",
            "3",
            "--log-level",
            "debug",
        ]);
        let Some(crate::cli::Command::Worker(args)) = parsed.command else {
            panic!("no worker subcommand");
        };
        assert_eq!(args.role, WorkerRole::Reward);
        assert_eq!(args.threads, 3);
        assert_eq!(parsed.log_level, "debug");
        // The recipe form is unchanged.
        let recipe = cli(&["--recipe", "qwen25-math-rl", "--max-steps", "2"]);
        assert!(recipe.command.is_none());
        assert_eq!(recipe.recipe.as_deref(), Some("qwen25-math-rl"));
    }
}
