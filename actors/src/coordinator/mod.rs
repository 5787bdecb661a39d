//! The coordinator: the run's one loop. It owns the prompt stream and the steps in flight, hands
//! one job at a time to each idle worker, collects results, enforces deadlines, re-issues lost
//! work, feeds complete steps to the learner, and logs what it measured. Split by job:
//!
//! - [`jobs`]: job bookkeeping (dispatch to idle workers, results, deadlines, re-issue);
//! - [`step`]: steps (opening them, accepting groups and scores, assembling the learner's batch,
//!   finishing a trained step);
//! - [`telemetry`]: per-step metrics, step records and sample text;
//! - [`checkpoint`]: checkpoint requests and the final checkpoint;
//! - [`workers`]: one facade over local pools and remote workers, where everything that depends
//!   on where a worker runs is decided.
//!
//! Invariants it keeps (the fault tests check them):
//! - every prompt of a step is trained exactly once: a slot's group is stored once, a re-issued
//!   job gets a new job id and results of superseded jobs are ignored;
//! - a completion whose scoring fails `max_attempts` times alone is scored 0, its reason kept;
//! - a step is opened (its prompts drawn and dispatched) only when its groups may be sampled by
//!   the current weights: step s needs policy version ≥ s − 1 − max_policy_lag.

mod checkpoint;
mod jobs;
mod step;
mod telemetry;
#[cfg(test)]
mod test_support;
mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use crossbeam::channel::Receiver;
use mathrl::data::QaRecord;
use mathrl::Metrics;
use mathrl_learners::{CheckpointConfig, RunIdentity};

use crate::cluster::RemoteWorkers;
use crate::config::TrainerConfig;
use crate::event::{Event, WorkerId};
use crate::learner::{LearnerEvent, LearnerThread};
use crate::progress::{PolicyWatch, StepObserver};
use crate::prompt::PromptStream;
use crate::report::RunTally;
use crate::reward::RewardMsg;
use crate::rollout::RolloutMsg;
use crate::stop::StopHandle;
use crate::supervision::Slots;
use crate::weights::WeightsBoard;
use crate::{Error, Result};

use jobs::InFlight;
use step::OpenStep;
use telemetry::Window;
use workers::Workers;

/// A prompt ready for generation.
pub struct EncodedPrompt {
    /// The record.
    pub record: QaRecord,
    /// The chat-formatted prompt's token ids.
    pub ids: Vec<u32>,
}

/// Everything the coordinator drives.
pub struct Wiring {
    /// Rollout actors by pool index.
    pub rollout: Slots<RolloutMsg>,
    /// Reward actors by pool index.
    pub reward: Slots<RewardMsg>,
    /// Results and lifecycle events of the workers.
    pub events: Receiver<Event>,
    /// The learner thread.
    pub learner: LearnerThread,
    /// Its reports.
    pub learner_events: Receiver<LearnerEvent>,
    /// Where published weights go.
    pub board: WeightsBoard,
    /// Workers in other processes ([`RemoteWorkers::none`] without a cluster).
    pub remote: RemoteWorkers,
}

/// The coordinator's state.
pub struct Coordinator<'a> {
    config: &'a TrainerConfig,
    prompts: &'a [EncodedPrompt],
    stream: PromptStream,
    metrics: Metrics,
    stop: StopHandle,
    checkpoints: Option<CheckpointConfig>,
    workers: Workers,
    events: Receiver<Event>,
    learner: LearnerThread,
    learner_events: Receiver<LearnerEvent>,
    board: WeightsBoard,
    /// Learner steps done: the policy version of the latest published weights.
    trained: u64,
    next_open: u64,
    open: BTreeMap<u64, OpenStep>,
    rollout_queue: VecDeque<(u64, usize)>,
    reward_queue: VecDeque<(u64, usize, Vec<usize>)>,
    in_flight: HashMap<u64, InFlight>,
    busy: HashMap<WorkerId, u64>,
    alive: BTreeSet<WorkerId>,
    next_job: u64,
    learner_busy: bool,
    checksums: BTreeMap<u64, u64>,
    window: Window,
    window_start: Instant,
    report: RunTally,
    started: Instant,
    /// Whether the remote workers the run waits for have joined (or none are awaited).
    workers_joined: bool,
    /// The learner's message once training diverged ([`Ending::Diverged`]).
    diverged: Option<String>,
    /// The run's seed, data and settings, recorded in each checkpoint.
    identity: Option<RunIdentity>,
    /// Told of every trained step.
    observer: Option<StepObserver>,
    /// Shown the published policy every few steps, with what turns a published version into a
    /// policy when it has no local copy (only bytes for remote workers).
    policy_watch: Option<(PolicyWatch, ModelShape)>,
    /// Results of each remote worker that failed the coordinator's checks.
    rejections: HashMap<WorkerId, usize>,
    /// Workers whose result for a step's slot was rejected (the slot goes to others first).
    rejected_by: HashMap<(u64, usize), BTreeSet<WorkerId>>,
    /// Whether completions may call a tool: steps then log the tool metrics.
    tool_metrics: bool,
}

/// The architecture, device and dtype of the learner's policy: what a published version needs
/// besides its bytes to become a policy again.
#[derive(Debug, Clone)]
pub struct ModelShape {
    /// The architecture.
    pub config: mathrl::model::Qwen2Config,
    /// Where the rebuilt policy lives.
    pub device: candle_core::Device,
    /// Its dtype.
    pub dtype: candle_core::DType,
}

/// How the loop ended.
pub enum Ending {
    /// `max_steps` reached, or a stop request honoured after a step.
    Finished,
    /// A second stop request: abandoned at once.
    Abandoned,
    /// Too many updates in a row were skipped: ended after a checkpoint, with the learner's
    /// message.
    Diverged(String),
}

impl<'a> Coordinator<'a> {
    /// A coordinator starting after `trained` learner steps, with the stream at its cursor.
    #[allow(clippy::too_many_arguments)] // the run's parts; grouping them would only rename them
    pub fn new(
        config: &'a TrainerConfig,
        prompts: &'a [EncodedPrompt],
        stream: PromptStream,
        metrics: Metrics,
        stop: StopHandle,
        checkpoints: Option<CheckpointConfig>,
        wiring: Wiring,
        trained: u64,
        initial_checksum: u64,
    ) -> Self {
        Self {
            config,
            prompts,
            stream,
            metrics,
            stop,
            checkpoints,
            workers: Workers::new(
                wiring.rollout,
                wiring.reward,
                wiring.remote,
                (config.rollout_actors, config.reward_actors),
            ),
            events: wiring.events,
            learner: wiring.learner,
            learner_events: wiring.learner_events,
            board: wiring.board,
            trained,
            next_open: trained + 1,
            open: BTreeMap::new(),
            rollout_queue: VecDeque::new(),
            reward_queue: VecDeque::new(),
            in_flight: HashMap::new(),
            busy: HashMap::new(),
            alive: BTreeSet::new(),
            next_job: 0,
            learner_busy: false,
            checksums: BTreeMap::from([(trained, initial_checksum)]),
            window: Window::default(),
            window_start: Instant::now(),
            report: RunTally {
                resumed_from_step: trained,
                ..RunTally::default()
            },
            started: Instant::now(),
            workers_joined: false,
            diverged: None,
            identity: None,
            observer: None,
            policy_watch: None,
            rejections: HashMap::new(),
            rejected_by: HashMap::new(),
            tool_metrics: false,
        }
    }

    /// Tells `observer` of every trained step.
    pub fn with_observer(mut self, observer: Option<StepObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Logs the tool metrics of each step (a run whose completions may call a tool).
    pub fn with_tool_metrics(mut self, on: bool) -> Self {
        self.tool_metrics = on;
        self
    }

    /// Shows `watch`'s observer the published policy after its steps; `shape` rebuilds a
    /// policy from a version published only as bytes.
    pub fn with_policy_watch(mut self, watch: Option<PolicyWatch>, shape: ModelShape) -> Self {
        self.policy_watch = watch.map(|w| (w, shape));
        self
    }

    /// Records `identity` in the run's checkpoints (checked when the run resumes).
    pub fn with_identity(mut self, identity: RunIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Runs until `max_steps` or a stop request; returns the learner thread and the report.
    pub fn run(mut self) -> Result<(Ending, LearnerThread, RunTally)> {
        let ending = match self.run_loop() {
            Ok(ending) => ending,
            Err(e) => {
                // Let the learner thread go; its learner is of no use after a failed run.
                drop(self.learner.finish());
                return Err(e);
            }
        };
        self.report.steps = self.trained;
        Ok((ending, self.learner, self.report))
    }

    fn run_loop(&mut self) -> Result<Ending> {
        // The weights training starts from (the resumed ones on a resume), before any job.
        let initial = self.board.latest();
        self.show_policy(self.trained, &initial)?;
        // The step to finish after a first stop request.
        let mut stop_after: Option<u64> = None;
        loop {
            if self.stop.requests() >= 2 {
                return Ok(Ending::Abandoned);
            }
            if stop_after.is_none() && self.out_of_time() {
                // Finish the step whose prompts are out (its samples are paid for), start none.
                let last = if self.next_open > self.trained + 1 {
                    self.trained + 1
                } else {
                    self.trained
                };
                stop_after = Some(last);
                self.report.time_limit_reached = true;
                tracing::info!("max_train_seconds reached: finishing step {last}");
            }
            if let Some(message) = self.diverged.clone() {
                // The learner is idle (its step was just reported): checkpoint what it has, so
                // that a run resumed with a lower learning rate loses nothing, and end.
                return match self.finish_with_checkpoint()? {
                    Ending::Finished => Ok(Ending::Diverged(message)),
                    other => Ok(other),
                };
            }
            if self.stop.requests() == 1 && stop_after.is_none() {
                stop_after = Some(self.trained + 1);
                self.report.stopped_early = true;
                tracing::warn!("stop requested: finishing step {}", self.trained + 1);
            }
            let done = self.trained >= self.config.max_steps
                || stop_after.is_some_and(|last| self.trained >= last);
            if done {
                return self.finish_with_checkpoint();
            }
            // After a stop request, only the step being finished may still be opened (a
            // request before the first step still runs that step).
            if !self.awaiting_workers()? {
                self.open_steps(stop_after.unwrap_or(self.config.max_steps));
            }
            self.dispatch();
            self.feed_learner()?;
            self.wait_and_handle()?;
            self.enforce_deadlines()?;
        }
    }

    /// Before the first step: whether the remote workers the run waits for are still missing
    /// (an error once the join timeout has passed). Training time starts when they are in.
    fn awaiting_workers(&mut self) -> Result<bool> {
        if self.workers_joined {
            return Ok(false);
        }
        let (ready, wanted, timeout) = self.workers.awaited();
        if ready >= wanted {
            self.workers_joined = true;
            if wanted > 0 {
                tracing::info!("{ready} remote workers joined; training starts");
                self.started = Instant::now();
                self.window_start = self.started;
            }
            return Ok(false);
        }
        if self.started.elapsed() >= timeout {
            return Err(Error::Runtime(format!(
                "only {ready} of the {wanted} remote workers the run waits for joined within {} s",
                timeout.as_secs()
            )));
        }
        Ok(true)
    }

    /// Whether `max_train_seconds` has passed since the run started.
    fn out_of_time(&self) -> bool {
        let limit = self.config.max_train_seconds;
        limit > 0.0 && self.started.elapsed().as_secs_f64() >= limit
    }
}
