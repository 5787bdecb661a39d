//! Two processes on loopback: a coordinator (the `mathrl` binary, or a `Trainer` in this test
//! process) and `mathrl worker` processes. Workers do every rollout and scoring of a run; a
//! worker killed mid-step has its job re-issued so every prompt is still trained once; a
//! worker with the wrong cookie is refused; a cookie comes from a file or the environment, and a
//! short one is refused.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Device;
use common::{save_python_script, tiny_procedural_policy};
use mathrl::model::Trainable;
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_actors::{ClusterConfig, QaRecord, StopHandle, Trainer, TrainerConfig};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule};
use mathrl_rewards::ShapedReward;

const COOKIE: &str = "loopback-secret-of-the-tests";

/// ractor's process groups are global to a process, so two coordinators in one process would
/// both see every worker: the tests that run a coordinator in this process take turns.
static ONE_COORDINATOR_HERE: Mutex<()> = Mutex::new(());

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

/// A port nobody listens on now (the coordinator binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn worker(addr: &str, cookie: &str, name: &str) -> Command {
    worker_with_role(addr, cookie, name, "rollout")
}

fn worker_with_role(addr: &str, cookie: &str, name: &str, role: &str) -> Command {
    let mut cmd = mathrl();
    cmd.args(["worker", "--connect", addr, "--cookie", cookie])
        .args(["--role", role, "--name", name, "--connect-timeout", "60"]);
    cmd
}

/// A child process whose stderr is read line by line on a thread (so its pipe never fills).
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn count(&self, pattern: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pattern))
            .count()
    }

    /// Waits until `pattern` has appeared `n` times; false if the process exits first or
    /// `timeout` passes.
    fn wait_for(&mut self, pattern: &str, n: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.count(pattern) >= n {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return self.count(pattern) >= n;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Waits for the exit; a process still running after `timeout` is killed and fails the
    /// test with its log, so a broken test fails instead of hanging.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    reader.join().unwrap();
                }
                return status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("still running after {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// No local actor at all: a rollout worker generates every group and a reward worker scores
/// every completion.
#[test]
fn worker_processes_generate_and_score_every_group_of_the_run_they_join() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let out = tmp.path().join("run");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut coordinator = mathrl();
    coordinator
        .args(["--recipe", "qwen25-math-rl", "--model"])
        .arg(&model)
        .arg("--output")
        .arg(&out)
        .args(["--max-steps", "2", "--listen", &addr])
        .args(["--wait-for-workers", "2"])
        .env("MATHRL_COOKIE", COOKIE);
    for set in [
        "trainer.rollout_actors=0",
        "trainer.reward_actors=0",
        "trainer.prompts_per_step=2",
        "grpo.rollout.group_size=3",
        "grpo.rollout.max_new_tokens=8",
        "grpo.micro_batch_size=8",
        "eval_questions=2",
        "eval_max_new_tokens=8",
    ] {
        coordinator.args(["--set", set]);
    }
    let mut coordinator = Proc::spawn(&mut coordinator);
    // The coordinator's cookie came from the environment; the rollout worker's comes from a
    // file (with the trailing newline `echo` leaves), the reward worker's from --cookie.
    let cookie_file = tmp.path().join("cookie");
    std::fs::write(&cookie_file, format!("{COOKIE}\n")).unwrap();
    let mut worker = Proc::spawn(
        mathrl()
            .args(["worker", "--connect", &addr, "--cookie-file"])
            .arg(&cookie_file)
            .args([
                "--role",
                "rollout",
                "--name",
                "w1",
                "--connect-timeout",
                "60",
            ])
            .env_remove("MATHRL_COOKIE"),
    );
    let mut scorer = Proc::spawn(&mut worker_with_role(&addr, COOKIE, "r1", "reward"));

    let status = coordinator.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "coordinator failed:\n{}",
        coordinator.log()
    );
    let status = worker.wait(Duration::from_secs(30));
    assert!(status.success(), "worker failed:\n{}", worker.log());
    let status = scorer.wait(Duration::from_secs(30));
    assert!(status.success(), "reward worker failed:\n{}", scorer.log());

    let s = summary(&out);
    assert_eq!(s["steps"], 2, "{s}");
    let groups: BTreeMap<String, u64> =
        serde_json::from_value(s["groups_by_worker"].clone()).unwrap();
    assert_eq!(groups, BTreeMap::from([("w1".to_string(), 4)]), "{s}");
    let mut remote: Vec<String> = s["remote_workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{}:{}",
                w["name"].as_str().unwrap(),
                w["role"].as_str().unwrap()
            )
        })
        .collect();
    remote.sort();
    assert_eq!(remote, ["r1:reward", "w1:rollout"], "{s}");
    assert_eq!(s["failures"], 0, "{s}");
    assert_eq!(s["unscored"], 0, "{s}");
    // Every completion was scored remotely: 4 groups, in batches of at most one group.
    let log = scorer.log();
    assert!(log.contains("set up as a reward worker"), "{log}");
    let batches: u64 = log
        .split(" batches scored")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no batch count in:\n{log}"));
    assert!(batches >= 4, "{log}");
    // Version 0 before its first group, version 1 (after step 1) between the two steps.
    let log = worker.log();
    assert!(log.contains("loaded weights version 0"), "{log}");
    assert!(log.contains("loaded weights version 1"), "{log}");
    assert!(!log.contains("loaded weights version 2"), "{log}");
    assert!(log.contains("4 groups generated"), "{log}");
    // Only the worker that took its cookie from the command line is warned about it.
    assert!(!log.contains("--cookie is readable"), "{log}");
    let log = scorer.log();
    assert!(log.contains("--cookie is readable by every user"), "{log}");
}

/// `tir = true` with every rollout on a worker: the worker builds its own sandbox from the
/// settings the coordinator sends, its completions carry the program's output block as tool
/// tokens, and the coordinator accepts and trains them (the sampled tokens only).
#[test]
fn a_tir_run_gives_remote_rollout_workers_their_own_python_tool() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    save_python_script(
        &model,
        "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    );
    let data = tmp.path().join("qa.jsonl");
    std::fs::write(&data, "{\"question\": \"Q\", \"answer\": \"5\"}\n").unwrap();
    let out = tmp.path().join("run");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut coordinator = mathrl();
    coordinator
        .args(["--recipe", "qwen25-math-rl", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&out)
        .args(["--max-steps", "1", "--listen", &addr])
        .args(["--wait-for-workers", "1"])
        .env("MATHRL_COOKIE", COOKIE);
    for set in [
        "tir=true",
        "tool.allow_weaker_isolation=true",
        "trainer.rollout_actors=0",
        "trainer.reward_actors=1",
        "trainer.prompts_per_step=2",
        "grpo.rollout.group_size=2",
        "grpo.rollout.temperature=0.1",
        "grpo.rollout.max_new_tokens=24",
        "grpo.mini_batch_size=0",
        "grpo.gradient_checkpointing=false",
        "grpo.loss.beta=0",
        "eval_questions=0",
    ] {
        coordinator.args(["--set", set]);
    }
    let mut coordinator = Proc::spawn(&mut coordinator);
    let mut worker = Proc::spawn(&mut worker(&addr, COOKIE, "tir1"));
    let status = coordinator.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "coordinator failed:\n{}",
        coordinator.log()
    );
    let status = worker.wait(Duration::from_secs(30));
    assert!(status.success(), "worker failed:\n{}", worker.log());
    assert!(
        worker.log().contains("the python tool is ready"),
        "{}",
        worker.log()
    );

    let s = summary(&out);
    assert_eq!(
        (s["steps"].as_u64(), s["rejected_results"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );
    let scalar = |tag: &str| -> f64 {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["tag"] == tag)
            .and_then(|v| v["value"].as_f64())
            .unwrap_or_else(|| panic!("no {tag}"))
    };
    // 4 completions, each one call; 6 sampled tokens each, and 3 tool tokens not trained.
    assert_eq!(scalar("rollout/tool_calls_mean"), 1.0);
    assert_eq!(scalar("rollout/tool_errors"), 0.0);
    assert_eq!(scalar("train/completion_length_mean"), 9.0);
    assert_eq!(scalar("train/trained_tokens"), 24.0);
}

/// A cookie under 16 bytes is refused before anything connects, naming where it came from.
#[test]
fn short_cookies_are_refused_naming_their_source() {
    let tmp = tempfile::tempdir().unwrap();
    let short_file = tmp.path().join("short");
    std::fs::write(&short_file, "short\n").unwrap();
    let connect = ["worker", "--connect", "127.0.0.1:9", "--role", "rollout"];
    for (args, env, source) in [
        (vec!["--cookie", "tiny"], None, "--cookie is 4 bytes"),
        (vec![], Some("fifteen-bytes-x"), "MATHRL_COOKIE is 15 bytes"),
        (
            vec!["--cookie-file", short_file.to_str().unwrap()],
            Some("long-enough-but-the-file-wins"),
            "--cookie-file",
        ),
    ] {
        let mut cmd = mathrl();
        cmd.args(connect).args(&args).env_remove("MATHRL_COOKIE");
        if let Some(value) = env {
            cmd.env("MATHRL_COOKIE", value);
        }
        let output = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted:\n{stderr}");
        assert!(
            stderr.contains(source) && stderr.contains("at least 16"),
            "{args:?}:\n{stderr}"
        );
    }
    // A coordinator refuses the same way, before it loads the model.
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let output = mathrl()
        .args(["--recipe", "qwen25-math-rl", "--model"])
        .arg(&model)
        .arg("--output")
        .arg(tmp.path().join("run"))
        .args(["--listen", "127.0.0.1:0"])
        .env("MATHRL_COOKIE", "short")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("MATHRL_COOKIE is 5 bytes"), "{stderr}");
}

/// The tiny policy saved in `dir`, a learner on it sampling groups of 4 × `max_new_tokens`
/// tokens, and its tokenizer.
fn learner(dir: &Path, max_new_tokens: usize) -> (GrpoLearner, Tokenizer) {
    let policy = Policy::load(dir, &Device::Cpu, None, Trainable::Yes).unwrap();
    let tokenizer = Tokenizer::from_dir(dir).unwrap();
    let mut config = GrpoConfig::default();
    config.train_step.schedule = LrSchedule::constant(1e-3);
    config.micro_batch_size = 16;
    config.rollout.group_size = 4;
    config.rollout.max_new_tokens = max_new_tokens;
    let learner = GrpoLearner::new(policy, None, config, Metrics::null()).unwrap();
    (learner, tokenizer)
}

fn prompts(n: usize) -> Vec<QaRecord> {
    (0..n)
        .map(|i| QaRecord {
            id: format!("q{i}"),
            question: format!("What is {i} + 2?"),
            gold: Some((i + 2).to_string()),
            ..QaRecord::default()
        })
        .collect()
}

fn trainer(
    dir: &Path,
    config: TrainerConfig,
    max_new_tokens: usize,
    cluster: ClusterConfig,
) -> Trainer {
    let (learner, tokenizer) = learner(dir, max_new_tokens);
    let reward = Arc::new(ShapedReward::verifier_only(
        mathrl_recipes::verifier::default_verifier(),
    ));
    Trainer::new(config, learner, tokenizer, reward, Metrics::null())
        .unwrap()
        .with_cluster(cluster)
}

/// 1 local rollout and reward actor, no stop token: with groups of 4 × 48 tokens a group takes
/// long enough to be killed in the middle of.
fn config(max_steps: u64) -> TrainerConfig {
    let mut c = TrainerConfig {
        rollout_actors: 1,
        reward_actors: 1,
        prompts_per_step: 4,
        max_steps,
        seed: 3,
        handle_signals: false,
        ..TrainerConfig::default()
    };
    c.sampling.stop_token_ids = Some(vec![]);
    c
}

#[test]
fn a_worker_killed_mid_step_has_its_work_reissued_and_every_prompt_is_trained_once() {
    let _turn = ONE_COORDINATOR_HERE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    tiny_procedural_policy(tmp.path(), 4);
    let port = free_port();
    let mut cluster = ClusterConfig::new(format!("127.0.0.1:{port}").parse().unwrap(), COOKIE);
    cluster.wait_for_workers = 1;
    cluster.join_timeout = Duration::from_secs(60);
    // 12 prompts, 3 steps of 4: one epoch, so each prompt must be trained exactly once.
    let trainer = trainer(tmp.path(), config(3), 48, cluster);

    let killer = std::thread::spawn(move || {
        let mut worker = Proc::spawn(&mut worker(&format!("127.0.0.1:{port}"), COOKIE, "doomed"));
        // The second job it starts is in flight when it dies (its first came back whole).
        let started = worker.wait_for("generating a group", 2, Duration::from_secs(90));
        if started {
            worker.child.kill().unwrap(); // SIGKILL
        }
        let _ = worker.wait(Duration::from_secs(10));
        (started, worker.log())
    });
    let report = trainer.run(prompts(12)).unwrap();
    let (killed, log) = killer.join().unwrap();

    assert!(killed, "the worker never started a second group:\n{log}");
    assert_eq!(report.steps, 3);
    let mut trained: Vec<String> = Vec::new();
    for step in &report.step_records {
        assert_eq!(step.groups.len(), 4, "step {}", step.step);
        trained.extend(step.groups.iter().map(|g| g.prompt_id.clone()));
    }
    trained.sort();
    let mut all: Vec<String> = prompts(12).into_iter().map(|p| p.id).collect();
    all.sort();
    assert_eq!(trained, all, "every prompt trained exactly once");
    let groups: u64 = report.groups_by_worker.values().sum();
    assert_eq!(groups, 12, "{:?}", report.groups_by_worker);
    assert!(
        report.groups_by_worker.get("doomed").copied().unwrap_or(0) >= 1,
        "{:?}",
        report.groups_by_worker
    );
    assert!(report.failures >= 1, "the killed job was not counted");
    assert_eq!(report.disconnects, 1);
    // Every group of a step was sampled by the weights of the step before (on-policy).
    for step in &report.step_records {
        for g in &step.groups {
            assert_eq!(g.policy_version, step.step - 1, "{g:?}");
        }
    }
}

#[test]
fn a_worker_with_the_wrong_cookie_is_refused() {
    let _turn = ONE_COORDINATOR_HERE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    tiny_procedural_policy(tmp.path(), 2);
    let port = free_port();
    let cluster = ClusterConfig::new(format!("127.0.0.1:{port}").parse().unwrap(), COOKIE);
    let stop = StopHandle::new();
    let trainer = trainer(tmp.path(), config(10_000), 4, cluster).with_stop_handle(stop.clone());

    let intruder = std::thread::spawn(move || {
        let mut worker = Proc::spawn(&mut worker(
            &format!("127.0.0.1:{port}"),
            "not-the-cookie-of-this-run",
            "intruder",
        ));
        let status = worker.wait(Duration::from_secs(60));
        // The run goes on without it; end it now.
        stop.request();
        (status, worker.log())
    });
    let report = trainer.run(prompts(8)).unwrap();
    let (status, log) = intruder.join().unwrap();

    assert!(!status.success(), "the intruder was not refused:\n{log}");
    assert!(log.contains("refused") && log.contains("cookie"), "{log}");
    assert!(
        report.remote_workers.is_empty(),
        "{:?}",
        report.remote_workers
    );
    assert!(
        report
            .groups_by_worker
            .keys()
            .all(|k| k.starts_with("rollout-")),
        "{:?}",
        report.groups_by_worker
    );
    assert!(report.steps >= 1 && report.stopped_early);
}
