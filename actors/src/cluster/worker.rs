//! The worker process: `mathrl worker --connect HOST:PORT --cookie-file PATH --role R`.
//!
//! It starts a ractor_cluster node (listening on loopback only: nobody connects to a worker),
//! connects to the coordinator, and authenticates with the cookie; a refused cookie closes the
//! connection during the handshake, which [`run_worker`] reports as [`ClusterError::Refused`].
//! Its one actor joins the process group of its role and then answers the coordinator's RPCs
//! one at a time: setup, weights chunks, jobs. Because the actor handles one message at a
//! time, new weights are only ever loaded between two groups, never inside one.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use mathrl::generation::{Engine, EngineConfig, ToolExecutor};
use mathrl::model::Qwen2Config;
use mathrl::Tokenizer;
use mathrl_rewards::{RewardFunction, RewardSpec};
use ractor::{pg, Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{ClientConnectErr, NodeEventSubscription, NodeServer, NodeServerMessage};
use serde::Serialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::chunks::{accept_chunk, Incoming};
use super::protocol::{
    decode, encode, group_of, GenerateReply, Reply, ScoreReply, ScoreRequest, Setup, WeightsChunk,
    WorkerMsg,
};
use super::{check_cookie, ClusterError, MAX_FRAME_BYTES};
use crate::event::Role;
use crate::reward::score_items;
use crate::rollout::{build_engine, generate_group, panic_message, RolloutJob};

/// Pause between attempts to reach a coordinator that is not listening yet.
const CONNECT_RETRY: Duration = Duration::from_millis(250);

/// Builds a reward function from the spec the coordinator sends (the worker binary knows where
/// its RM copy lives; this crate does not).
pub type RewardBuilder =
    Arc<dyn Fn(&RewardSpec) -> anyhow::Result<Arc<dyn RewardFunction>> + Send + Sync>;

/// Builds the executor of tool-integrated reasoning on the worker's own node from the run's tool
/// settings (the coordinator's recipe config table, sent in the setup): programs run in the
/// worker's sandbox, never the coordinator's.
pub type ToolBuilder =
    Arc<dyn Fn(&serde_json::Value) -> anyhow::Result<Arc<dyn ToolExecutor>> + Send + Sync>;

/// How a worker process runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's `HOST:PORT`.
    pub connect: String,
    /// The shared secret.
    pub cookie: String,
    /// Rollout or reward.
    pub role: Role,
    /// Compute threads.
    pub threads: usize,
    /// Its name in the coordinator's reports (`groups_by_worker`); unique per run.
    pub name: String,
    /// Where its policy copy (or RM) lives.
    pub device: Device,
    /// How long to keep trying to reach the coordinator and to wait for the authenticated
    /// connection.
    pub connect_timeout: Duration,
}

/// What a worker did before the run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Groups generated (rollout workers).
    pub groups: u64,
    /// Batches scored (reward workers).
    pub batches: u64,
    /// Weights versions loaded.
    pub weights_loaded: u64,
}

/// What the worker's main loop hears about.
#[derive(Debug)]
enum Signal {
    Authenticated,
    Disconnected,
    /// The coordinator ended the run; `Some` is a refusal (setup failed, role not wanted).
    Finished(Option<String>),
}

/// Forwards the node server's session events to the main loop.
struct Sessions(UnboundedSender<Signal>);

impl NodeEventSubscription for Sessions {
    fn node_session_opened(&self, _session: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, _session: NodeServerSessionInformation) {
        let _ = self.0.send(Signal::Disconnected);
    }

    fn node_session_authenticated(&self, _session: NodeServerSessionInformation) {
        let _ = self.0.send(Signal::Authenticated);
    }
}

/// Runs a worker until the coordinator ends the run (`Ok`) or refuses or loses it (`Err`).
pub fn run_worker(
    options: WorkerOptions,
    rewards: RewardBuilder,
    tools: ToolBuilder,
) -> Result<WorkerReport, ClusterError> {
    check_cookie(&options.cookie, "the worker's options")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mathrl-worker")
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Worker {
            worker: options.name.clone(),
            message: format!("starting tokio: {e}"),
        })?;
    let counts = Arc::new(Counts::default());
    let outcome = runtime.block_on(serve(&options, rewards, tools, counts.clone()));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome?;
    Ok(counts.report())
}

async fn serve(
    options: &WorkerOptions,
    rewards: RewardBuilder,
    tools: ToolBuilder,
    counts: Arc<Counts>,
) -> Result<(), ClusterError> {
    let addr = options.connect.clone();
    let (signals, mut inbox) = unbounded_channel();
    // The node's name must be unique among the coordinator's peers (it elects one session per
    // name), so the pid joins the worker's chosen name.
    let node_name = format!("{}-{}", options.name, std::process::id());
    let server = NodeServer::new(
        0,
        options.cookie.clone(),
        node_name,
        "worker".into(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(std::net::Ipv4Addr::LOCALHOST.into())
    .with_max_inbound_frame_size(MAX_FRAME_BYTES);
    let (node, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| ClusterError::Listen {
            addr: "127.0.0.1:0".into(),
            message: e.to_string(),
        })?;
    node.cast(NodeServerMessage::SubscribeToEvents {
        id: "mathrl-worker".into(),
        subscription: Box::new(Sessions(signals.clone())),
    })
    .map_err(|e| ClusterError::Connect {
        addr: addr.clone(),
        message: format!("node server: {e}"),
    })?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads.max(1))
        .thread_name(|i| format!("mathrl-worker-compute-{i}"))
        .build()
        .map_err(|e| ClusterError::Worker {
            worker: options.name.clone(),
            message: format!("starting {} compute threads: {e}", options.threads),
        })?;
    let (actor, _) = Actor::spawn(
        Some(options.name.clone()),
        WorkerActor,
        WorkerState {
            name: options.name.clone(),
            role: options.role,
            device: options.device.clone(),
            pool: Arc::new(pool),
            rewards,
            tools,
            signals,
            counts,
            rollout: None,
            engine: None,
            checksum: 0,
            incoming: None,
            reward: None,
        },
    )
    .await
    .map_err(|e| ClusterError::Worker {
        worker: options.name.clone(),
        message: format!("starting its actor (is the name taken?): {e}"),
    })?;
    // Joined before connecting: the session announces the group once it is authenticated.
    pg::join(group_of(options.role).to_string(), vec![actor.get_cell()]);
    let outcome = async {
        let started = Instant::now();
        // A worker may start before its coordinator: a refused TCP connection is retried until
        // the timeout; anything else (an unknown host, a refused cookie) is final.
        loop {
            match ractor_cluster::client_connect(&node, addr.as_str()).await {
                Ok(()) => break,
                Err(ClientConnectErr::Socket(e)) if started.elapsed() < options.connect_timeout => {
                    tracing::debug!("coordinator at {addr} not reachable yet: {e}");
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
                Err(e) => {
                    let message = match e {
                        ClientConnectErr::Socket(e) => format!(
                            "{e} (kept trying for {} s)",
                            options.connect_timeout.as_secs()
                        ),
                        other => other.to_string(),
                    };
                    return Err(ClusterError::Connect {
                        addr: addr.clone(),
                        message,
                    });
                }
            }
        }
        let left = options.connect_timeout.saturating_sub(started.elapsed());
        wait_for_authentication(&mut inbox, &addr, left.max(Duration::from_secs(1))).await?;
        tracing::info!(
            "joined the coordinator at {addr} as `{}` ({} worker)",
            options.name,
            options.role.as_str()
        );
        loop {
            match inbox.recv().await {
                Some(Signal::Finished(None)) => {
                    // Stopping the node at once could drop the acknowledgement still on its way
                    // out; the coordinator closes the connection when it has it.
                    let closed = async {
                        while let Some(s) = inbox.recv().await {
                            if matches!(s, Signal::Disconnected) {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), closed).await;
                    return Ok(());
                }
                Some(Signal::Finished(Some(reason))) => {
                    return Err(ClusterError::Worker {
                        worker: options.name.clone(),
                        message: format!("the coordinator refused it: {reason}"),
                    })
                }
                Some(Signal::Disconnected) | None => {
                    return Err(ClusterError::Disconnected { addr: addr.clone() })
                }
                Some(Signal::Authenticated) => {}
            }
        }
    }
    .await;
    actor.stop(None);
    node.stop(None);
    outcome
}

async fn wait_for_authentication(
    inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Signal>,
    addr: &str,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            signal = inbox.recv() => match signal {
                Some(Signal::Authenticated) => return Ok(()),
                Some(Signal::Disconnected) | None => {
                    return Err(ClusterError::Refused { addr: addr.to_string() })
                }
                Some(Signal::Finished(_)) => {}
            },
            _ = &mut deadline => {
                return Err(ClusterError::Timeout {
                    addr: addr.to_string(),
                    seconds: timeout.as_secs(),
                })
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    groups: AtomicU64,
    batches: AtomicU64,
    weights: AtomicU64,
}

impl Counts {
    fn report(&self) -> WorkerReport {
        WorkerReport {
            groups: self.groups.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            weights_loaded: self.weights.load(Ordering::Relaxed),
        }
    }
}

/// What a rollout worker builds engines from (everything but the weights).
#[derive(Clone)]
struct RolloutSpec {
    model_config: Qwen2Config,
    dtype: DType,
    engine: EngineConfig,
    tokenizer: Tokenizer,
    tool: Option<Arc<dyn ToolExecutor>>,
}

/// The worker's one actor.
struct WorkerActor;

struct WorkerState {
    name: String,
    role: Role,
    device: Device,
    pool: Arc<rayon::ThreadPool>,
    rewards: RewardBuilder,
    tools: ToolBuilder,
    signals: UnboundedSender<Signal>,
    counts: Arc<Counts>,
    rollout: Option<RolloutSpec>,
    /// Absent until the first weights arrive (and while a job holds it).
    engine: Option<Engine>,
    checksum: u64,
    incoming: Option<Incoming>,
    reward: Option<Arc<dyn RewardFunction>>,
}

/// Sends `value` as a CBOR reply (if even that fails, the reply is the encoding error).
fn reply<T: Serialize>(port: RpcReplyPort<Vec<u8>>, value: Reply<T>) {
    let bytes = encode(&value)
        .or_else(|e| encode(&Reply::<()>::Err(e.to_string())))
        .unwrap_or_default();
    let _ = port.send(bytes);
}

impl Actor for WorkerActor {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = WorkerState;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: WorkerState,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Every failure is a reply: the coordinator decides what to retry.
        match message {
            WorkerMsg::Setup(bytes, port) => reply(port, state.set_up(&bytes).await),
            WorkerMsg::LoadWeights(header, chunk, port) => {
                reply(port, state.load_weights(&header, chunk).await)
            }
            WorkerMsg::Generate(bytes, port) => reply(port, state.generate(&bytes).await),
            WorkerMsg::Score(bytes, port) => reply(port, state.score(&bytes).await),
            WorkerMsg::Finish(bytes, port) => {
                let refusal = decode::<Option<String>>("finish message", &bytes)
                    .unwrap_or_else(|e| Some(e.to_string()));
                reply(port, Ok::<(), String>(()));
                let _ = state.signals.send(Signal::Finished(refusal));
            }
        }
        Ok(())
    }
}

impl WorkerState {
    fn wrong_role(&self, wanted: Role) -> Result<(), String> {
        if self.role == wanted {
            Ok(())
        } else {
            Err(format!(
                "`{}` is a {} worker, not a {} worker",
                self.name,
                self.role.as_str(),
                wanted.as_str()
            ))
        }
    }

    async fn set_up(&mut self, bytes: &[u8]) -> Reply<()> {
        match decode::<Setup>("setup", bytes).map_err(|e| e.to_string())? {
            Setup::Rollout {
                model_config,
                dtype,
                engine,
                tokenizer_json,
                tokenizer_config,
                tool,
            } => {
                self.wrong_role(Role::Rollout)?;
                let dtype = DType::from_str(&dtype).map_err(|e| format!("dtype `{dtype}`: {e}"))?;
                let tokenizer = Tokenizer::from_json(&tokenizer_json, &tokenizer_config)
                    .map_err(|e| format!("tokenizer: {e}"))?;
                let tool = match tool {
                    Some(settings) => {
                        let build = self.tools.clone();
                        let tool = tokio::task::spawn_blocking(move || build(&settings))
                            .await
                            .map_err(|e| format!("building the TIR tool: {e}"))?
                            .map_err(|e| format!("building the TIR tool: {e:#}"))?;
                        tracing::info!("tool-integrated reasoning: the python tool is ready");
                        Some(tool)
                    }
                    None => None,
                };
                self.rollout = Some(RolloutSpec {
                    model_config: *model_config,
                    dtype,
                    engine,
                    tokenizer,
                    tool,
                });
                tracing::info!("set up as a rollout worker ({dtype:?}); waiting for weights");
                Ok(())
            }
            Setup::Reward { spec } => {
                self.wrong_role(Role::Reward)?;
                let build = self.rewards.clone();
                let reward = tokio::task::spawn_blocking(move || build(&spec))
                    .await
                    .map_err(|e| format!("building the reward: {e}"))?
                    .map_err(|e| format!("building the reward: {e:#}"))?;
                tracing::info!("set up as a reward worker (reward `{}`)", reward.name());
                self.reward = Some(reward);
                Ok(())
            }
        }
    }

    async fn load_weights(&mut self, header: &[u8], chunk: Vec<u8>) -> Reply<()> {
        self.wrong_role(Role::Rollout)?;
        let header: WeightsChunk =
            decode("weights chunk header", header).map_err(|e| e.to_string())?;
        let Some(snapshot) = accept_chunk(&mut self.incoming, header, chunk)? else {
            return Ok(());
        };
        let spec = self
            .rollout
            .clone()
            .ok_or("weights arrived before the setup")?;
        let device = self.device.clone();
        let pool = self.pool.clone();
        let version = snapshot.version;
        let built = tokio::task::spawn_blocking(move || {
            pool.install(|| {
                build_engine(
                    &spec.model_config,
                    &device,
                    spec.dtype,
                    &spec.engine,
                    &spec.tokenizer,
                    spec.tool.as_ref(),
                    &snapshot,
                )
            })
        })
        .await
        .map_err(|e| format!("loading weights version {version}: {e}"))?
        .map_err(|e| e.to_string())?;
        self.engine = Some(built);
        self.checksum = header.checksum;
        self.counts.weights.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "loaded weights version {version} ({:016x})",
            header.checksum
        );
        Ok(())
    }

    async fn generate(&mut self, bytes: &[u8]) -> Reply<GenerateReply> {
        self.wrong_role(Role::Rollout)?;
        let job: RolloutJob = decode("rollout job", bytes).map_err(|e| e.to_string())?;
        tracing::info!(job = job.job_id, "generating a group");
        let mut engine = self
            .engine
            .take()
            .ok_or("no weights loaded (the coordinator sends them before a job)")?;
        let pool = self.pool.clone();
        let checksum = self.checksum;
        let outcome = tokio::task::spawn_blocking(move || {
            let result = pool.install(|| generate_group(&mut engine, &job, checksum));
            (engine, result)
        })
        .await;
        // A panic loses the engine: the error makes the coordinator send the weights again.
        let (engine, result) = outcome.map_err(|e| {
            if e.is_panic() {
                format!("generation panicked: {}", panic_message(e.into_panic()))
            } else {
                format!("generation task cancelled: {e}")
            }
        })?;
        self.engine = Some(engine);
        let result = result?;
        self.counts.groups.fetch_add(1, Ordering::Relaxed);
        Ok(GenerateReply {
            group: result.group,
            weights_checksum: result.weights_checksum,
            busy_seconds: result.busy.as_secs_f64(),
        })
    }

    async fn score(&mut self, bytes: &[u8]) -> Reply<ScoreReply> {
        self.wrong_role(Role::Reward)?;
        let request: ScoreRequest = decode("score request", bytes).map_err(|e| e.to_string())?;
        let reward = self.reward.clone().ok_or("no reward set up yet")?;
        let pool = self.pool.clone();
        let started = Instant::now();
        let outputs = tokio::task::spawn_blocking(move || {
            pool.install(|| score_items(reward.as_ref(), &request.items))
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                format!(
                    "reward function panicked: {}",
                    panic_message(e.into_panic())
                )
            } else {
                format!("reward task cancelled: {e}")
            }
        })??;
        self.counts.batches.fetch_add(1, Ordering::Relaxed);
        Ok(ScoreReply {
            outputs,
            busy_seconds: started.elapsed().as_secs_f64(),
        })
    }
}
