//! [`RemoteWorkers`]: the table of the workers that joined the coordinator's cluster, which the
//! coordinator reads to send remote jobs, and the tasks that run those jobs.
//!
//! A remote job runs as one tokio task: weights first when the worker's version is not the
//! latest (so a joining worker gets them before its first group, and loads only between
//! groups), then the job's RPC; its outcome goes to the coordinator as the same
//! [`Event::Rollout`] / [`Event::Reward`] a local actor sends. The coordinator gives each
//! worker at most one job at a time, so a worker never sees two of these tasks at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorId, ActorRef, RpcReplyPort};

use super::protocol::{
    self, decode, encode, GenerateReply, Reply, ScoreReply, ScoreRequest, WeightsChunk, WorkerMsg,
};
use super::validate::{check_group, check_scores, Expected, Rejection};
use super::ClusterConfig;
use crate::event::{Event, Role, RolloutResult, WorkerId};
use crate::reward::RewardJob;
use crate::rollout::RolloutJob;
use crate::weights::{WeightsBoard, WeightsSnapshot};

/// Longest a worker may take to build its engine or reward (an RM load included).
pub(super) const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest a worker may take to acknowledge the end of the run.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

/// One remote worker, from its join on.
struct Entry {
    worker: WorkerId,
    name: String,
    actor_id: ActorId,
    actor: ActorRef<WorkerMsg>,
    connected: bool,
    /// Dropped by the coordinator for sending results that failed its checks.
    dropped: bool,
    /// Set up and announced to the coordinator.
    ready: bool,
    /// (version, checksum) of the weights it holds.
    loaded: Option<(u64, u64)>,
}

/// What remote job tasks need from the run.
#[derive(Clone)]
struct Link {
    runtime: tokio::runtime::Handle,
    events: Sender<Event>,
    board: WeightsBoard,
    chunk_bytes: usize,
    /// The policy's vocabulary size, which every token id of a group must be below.
    vocab_size: usize,
}

#[derive(Default)]
struct Registry {
    entries: Vec<Entry>,
    link: Option<Link>,
    wait_for: usize,
    join_timeout: Duration,
}

/// The remote workers of a run (empty, and every send refused, when the run has no cluster).
#[derive(Clone, Default)]
pub struct RemoteWorkers(Arc<Mutex<Registry>>);

impl RemoteWorkers {
    /// No cluster: no remote worker will ever join.
    pub fn none() -> Self {
        Self::default()
    }

    /// The workers of a cluster run per `config`: remote jobs run on `runtime`, report on
    /// `events`, load weights from `board`, and their groups are checked against a policy of
    /// `vocab_size` tokens.
    pub(super) fn new(
        config: &ClusterConfig,
        runtime: tokio::runtime::Handle,
        events: Sender<Event>,
        board: WeightsBoard,
        vocab_size: usize,
    ) -> Self {
        Self(Arc::new(Mutex::new(Registry {
            entries: Vec::new(),
            link: Some(Link {
                runtime,
                events,
                board,
                chunk_bytes: config.chunk_bytes.max(1),
                vocab_size,
            }),
            wait_for: config.wait_for_workers,
            join_timeout: config.join_timeout,
        })))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The worker's name (as it joined), for reports; `None` for an unknown worker.
    pub fn name(&self, worker: WorkerId) -> Option<String> {
        self.lock()
            .entries
            .iter()
            .find(|e| e.worker == worker)
            .map(|e| e.name.clone())
    }

    /// Whether the worker is still connected.
    pub fn is_connected(&self, worker: WorkerId) -> bool {
        self.lock()
            .entries
            .iter()
            .any(|e| e.worker == worker && e.connected)
    }

    /// Remote workers of `role` that joined and were set up during the run.
    pub fn joined(&self, role: Role) -> usize {
        self.lock()
            .entries
            .iter()
            .filter(|e| e.worker.role == role && e.ready)
            .count()
    }

    /// Names and roles of every remote worker that joined and was set up.
    pub fn roster(&self) -> Vec<(String, Role)> {
        self.lock()
            .entries
            .iter()
            .filter(|e| e.ready)
            .map(|e| (e.name.clone(), e.worker.role))
            .collect()
    }

    /// Connected, set-up workers now.
    pub fn ready_now(&self) -> usize {
        self.lock()
            .entries
            .iter()
            .filter(|e| e.ready && e.connected)
            .count()
    }

    /// Workers to wait for before the first step, and for how long.
    pub fn wait_for(&self) -> (usize, Duration) {
        let registry = self.lock();
        (registry.wait_for, registry.join_timeout)
    }

    /// Registers a joining worker (once per actor); `None` if it is already known.
    pub(super) fn register(&self, name: String, role: Role, cell: &ActorCell) -> Option<WorkerId> {
        let mut registry = self.lock();
        let actor_id = cell.get_id();
        if registry.entries.iter().any(|e| e.actor_id == actor_id) {
            return None;
        }
        let index = registry
            .entries
            .iter()
            .filter(|e| e.worker.role == role)
            .count();
        let worker = WorkerId::remote(role, index);
        registry.entries.push(Entry {
            worker,
            name,
            actor_id,
            actor: ActorRef::from(cell.clone()),
            connected: true,
            dropped: false,
            ready: false,
            loaded: None,
        });
        Some(worker)
    }

    pub(super) fn mark_ready(&self, worker: WorkerId) -> bool {
        let mut registry = self.lock();
        match registry.entries.iter_mut().find(|e| e.worker == worker) {
            Some(e) if e.connected => {
                e.ready = true;
                true
            }
            _ => false,
        }
    }

    /// Marks the worker of `actor_id` gone; returns it if it was connected and announced.
    pub(super) fn disconnect(&self, actor_id: ActorId) -> Option<(WorkerId, String)> {
        let mut registry = self.lock();
        let entry = registry
            .entries
            .iter_mut()
            .find(|e| e.actor_id == actor_id && e.connected)?;
        entry.connected = false;
        entry.ready.then(|| (entry.worker, entry.name.clone()))
    }

    /// Whether a worker of this name was dropped during the run (it may not join again).
    pub(super) fn was_dropped(&self, name: &str) -> bool {
        self.lock()
            .entries
            .iter()
            .any(|e| e.dropped && e.name == name)
    }

    /// Drops a worker whose results kept failing the coordinator's checks: no job reaches it
    /// any more, it is not readmitted, and it is told why (its process exits with `reason`).
    pub fn drop_worker(&self, worker: WorkerId, reason: String) {
        let (actor, runtime) = {
            let mut registry = self.lock();
            let Some(runtime) = registry.link.as_ref().map(|l| l.runtime.clone()) else {
                return;
            };
            let Some(entry) = registry.entries.iter_mut().find(|e| e.worker == worker) else {
                return;
            };
            entry.connected = false;
            entry.dropped = true;
            (entry.actor.clone(), runtime)
        };
        runtime.spawn(async move {
            let _ = finish(&actor, Some(reason)).await;
        });
    }

    fn set_loaded(&self, worker: WorkerId, version: u64, checksum: u64) {
        if let Some(e) = self.lock().entries.iter_mut().find(|e| e.worker == worker) {
            e.loaded = Some((version, checksum));
        }
    }

    /// The actor, name and weights of a connected worker, with the run's link.
    fn target(&self, worker: WorkerId) -> Option<Target> {
        let registry = self.lock();
        let link = registry.link.clone()?;
        let entry = registry
            .entries
            .iter()
            .find(|e| e.worker == worker && e.connected)?;
        Some(Target {
            actor: entry.actor.clone(),
            name: entry.name.clone(),
            loaded: entry.loaded,
            link,
        })
    }

    /// Sends `job` to a remote rollout worker; false if it is gone (nothing was sent).
    pub fn generate(&self, worker: WorkerId, job: RolloutJob) -> bool {
        let Some(target) = self.target(worker) else {
            return false;
        };
        let this = self.clone();
        let runtime = target.link.runtime.clone();
        runtime.spawn(async move {
            let job_id = job.job_id;
            let events = target.link.events.clone();
            let event = match this.run_generate(worker, &target, job).await {
                Ok(result) => Event::Rollout {
                    worker,
                    job_id,
                    result: Ok(result),
                },
                Err(JobError::Failed(e)) => Event::Rollout {
                    worker,
                    job_id,
                    result: Err(format!("{}: {e}", target.name)),
                },
                Err(JobError::Rejected { rejection, version }) => Event::Rejected {
                    worker,
                    job_id,
                    reason: match version {
                        Some(v) => format!("{rejection} (sent policy version {v})"),
                        None => rejection.to_string(),
                    },
                },
            };
            let _ = events.send(event);
        });
        true
    }

    async fn run_generate(
        &self,
        worker: WorkerId,
        target: &Target,
        job: RolloutJob,
    ) -> Result<RolloutResult, JobError> {
        let latest = target.link.board.latest();
        let mut sent = target.loaded;
        if sent != Some((latest.version, latest.checksum)) {
            let wire = latest.wire.as_ref().ok_or_else(|| {
                format!(
                    "weights version {} were published without bytes for remote workers",
                    latest.version
                )
            })?;
            push_weights(&target.actor, wire, target.link.chunk_bytes)
                .await
                .map_err(|e| format!("sending weights version {}: {e}", latest.version))?;
            self.set_loaded(worker, latest.version, latest.checksum);
            sent = Some((latest.version, latest.checksum));
        }
        let (version, checksum) = sent.ok_or("no weights were sent to the worker")?;
        let payload = protocol::encode_job(&job).map_err(|e| e.to_string())?;
        let bytes = rpc(
            &target.actor,
            |port| WorkerMsg::Generate(payload, port),
            None,
        )
        .await?;
        let reply: Reply<GenerateReply> =
            decode("generate reply", &bytes).map_err(|e| e.to_string())?;
        let reply = reply?;
        let expected = Expected {
            job: &job,
            vocab_size: target.link.vocab_size,
            version,
            checksum,
        };
        check_group(&expected, &reply).map_err(|rejection| JobError::Rejected {
            rejection,
            version: Some(version),
        })?;
        Ok(RolloutResult {
            group: reply.group,
            weights_checksum: reply.weights_checksum,
            busy: seconds(reply.busy_seconds),
        })
    }

    /// Sends `job` to a remote reward worker; false if it is gone (nothing was sent).
    pub fn score(&self, worker: WorkerId, job: RewardJob) -> bool {
        let Some(target) = self.target(worker) else {
            return false;
        };
        let runtime = target.link.runtime.clone();
        runtime.spawn(async move {
            let job_id = job.job_id;
            let n = job.items.len();
            let started = Instant::now();
            let event = match run_score(&target, job).await {
                Ok(reply) => match check_scores(n, &reply.outputs) {
                    Ok(()) => Event::Reward {
                        worker,
                        job_id,
                        result: Ok(reply.outputs),
                        busy: seconds(reply.busy_seconds),
                    },
                    Err(rejection) => Event::Rejected {
                        worker,
                        job_id,
                        reason: rejection.to_string(),
                    },
                },
                Err(e) => Event::Reward {
                    worker,
                    job_id,
                    result: Err(format!("{}: {e}", target.name)),
                    busy: started.elapsed(),
                },
            };
            let _ = target.link.events.send(event);
        });
        true
    }

    /// Tells every connected worker that the run is over and waits (briefly) for each to agree.
    pub async fn finish_all(&self) {
        let actors: Vec<(String, ActorRef<WorkerMsg>)> = self
            .lock()
            .entries
            .iter()
            .filter(|e| e.connected)
            .map(|e| (e.name.clone(), e.actor.clone()))
            .collect();
        for (name, actor) in actors {
            if let Err(e) = finish(&actor, None).await {
                tracing::warn!("remote worker {name} did not acknowledge the end of the run: {e}");
            }
        }
    }
}

/// Where a remote job goes.
struct Target {
    actor: ActorRef<WorkerMsg>,
    name: String,
    loaded: Option<(u64, u64)>,
    link: Link,
}

async fn run_score(target: &Target, job: RewardJob) -> Result<ScoreReply, String> {
    let payload = encode(&ScoreRequest {
        job_id: job.job_id,
        items: job.items,
    })
    .map_err(|e| e.to_string())?;
    let bytes = rpc(&target.actor, |port| WorkerMsg::Score(payload, port), None).await?;
    let reply: Reply<ScoreReply> = decode("score reply", &bytes).map_err(|e| e.to_string())?;
    reply
}

/// Why a remote job produced no result: it failed (an error, a lost connection: the job's
/// fault or no one's), or its result failed the coordinator's checks (the worker's fault).
enum JobError {
    Failed(String),
    /// With the policy version of the weights the worker was sent for the job, when known.
    Rejected {
        rejection: Rejection,
        version: Option<u64>,
    },
}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

impl From<&str> for JobError {
    fn from(message: &str) -> Self {
        Self::Failed(message.to_string())
    }
}

/// A duration from a peer's seconds (negative, NaN or huge values become zero).
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or_default()
}

/// One RPC to a worker; the error says why no reply came.
pub(super) async fn rpc(
    actor: &ActorRef<WorkerMsg>,
    build: impl FnOnce(RpcReplyPort<Vec<u8>>) -> WorkerMsg,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, String> {
    match actor.call(build, timeout).await {
        Ok(CallResult::Success(bytes)) => Ok(bytes),
        Ok(CallResult::Timeout) => Err(format!(
            "no reply within {} ms",
            timeout.unwrap_or_default().as_millis()
        )),
        // The reply port was dropped: the connection (and the worker's shim actor) is gone.
        Ok(CallResult::SenderError) | Err(_) => Err("the worker disconnected".into()),
    }
}

/// Sends `snapshot` to a worker in chunks; the last one makes it verify and load the version.
async fn push_weights(
    actor: &ActorRef<WorkerMsg>,
    snapshot: &WeightsSnapshot,
    chunk_bytes: usize,
) -> Result<(), String> {
    let bytes = snapshot.bytes.as_slice();
    let total_bytes = bytes.len() as u64;
    let mut offset = 0;
    // An empty buffer still needs one (empty) chunk to be loaded.
    loop {
        let end = (offset + chunk_bytes.max(1)).min(bytes.len());
        let header = encode(&WeightsChunk {
            version: snapshot.version,
            checksum: snapshot.checksum,
            total_bytes,
            offset: offset as u64,
        })
        .map_err(|e| e.to_string())?;
        let chunk = bytes[offset..end].to_vec();
        let reply = rpc(
            actor,
            |port| WorkerMsg::LoadWeights(header, chunk, port),
            None,
        )
        .await?;
        let reply: Reply<()> = decode("weights reply", &reply).map_err(|e| e.to_string())?;
        reply?;
        offset = end;
        if offset >= bytes.len() {
            return Ok(());
        }
    }
}

/// Ends a worker's run; `refusal` makes it exit with that error instead of success.
pub(super) async fn finish(
    actor: &ActorRef<WorkerMsg>,
    refusal: Option<String>,
) -> Result<(), String> {
    let payload = encode(&refusal).map_err(|e| e.to_string())?;
    rpc(
        actor,
        |port| WorkerMsg::Finish(payload, port),
        Some(FINISH_TIMEOUT),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrl::generation::SamplingParams;

    fn job(n: usize) -> RolloutJob {
        RolloutJob {
            job_id: 1,
            prompt_ids: vec![1, 2],
            params: SamplingParams {
                n,
                ..SamplingParams::default()
            },
        }
    }

    #[test]
    fn peer_durations_never_panic() {
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(seconds(f64::INFINITY), Duration::ZERO);
        assert_eq!(seconds(0.5), Duration::from_millis(500));
    }

    #[test]
    fn without_a_cluster_nothing_is_sent() {
        let workers = RemoteWorkers::none();
        let worker = WorkerId::remote(Role::Rollout, 0);
        assert!(!workers.generate(worker, job(1)));
        assert!(!workers.is_connected(worker));
        assert_eq!(workers.name(worker), None);
        assert_eq!(workers.wait_for().0, 0);
    }
}
