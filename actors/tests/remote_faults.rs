//! One bad remote worker must not sink a run. A coordinator ([`Trainer`] with a cluster) runs in
//! this process with one local rollout and one local reward actor; a fake worker, this test
//! binary started again as a second process, joins it over ractor_cluster and answers the real
//! protocol with results that are wrong in one way each. The coordinator's own checks must
//! reject them, drop the worker after `max_attempts` rejections and finish the run with the
//! local actors. A connection that never authenticates is closed after the handshake timeout.
//!
//! The fake worker must be another process: ractor's process groups are global to a process,
//! so a worker actor in this one would be seen twice (once local, once through the session).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{config, prompts, trainer, DigitShare};
use mathrl::types::{Completion, CompletionTiming, FinishReason, Group};
use mathrl_actors::cluster::protocol::{
    decode, encode, group_of, GenerateReply, Reply, ScoreReply, ScoreRequest, Setup, WeightsChunk,
};
use mathrl_actors::cluster::WorkerMsg;
use mathrl_actors::rollout::RolloutJob;
use mathrl_actors::{ClusterConfig, Role, StopHandle, TrainReport};
use mathrl_rewards::{RewardFunction, RewardInput, RewardOutput, RewardSpec};
use ractor::{pg, Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::NodeServer;
use serde::Serialize;

const COOKIE: &str = "remote-faults-test-cookie";
/// The tiny fixture's vocabulary.
const VOCAB: u32 = 1024;
/// Rejections before a worker is dropped.
const MAX_ATTEMPTS: usize = 2;

/// Process groups are global to a process: one coordinator at a time here.
static ONE_COORDINATOR_HERE: Mutex<()> = Mutex::new(());

/// A port nobody listens on now (the coordinator binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- The fake worker (the second process) ----

/// What the fake worker gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing: a well-behaved rollout worker.
    None,
    OutOfVocabulary,
    NanLogProb,
    Lengths,
    CompletionCount,
    PolicyVersion,
    WeightsChecksum,
    NanReward,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::None,
        Fault::OutOfVocabulary,
        Fault::NanLogProb,
        Fault::Lengths,
        Fault::CompletionCount,
        Fault::PolicyVersion,
        Fault::WeightsChecksum,
        Fault::NanReward,
    ];

    fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    fn role(self) -> Role {
        match self {
            Fault::NanReward => Role::Reward,
            _ => Role::Rollout,
        }
    }
}

struct FakeWorker;

struct FakeState {
    fault: Fault,
    /// (version, checksum) of the last weights chunk header.
    weights: (u64, u64),
    finished: tokio::sync::mpsc::UnboundedSender<Option<String>>,
}

fn send<T: Serialize>(port: ractor::RpcReplyPort<Vec<u8>>, value: Reply<T>) {
    let _ = port.send(encode(&value).unwrap());
}

impl FakeState {
    /// A group that answers `job` in every respect except the fault.
    fn group(&self, job: &RolloutJob) -> GenerateReply {
        let (version, checksum) = self.weights;
        let completion = |i: usize| Completion {
            sample_index: i,
            token_ids: vec![17, 18, 19],
            logprobs: vec![Some(-0.7); 3],
            tool_mask: vec![false; 3],
            finish_reason: FinishReason::Length,
            tool_calls: 0,
            tool_errors: 0,
            tool_ms: 0.0,
            text: Some("12".into()),
            timing: CompletionTiming::default(),
        };
        let mut reply = GenerateReply {
            group: Group {
                prompt_index: 0,
                prompt_ids: job.prompt_ids.clone(),
                completions: (0..job.params.n).map(completion).collect(),
                policy_version: version,
            },
            weights_checksum: checksum,
            busy_seconds: 0.01,
        };
        let last = reply.group.completions.len() - 1;
        let c = &mut reply.group.completions[last];
        match self.fault {
            Fault::OutOfVocabulary => c.token_ids[1] = VOCAB,
            Fault::NanLogProb => c.logprobs[2] = Some(f32::NAN),
            Fault::Lengths => {
                c.logprobs.pop();
            }
            Fault::CompletionCount => {
                reply.group.completions.pop();
            }
            Fault::PolicyVersion => reply.group.policy_version += 1,
            Fault::WeightsChecksum => reply.weights_checksum ^= 1,
            Fault::None | Fault::NanReward => {}
        }
        reply
    }
}

impl Actor for FakeWorker {
    type Msg = WorkerMsg;
    type State = FakeState;
    type Arguments = FakeState;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: FakeState,
    ) -> Result<FakeState, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: WorkerMsg,
        state: &mut FakeState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMsg::Setup(bytes, port) => {
                decode::<Setup>("setup", &bytes)?;
                send(port, Ok::<(), String>(()));
            }
            WorkerMsg::LoadWeights(header, _chunk, port) => {
                let header: WeightsChunk = decode("weights chunk header", &header)?;
                state.weights = (header.version, header.checksum);
                send(port, Ok::<(), String>(()));
            }
            WorkerMsg::Generate(bytes, port) => {
                let job: RolloutJob = decode("rollout job", &bytes)?;
                send(port, Ok::<_, String>(state.group(&job)));
            }
            WorkerMsg::Score(bytes, port) => {
                let request: ScoreRequest = decode("score request", &bytes)?;
                let reward = match state.fault {
                    Fault::NanReward => f32::NAN,
                    _ => 0.5,
                };
                let outputs = request
                    .items
                    .iter()
                    .map(|_| RewardOutput {
                        reward,
                        verdict: None,
                        rm_score: None,
                    })
                    .collect();
                send(
                    port,
                    Ok::<_, String>(ScoreReply {
                        outputs,
                        busy_seconds: 0.01,
                    }),
                );
            }
            WorkerMsg::Finish(bytes, port) => {
                let refusal: Option<String> = decode("finish message", &bytes)?;
                send(port, Ok::<(), String>(()));
                let _ = state.finished.send(refusal);
            }
        }
        Ok(())
    }
}

/// Runs the fake worker until the coordinator ends its run (or a minute passes).
async fn fake_worker(connect: String, fault: Fault, name: String) {
    let node = NodeServer::new(
        0,
        COOKIE.to_string(),
        format!("{name}-{}", std::process::id()),
        "fake".into(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into());
    let (node, _) = Actor::spawn(None, node, ()).await.unwrap();
    let (finished, mut finish) = tokio::sync::mpsc::unbounded_channel();
    let state = FakeState {
        fault,
        weights: (0, 0),
        finished,
    };
    let (actor, _) = Actor::spawn(Some(name), FakeWorker, state).await.unwrap();
    pg::join(group_of(fault.role()).to_string(), vec![actor.get_cell()]);
    let started = Instant::now();
    while let Err(e) = ractor_cluster::client_connect(&node, connect.as_str()).await {
        assert!(started.elapsed() < Duration::from_secs(60), "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match tokio::time::timeout(Duration::from_secs(60), finish.recv()).await {
        Ok(Some(refusal)) => println!("FAKE WORKER FINISHED: {refusal:?}"),
        _ => println!("FAKE WORKER TIMED OUT"),
    }
    // Let the acknowledgement leave before the node goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Not a test: the fake worker's process, started by the tests below with its settings in the
/// environment.
#[test]
#[ignore = "the fake worker process of the tests in this file, started by them"]
fn fake_worker_process() {
    let (Ok(connect), Ok(fault), Ok(name)) = (
        std::env::var("FAKE_WORKER_CONNECT"),
        std::env::var("FAKE_WORKER_FAULT"),
        std::env::var("FAKE_WORKER_NAME"),
    ) else {
        return;
    };
    let fault = Fault::parse(&fault).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(fake_worker(connect, fault, name));
}

/// Starts the fake worker process.
fn spawn_fake(port: u16, fault: Fault, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["fake_worker_process", "--exact", "--ignored", "--nocapture"])
        .env("FAKE_WORKER_CONNECT", format!("127.0.0.1:{port}"))
        .env("FAKE_WORKER_FAULT", fault.name())
        .env("FAKE_WORKER_NAME", name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---- The coordinator's side ----

/// The digit-share reward, slowly: while the local reward actor is busy, batches wait for the
/// remote reward worker.
struct SlowDigitShare;

impl RewardFunction for SlowDigitShare {
    fn name(&self) -> &str {
        "slow-digit-share"
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        std::thread::sleep(Duration::from_millis(300));
        DigitShare.score_batch(inputs)
    }
}

/// A 2-step run (4 prompts × 3 completions a step) with one local actor of each role and a
/// fake worker with `fault`; the report and the fake worker's output.
fn run_with(fault: Fault) -> Result<(TrainReport, String)> {
    let _turn = ONE_COORDINATOR_HERE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let port = free_port();
    let mut cluster = ClusterConfig::new(format!("127.0.0.1:{port}").parse()?, COOKIE);
    cluster.wait_for_workers = 1;
    cluster.join_timeout = Duration::from_secs(60);
    // Remote reward workers are only set up when the run's reward can be sent as data (the
    // fake ignores it).
    cluster.reward_spec = Some(RewardSpec::Checker);
    let mut c = config(2);
    c.rollout_actors = 1;
    c.reward_actors = 1;
    c.max_attempts = MAX_ATTEMPTS;
    let reward: Arc<dyn RewardFunction> = match fault.role() {
        Role::Reward => Arc::new(SlowDigitShare),
        Role::Rollout => Arc::new(DigitShare),
    };
    let (trainer, _sink) = trainer(c, reward)?;
    let fake = spawn_fake(port, fault, &fault.name());
    let report = trainer.with_cluster(cluster).run(prompts(8));
    let output = fake.wait_with_output()?;
    Ok((report?, stdout(&output)))
}

/// The run finished with the local actors, the fake worker was rejected `MAX_ATTEMPTS` times,
/// dropped, and told why (`reason` is in its refusal).
fn assert_dropped(fault: Fault, reason: &str) -> Result<()> {
    let (report, fake) = run_with(fault)?;
    let name = fault.name();
    assert_eq!(report.steps, 2, "{report:?}");
    assert!(
        report
            .remote_workers
            .contains(&(name.clone(), fault.role())),
        "{report:?}"
    );
    assert_eq!(report.dropped_workers, vec![name.clone()], "{report:?}");
    assert_eq!(report.rejected_results, MAX_ATTEMPTS as u64, "{report:?}");
    // Nothing else failed: a rejection does not count against the prompt or its completions.
    assert_eq!(report.failures, report.rejected_results, "{report:?}");
    assert_eq!(report.unscored, 0, "{report:?}");
    assert_eq!(report.disconnects, 0, "{report:?}");
    // Every group was generated by the local actor, with the weights of the step before.
    assert_eq!(
        report.groups_by_worker.keys().collect::<Vec<_>>(),
        ["rollout-0"],
        "{report:?}"
    );
    for step in &report.step_records {
        assert_eq!(step.groups.len(), 4, "step {}", step.step);
        for group in &step.groups {
            assert_eq!(group.worker, "rollout-0");
            assert_eq!(group.policy_version, step.step - 1, "{group:?}");
            assert!(group.rewards.iter().all(|r| r.is_finite()), "{group:?}");
        }
    }
    assert!(
        fake.contains("FAKE WORKER FINISHED: Some(") && fake.contains(reason),
        "the fake worker was not refused with `{reason}`:\n{fake}"
    );
    Ok(())
}

#[test]
fn a_worker_sending_out_of_vocabulary_tokens_is_dropped_and_the_run_finishes() -> Result<()> {
    assert_dropped(
        Fault::OutOfVocabulary,
        "token 1: id 1024 is outside the vocabulary of 1024 tokens",
    )
}

#[test]
fn a_worker_sending_nan_log_probs_is_dropped_and_the_run_finishes() -> Result<()> {
    assert_dropped(Fault::NanLogProb, "token 2: log-prob NaN is not finite")
}

#[test]
fn a_worker_sending_fewer_log_probs_than_tokens_is_dropped() -> Result<()> {
    assert_dropped(Fault::Lengths, "3 token ids, 2 log-probs, 3 mask entries")
}

#[test]
fn a_worker_sending_too_few_completions_is_dropped() -> Result<()> {
    assert_dropped(Fault::CompletionCount, "2 completions for a group of 3")
}

#[test]
fn a_worker_claiming_another_policy_version_is_dropped() -> Result<()> {
    assert_dropped(Fault::PolicyVersion, "but the worker was sent version")
}

#[test]
fn a_worker_reporting_another_weights_checksum_is_dropped() -> Result<()> {
    assert_dropped(Fault::WeightsChecksum, "weights checksum")
}

#[test]
fn a_reward_worker_sending_nan_rewards_is_dropped_and_no_completion_is_scored_zero() -> Result<()> {
    assert_dropped(Fault::NanReward, "reward NaN is not finite")
}

/// A well-behaved fake worker's groups are accepted: the checks refuse the faults, not the fake.
#[test]
fn a_well_behaved_worker_is_kept_past_the_handshake_timeout() -> Result<()> {
    let _turn = ONE_COORDINATOR_HERE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let port = free_port();
    let mut cluster = ClusterConfig::new(format!("127.0.0.1:{port}").parse()?, COOKIE);
    cluster.wait_for_workers = 1;
    cluster.join_timeout = Duration::from_secs(60);
    cluster.handshake_timeout = Duration::from_secs(1);
    let mut c = config(10_000);
    c.rollout_actors = 1;
    c.reward_actors = 1;
    let (trainer, _sink) = trainer(c, Arc::new(DigitShare))?;
    let stop = StopHandle::new();
    let trainer = trainer.with_cluster(cluster).with_stop_handle(stop.clone());
    let fake = spawn_fake(port, Fault::None, "good");

    // A stranger connects and never says a word.
    let stranger = std::thread::spawn(move || {
        let started = Instant::now();
        let mut socket = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(socket) => break socket,
                Err(_) if started.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("the coordinator never listened: {e}"),
            }
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let connected = Instant::now();
        let mut buffer = [0u8; 64];
        // EOF (or a reset) is the coordinator closing the connection; a timeout is not.
        let closed = loop {
            match socket.read(&mut buffer) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        let open_for = connected.elapsed();
        stop.request();
        (closed, open_for)
    });
    let report = trainer.run(prompts(8));
    let fake = stdout(&fake.wait_with_output()?);
    let report = report?;
    let (closed, open_for) = stranger.join().unwrap();

    assert!(closed, "the unauthenticated connection was never closed");
    assert!(
        open_for >= Duration::from_millis(900),
        "closed after {open_for:?}, before the handshake timeout"
    );
    // The authenticated worker outlived the timeout: no disconnect, finished normally.
    assert!(report.steps >= 1 && report.stopped_early, "{report:?}");
    assert_eq!(report.disconnects, 0, "{report:?}");
    assert!(report.dropped_workers.is_empty(), "{report:?}");
    assert_eq!(report.rejected_results, 0, "{report:?}");
    assert!(
        report
            .remote_workers
            .contains(&("good".to_string(), Role::Rollout)),
        "{report:?}"
    );
    // Its clean groups passed the same checks that refuse the faults above.
    assert!(
        report.groups_by_worker.get("good").copied().unwrap_or(0) >= 1,
        "{report:?}"
    );
    assert!(fake.contains("FAKE WORKER FINISHED: None"), "{fake}");
    Ok(())
}
