//! The command line's side of multi-machine runs: `mathrl worker ...`, and the `--listen` /
//! `--cookie` flags that let a training recipe accept workers (see DEPLOYMENT.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use mathrl_actors::cluster::{run_worker as serve, RewardBuilder, WorkerOptions};
use mathrl_actors::{ClusterConfig, Role};
use mathrl_rewards::{RewardFunction, RewardResources, RewardSpec};

use crate::cli::{Cli, WorkerArgs, WorkerRole};

/// The cluster settings of a training run from `--listen`, `--cookie` and
/// `--wait-for-workers`; `None` without `--listen`. `reward_spec` is what remote reward workers
/// build the run's reward from.
pub fn cluster_config(cli: &Cli, reward_spec: Option<RewardSpec>) -> Result<Option<ClusterConfig>> {
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
        Arc::new(move |spec: &RewardSpec| worker_reward(spec, rm.as_deref(), &device))
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

/// A reward worker's reward: the coordinator's `spec`, with this worker's `--rm` copy of the RM.
fn worker_reward(
    spec: &RewardSpec,
    rm_dir: Option<&std::path::Path>,
    device: &Device,
) -> Result<Arc<dyn RewardFunction>> {
    if spec.uses_reward_model() && rm_dir.is_none() {
        anyhow::bail!(
            "this run's reward uses the reward model: start the reward worker with --rm DIR \
             (the coordinator's RM)"
        );
    }
    // The RM computes in the worker device's default dtype.
    Ok(spec.build(&RewardResources {
        rm_dir,
        device,
        dtype: None,
    })?)
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
            Some(RewardSpec::Checker),
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.listen.port(), 7400);
        assert_eq!(config.cookie, "s");
        assert_eq!(config.wait_for_workers, 2);
        assert_eq!(config.reward_spec, Some(RewardSpec::Checker));
    }

    #[test]
    fn a_reward_worker_builds_the_spec_and_asks_for_its_rm_when_the_spec_uses_one() {
        let reward = worker_reward(&RewardSpec::Checker, None, &Device::Cpu).unwrap();
        assert_eq!(reward.name(), "verifier");
        let shaped = RewardSpec::Shaped {
            alpha: 0.5,
            rm_batch_size: 4,
        };
        let err = worker_reward(&shaped, None, &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("--rm DIR"), "{err}");
        let err = worker_reward(&shaped, Some("/nonexistent/rm".as_ref()), &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/rm"), "{err}");
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
