//! The command line's side of multi-machine runs: `mathrl worker ...`, and the `--listen` /
//! cookie flags that let a training recipe accept workers (see DEPLOYMENT.md).
//!
//! The cookie comes from the first of `--cookie-file PATH`, the `MATHRL_COOKIE` environment
//! variable and `--cookie SECRET` that is given ([`resolve_cookie`]); the command line is last
//! because every local user can read it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use mathrl_actors::cluster::{
    check_cookie, run_worker as serve, RewardBuilder, ToolBuilder, WorkerOptions,
};
use mathrl_actors::{ClusterConfig, Role};
use mathrl_rewards::{RewardFunction, RewardResources, RewardSpec};

use crate::cli::{Cli, WorkerArgs, WorkerRole};

/// The environment variable a cookie may be given in.
pub const COOKIE_ENV: &str = "MATHRL_COOKIE";

/// Where a cookie was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieSource {
    /// `--cookie-file PATH`.
    File(PathBuf),
    /// The `MATHRL_COOKIE` environment variable.
    Env,
    /// `--cookie SECRET`.
    Flag,
}

impl fmt::Display for CookieSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CookieSource::File(path) => write!(f, "--cookie-file {}", path.display()),
            CookieSource::Env => f.write_str(COOKIE_ENV),
            CookieSource::Flag => f.write_str("--cookie"),
        }
    }
}

/// The value of `MATHRL_COOKIE`, if set.
pub fn cookie_from_env() -> Result<Option<String>> {
    match std::env::var(COOKIE_ENV) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(COOKIE_ENV)),
    }
}

/// The cookie from the first of `file`, `env` (the value of `MATHRL_COOKIE`) and `flag` that is
/// given, with its source; `None` if none is. A file's trailing newline is dropped; a cookie
/// shorter than [`mathrl_actors::cluster::MIN_COOKIE_BYTES`] is refused, naming its source.
pub fn resolve_cookie(
    file: Option<&Path>,
    env: Option<String>,
    flag: Option<&str>,
) -> Result<Option<(String, CookieSource)>> {
    let (cookie, source) = if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--cookie-file {}", path.display()))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        (text.to_string(), CookieSource::File(path.to_path_buf()))
    } else if let Some(value) = env {
        (value, CookieSource::Env)
    } else if let Some(value) = flag {
        (value.to_string(), CookieSource::Flag)
    } else {
        return Ok(None);
    };
    match (&source, flag.is_some()) {
        (CookieSource::Flag, _) => tracing::warn!(
            "--cookie is readable by every user of this machine (`ps`, /proc/PID/cmdline): \
             prefer --cookie-file PATH or {COOKIE_ENV}"
        ),
        (other, true) => tracing::warn!("--cookie is ignored: the cookie comes from {other}"),
        (_, false) => {}
    }
    check_cookie(&cookie, &source.to_string())?;
    Ok(Some((cookie, source)))
}

/// The cluster settings of a training run from `--listen`, the cookie (file, environment or
/// flag), `--handshake-timeout` and `--wait-for-workers`; `None` without `--listen`.
/// `reward_spec` is what remote reward workers build the run's reward from.
pub fn cluster_config(cli: &Cli, reward_spec: Option<RewardSpec>) -> Result<Option<ClusterConfig>> {
    cluster_config_with_env(cli, reward_spec, cookie_from_env()?)
}

/// [`cluster_config`] with `env_cookie` as the value of `MATHRL_COOKIE`.
fn cluster_config_with_env(
    cli: &Cli,
    reward_spec: Option<RewardSpec>,
    env_cookie: Option<String>,
) -> Result<Option<ClusterConfig>> {
    let Some(listen) = cli.listen.as_deref() else {
        if cli.cookie.is_some() || cli.cookie_file.is_some() {
            tracing::warn!("a cookie without --listen: no worker can join this run");
        }
        return Ok(None);
    };
    let listen: SocketAddr = listen.parse().with_context(|| {
        format!("--listen `{listen}`: expected ADDR:PORT, e.g. 0.0.0.0:7400 or 127.0.0.1:0")
    })?;
    let (cookie, _) = resolve_cookie(
        cli.cookie_file.as_deref(),
        env_cookie,
        cli.cookie.as_deref(),
    )?
    .with_context(|| {
        format!(
            "--listen needs a cookie workers authenticate with: --cookie-file PATH, \
                 {COOKIE_ENV} or --cookie SECRET"
        )
    })?;
    if cli.handshake_timeout == 0 {
        anyhow::bail!("--handshake-timeout must be at least 1 second");
    }
    let mut config = ClusterConfig::new(listen, cookie);
    config.reward_spec = reward_spec;
    config.wait_for_workers = cli.wait_for_workers;
    config.handshake_timeout = Duration::from_secs(cli.handshake_timeout);
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
    // A TIR run's programs run in this node's sandbox, built from the coordinator's settings.
    let tools: ToolBuilder = Arc::new(crate::tools::python::worker_tir_executor);
    let (cookie, _) = resolve_cookie(
        args.cookie_file.as_deref(),
        cookie_from_env()?,
        args.cookie.as_deref(),
    )?
    .with_context(|| {
        format!(
            "the worker needs the coordinator's cookie: --cookie-file PATH, {COOKIE_ENV} or \
             --cookie SECRET"
        )
    })?;
    let options = WorkerOptions {
        connect: args.connect.clone(),
        cookie,
        role,
        threads: args.threads,
        name: name.clone(),
        device,
        connect_timeout: Duration::from_secs(args.connect_timeout),
    };
    let report = serve(options, rewards, tools).with_context(|| format!("worker `{name}`"))?;
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

    const SECRET: &str = "a-cookie-of-32-bytes-0123456789a";

    #[test]
    fn listen_needs_a_cookie_and_a_socket_address() {
        let config = |args: &[&str], spec| cluster_config_with_env(&cli(args), spec, None);
        assert!(config(&["--recipe", "x"], None).unwrap().is_none());
        let err = config(&["--listen", "127.0.0.1:0"], None).unwrap_err();
        assert!(err.to_string().contains("--cookie-file PATH"), "{err}");
        let err = config(&["--listen", "here", "--cookie", SECRET], None).unwrap_err();
        assert!(err.to_string().contains("--listen `here`"), "{err}");
        let config = config(
            &[
                "--listen",
                "127.0.0.1:7400",
                "--cookie",
                SECRET,
                "--wait-for-workers",
                "2",
                "--handshake-timeout",
                "3",
            ],
            Some(RewardSpec::Checker),
        )
        .unwrap()
        .unwrap();
        assert_eq!(config.listen.port(), 7400);
        assert_eq!(config.cookie, SECRET);
        assert_eq!(config.wait_for_workers, 2);
        assert_eq!(config.handshake_timeout, Duration::from_secs(3));
        assert_eq!(config.reward_spec, Some(RewardSpec::Checker));
    }

    #[test]
    fn the_handshake_timeout_defaults_to_ten_seconds_and_may_not_be_zero() {
        let args = ["--listen", "127.0.0.1:7400", "--cookie", SECRET];
        let config = cluster_config_with_env(&cli(&args), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(config.handshake_timeout, Duration::from_secs(10));
        let zero = [&args[..], &["--handshake-timeout", "0"]].concat();
        let err = cluster_config_with_env(&cli(&zero), None, None).unwrap_err();
        assert!(err.to_string().contains("--handshake-timeout"), "{err}");
    }

    #[test]
    fn a_cookie_file_wins_over_the_environment_which_wins_over_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("cookie");
        std::fs::write(&file, "from-the-file-0123456789\n").unwrap();
        let env = || Some("from-the-environment-0123".to_string());
        let flag = Some("from-the-command-line-01");

        let (cookie, source) = resolve_cookie(Some(&file), env(), flag).unwrap().unwrap();
        // The trailing newline an editor or `echo` leaves is not part of the cookie.
        assert_eq!(cookie, "from-the-file-0123456789");
        assert_eq!(source, CookieSource::File(file.clone()));
        let (cookie, source) = resolve_cookie(None, env(), flag).unwrap().unwrap();
        assert_eq!(
            (cookie.as_str(), source),
            ("from-the-environment-0123", CookieSource::Env)
        );
        let (cookie, source) = resolve_cookie(None, None, flag).unwrap().unwrap();
        assert_eq!(
            (cookie.as_str(), source),
            ("from-the-command-line-01", CookieSource::Flag)
        );
        assert!(resolve_cookie(None, None, None).unwrap().is_none());

        // Only one trailing line ending is dropped (CRLF too); inner whitespace stays.
        std::fs::write(&file, "cookie with spaces 0123\r\n").unwrap();
        let (cookie, _) = resolve_cookie(Some(&file), None, None).unwrap().unwrap();
        assert_eq!(cookie, "cookie with spaces 0123");
        // The listen path takes the same order.
        let args = [
            "--listen",
            "127.0.0.1:7400",
            "--cookie",
            "from-the-command-line-01",
        ];
        let config = cluster_config_with_env(&cli(&args), None, env())
            .unwrap()
            .unwrap();
        assert_eq!(config.cookie, "from-the-environment-0123");
    }

    #[test]
    fn short_cookies_are_refused_naming_their_source() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("cookie");
        // 15 bytes and a newline: the newline does not count.
        std::fs::write(&file, "fifteen-bytes-x\n").unwrap();
        let err = resolve_cookie(Some(&file), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("--cookie-file {}", file.display())) && err.contains("15 bytes"),
            "{err}"
        );
        let err = resolve_cookie(None, Some("short".into()), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MATHRL_COOKIE") && err.contains("5 bytes"),
            "{err}"
        );
        let err = resolve_cookie(None, None, Some("s"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("from --cookie is 1 bytes"), "{err}");
        // Exactly the minimum is enough.
        assert!(resolve_cookie(None, None, Some("sixteen-bytes-xy")).is_ok());
        let missing = tmp.path().join("missing");
        let err = resolve_cookie(Some(&missing), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cookie-file"), "{err}");
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
            "--cookie-file",
            "/run/secrets/mathrl",
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
        assert_eq!(
            args.cookie_file.as_deref(),
            Some(Path::new("/run/secrets/mathrl"))
        );
        assert_eq!(args.cookie, None);
        assert_eq!(args.threads, 3);
        assert_eq!(parsed.log_level, "debug");
        // The recipe form is unchanged.
        let recipe = cli(&["--recipe", "qwen25-math-rl", "--max-steps", "2"]);
        assert!(recipe.command.is_none());
        assert_eq!(recipe.recipe.as_deref(), Some("qwen25-math-rl"));
    }
}
