//! The coordinator: the run's one loop. It owns the prompt stream and the steps in flight, hands
//! one job at a time to each idle worker, collects results, enforces deadlines, re-issues lost
//! work, feeds complete steps to the learner, and logs what it measured.
//!
//! Invariants it keeps (the fault tests check them):
//! - every prompt of a step is trained exactly once: a slot's group is stored once, a re-issued
//!   job gets a new job id and results of superseded jobs are ignored;
//! - a completion whose scoring fails `max_attempts` times alone is scored 0, its reason kept;
//! - a step is opened (its prompts drawn and dispatched) only when its groups may be sampled by
//!   the current weights: step s needs version ≥ s − 1 − max_policy_lag.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crossbeam::channel::Receiver;
use mathrl::types::Group;
use mathrl::Metrics;
use mathrl_learners::{
    policy_lag, CheckpointConfig, DataCursor, RolloutBatch, RunState, ScoredGroup,
};
use mathrl_rewards::RewardOutput;

use crate::cluster::RemoteWorkers;
use crate::config::TrainerConfig;
use crate::event::{Event, Place, Role, WorkerId};
use crate::learner::{LearnerEvent, LearnerMsg, LearnerThread};
use crate::prompt::{PromptRecord, PromptStream};
use crate::report::{GroupRecord, RunTally, StepRecord, UnscoredCompletion};
use crate::reward::{RewardItem, RewardJob, RewardMsg};
use crate::rollout::{RolloutJob, RolloutMsg};
use crate::stop::StopHandle;
use crate::supervision::Slots;
use crate::weights::WeightsBoard;
use crate::{Error, Result};

/// A prompt ready for generation.
pub struct EncodedPrompt {
    /// The record.
    pub record: PromptRecord,
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

/// A job handed to a worker.
#[derive(Debug, Clone)]
enum Work {
    Rollout {
        step: u64,
        slot: usize,
    },
    Reward {
        step: u64,
        slot: usize,
        completions: Vec<usize>,
    },
}

struct InFlight {
    work: Work,
    worker: WorkerId,
    deadline: Instant,
}

/// A step whose groups are being generated and scored.
struct OpenStep {
    prompts: Vec<usize>,
    groups: Vec<Option<Group>>,
    generated_by: Vec<Option<WorkerId>>,
    outputs: Vec<Vec<Option<RewardOutput>>>,
    reward_attempts: Vec<Vec<usize>>,
    rollout_attempts: Vec<usize>,
    cursor_before: DataCursor,
    opened_at: Instant,
    generated_at: Option<Instant>,
    sampled_tokens: usize,
    checksum_matches: usize,
    unscored: Vec<UnscoredCompletion>,
}

impl OpenStep {
    fn is_scored(&self) -> bool {
        self.outputs
            .iter()
            .all(|g| !g.is_empty() && g.iter().all(Option::is_some))
    }
}

/// Counters since the last step was logged, for per-step utilisation figures.
#[derive(Default)]
struct Window {
    rollout_busy: Duration,
    reward_busy: Duration,
    max_rollout_queue: usize,
    max_reward_queue: usize,
}

/// The coordinator's state.
pub struct Coordinator<'a> {
    config: &'a TrainerConfig,
    prompts: &'a [EncodedPrompt],
    stream: PromptStream,
    metrics: Metrics,
    stop: StopHandle,
    checkpoints: Option<CheckpointConfig>,
    wiring: Wiring,
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
}

/// How the loop ended.
pub enum Ending {
    /// `max_steps` reached, or a stop request honoured after a step.
    Finished,
    /// A second stop request: abandoned at once.
    Abandoned,
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
            wiring,
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
        }
    }

    /// Runs until `max_steps` or a stop request; returns the learner thread and the report.
    pub fn run(mut self) -> Result<(Ending, LearnerThread, RunTally)> {
        let ending = self.run_loop();
        let ending = match ending {
            Ok(e) => e,
            Err(e) => {
                // Let the learner thread go; its learner is of no use after a failed run.
                drop(self.wiring.learner.finish());
                return Err(e);
            }
        };
        self.report.steps = self.trained;
        Ok((ending, self.wiring.learner, self.report))
    }

    fn run_loop(&mut self) -> Result<Ending> {
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
            self.dispatch()?;
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
        let (wanted, timeout) = self.wiring.remote.wait_for();
        let ready = self.wiring.remote.ready_now();
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

    /// The name a worker is reported by: `rollout-0` for a local actor, its own name for a
    /// remote worker.
    fn label(&self, worker: WorkerId) -> String {
        match worker.place {
            Place::Local => worker.to_string(),
            Place::Remote => self
                .wiring
                .remote
                .name(worker)
                .unwrap_or_else(|| worker.to_string()),
        }
    }

    /// Rollout (or reward) workers that can share the load: the local pool and every remote
    /// worker that joined.
    fn pool_size(&self, role: Role) -> usize {
        let local = match role {
            Role::Rollout => self.config.rollout_actors,
            Role::Reward => self.config.reward_actors,
        };
        (local + self.wiring.remote.joined(role)).max(1)
    }

    /// Whether `max_train_seconds` has passed since the run started.
    fn out_of_time(&self) -> bool {
        let limit = self.config.max_train_seconds;
        limit > 0.0 && self.started.elapsed().as_secs_f64() >= limit
    }

    /// Opens the steps up to `last` that the current weights may sample.
    fn open_steps(&mut self, last: u64) {
        let lag = self.config.sync.max_policy_lag();
        while self.next_open <= last.min(self.config.max_steps)
            && self.next_open <= self.trained + 1 + lag
        {
            let step = self.next_open;
            let cursor_before = self.stream.cursor();
            let prompts = self.stream.take(self.config.prompts_per_step);
            let n = prompts.len();
            self.open.insert(
                step,
                OpenStep {
                    prompts,
                    groups: vec![None; n],
                    generated_by: vec![None; n],
                    outputs: vec![Vec::new(); n],
                    reward_attempts: vec![Vec::new(); n],
                    rollout_attempts: vec![0; n],
                    cursor_before,
                    opened_at: Instant::now(),
                    generated_at: None,
                    sampled_tokens: 0,
                    checksum_matches: 0,
                    unscored: Vec::new(),
                },
            );
            self.rollout_queue.extend((0..n).map(|slot| (step, slot)));
            self.next_open += 1;
        }
    }

    fn idle(&self, role: Role) -> Vec<WorkerId> {
        self.alive
            .iter()
            .filter(|w| w.role == role && !self.busy.contains_key(w))
            .copied()
            .collect()
    }

    fn dispatch(&mut self) -> Result<()> {
        self.window.max_rollout_queue = self.window.max_rollout_queue.max(self.rollout_queue.len());
        self.window.max_reward_queue = self.window.max_reward_queue.max(self.reward_queue.len());
        for worker in self.idle(Role::Rollout) {
            let Some((step, slot)) = self.rollout_queue.pop_front() else {
                break;
            };
            let job_id = self.job_id();
            let prompt = &self.prompts[self.open[&step].prompts[slot]];
            let mut params = self.config.sampling.clone();
            params.n = self.config.group_size;
            params.seed = sampling_seed(self.config.seed, step, slot);
            let job = RolloutJob {
                job_id,
                prompt_ids: prompt.ids.clone(),
                params,
            };
            let sent = match worker.place {
                Place::Local => self
                    .wiring
                    .rollout
                    .get(worker.index)
                    .map(|actor| actor.cast(RolloutMsg::Generate(job)).is_ok())
                    .unwrap_or(false),
                Place::Remote => self.wiring.remote.generate(worker, job),
            };
            if sent {
                self.start(
                    job_id,
                    worker,
                    Work::Rollout { step, slot },
                    self.config.rollout_deadline,
                );
            } else {
                self.alive.remove(&worker);
                self.rollout_queue.push_front((step, slot));
            }
        }
        for worker in self.idle(Role::Reward) {
            let Some((step, slot, completions)) = self.reward_queue.pop_front() else {
                break;
            };
            let job_id = self.job_id();
            let open = &self.open[&step];
            let record = &self.prompts[open.prompts[slot]].record;
            let group = open.groups[slot]
                .as_ref()
                .expect("scored groups were generated");
            let items = completions
                .iter()
                .map(|&c| RewardItem {
                    question: record.question.clone(),
                    response: group.completions[c].text.clone().unwrap_or_default(),
                    gold: record.gold.clone(),
                    dataset: record.dataset.clone(),
                })
                .collect();
            let job = RewardJob { job_id, items };
            let sent = match worker.place {
                Place::Local => self
                    .wiring
                    .reward
                    .get(worker.index)
                    .map(|actor| actor.cast(RewardMsg::Score(job)).is_ok())
                    .unwrap_or(false),
                Place::Remote => self.wiring.remote.score(worker, job),
            };
            let work = Work::Reward {
                step,
                slot,
                completions,
            };
            if sent {
                self.start(job_id, worker, work, self.config.message_deadline);
            } else if let Work::Reward { completions, .. } = work {
                self.alive.remove(&worker);
                self.reward_queue.push_front((step, slot, completions));
            }
        }
        Ok(())
    }

    fn job_id(&mut self) -> u64 {
        self.next_job += 1;
        self.next_job
    }

    fn start(&mut self, job_id: u64, worker: WorkerId, work: Work, deadline: Duration) {
        self.busy.insert(worker, job_id);
        self.in_flight.insert(
            job_id,
            InFlight {
                work,
                worker,
                deadline: Instant::now() + deadline,
            },
        );
    }

    /// Takes a finished job off the books; `None` for a superseded one (its worker was declared
    /// lost and the job re-issued), whose result is ignored.
    fn finish_job(&mut self, job_id: u64, worker: WorkerId) -> Option<Work> {
        let flight = self.in_flight.remove(&job_id)?;
        if self.busy.get(&worker) == Some(&job_id) {
            self.busy.remove(&worker);
        }
        Some(flight.work)
    }

    fn wait_and_handle(&mut self) -> Result<()> {
        let nearest = self
            .in_flight
            .values()
            .map(|f| f.deadline)
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        crossbeam::select! {
            recv(self.wiring.events) -> event => {
                let event = event.map_err(|_| Error::Runtime("every worker pool stopped".into()))?;
                self.handle(event)?;
            }
            recv(self.wiring.learner_events) -> event => {
                let event = event.map_err(|_| Error::Runtime("the learner thread stopped".into()))?;
                self.handle_learner(event)?;
            }
            default(nearest) => {}
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::WorkerUp { worker } => {
                self.alive.insert(worker);
            }
            Event::WorkerDown { worker, reason } => {
                // A remote worker is not restarted from here: it is gone until it joins again.
                match worker.place {
                    Place::Local => self.report.restarts += 1,
                    Place::Remote => self.report.disconnects += 1,
                }
                self.alive.remove(&worker);
                if let Some(job_id) = self.busy.remove(&worker) {
                    if let Some(flight) = self.in_flight.remove(&job_id) {
                        self.failed(flight.work, format!("{worker} {reason}"))?;
                    }
                }
            }
            Event::Rollout {
                worker,
                job_id,
                result,
            } => {
                let Some(Work::Rollout { step, slot }) = self.finish_job(job_id, worker) else {
                    self.readmit(worker);
                    return Ok(());
                };
                match result {
                    Ok(r) => {
                        self.window.rollout_busy += r.busy;
                        self.accept_group(step, slot, worker, r.group, r.weights_checksum);
                    }
                    Err(reason) => {
                        self.failed(Work::Rollout { step, slot }, format!("{worker}: {reason}"))?
                    }
                }
            }
            Event::Reward {
                worker,
                job_id,
                result,
                busy,
            } => {
                let Some(work) = self.finish_job(job_id, worker) else {
                    self.readmit(worker);
                    return Ok(());
                };
                self.window.reward_busy += busy;
                match result {
                    Ok(outputs) => {
                        if let Work::Reward {
                            step,
                            slot,
                            completions,
                        } = &work
                        {
                            let open = self.open.get_mut(step).expect("a step in flight is open");
                            for (&c, output) in completions.iter().zip(outputs) {
                                open.outputs[*slot][c] = Some(output);
                            }
                        }
                    }
                    Err(reason) => self.failed(work, format!("{worker}: {reason}"))?,
                }
            }
        }
        Ok(())
    }

    /// A remote worker benched after missing a deadline (its process cannot be restarted from
    /// here) takes work again once its late answer, now ignored, shows it is free.
    fn readmit(&mut self, worker: WorkerId) {
        if worker.place == Place::Remote
            && !self.busy.contains_key(&worker)
            && self.wiring.remote.is_connected(worker)
        {
            self.alive.insert(worker);
        }
    }

    fn accept_group(
        &mut self,
        step: u64,
        slot: usize,
        worker: WorkerId,
        group: Group,
        checksum: u64,
    ) {
        // Step s starts from policy version s − 1; its groups may lag it by `max_policy_lag`.
        if policy_lag(&group, step - 1) > self.config.sync.max_policy_lag() {
            self.report.dropped_stale_groups += 1;
            self.rollout_queue.push_front((step, slot));
            return;
        }
        let matches = self.checksums.get(&group.policy_version) == Some(&checksum);
        let open = self.open.get_mut(&step).expect("a step in flight is open");
        open.checksum_matches += usize::from(matches);
        open.sampled_tokens += group
            .completions
            .iter()
            .map(|c| c.num_sampled_tokens())
            .sum::<usize>();
        let n = group.completions.len();
        open.outputs[slot] = vec![None; n];
        open.reward_attempts[slot] = vec![0; n];
        open.groups[slot] = Some(group);
        open.generated_by[slot] = Some(worker);
        if open.groups.iter().all(Option::is_some) {
            open.generated_at = Some(Instant::now());
        }
        let label = self.label(worker);
        *self.report.groups_by_worker.entry(label).or_default() += 1;
        self.reward_queue.push_back((step, slot, (0..n).collect()));
    }

    /// A job failed (error, panic, deadline, disconnect): re-issue it or give up on it.
    fn failed(&mut self, work: Work, reason: String) -> Result<()> {
        self.report.failures += 1;
        tracing::warn!("{work:?} failed: {reason}");
        let max_attempts = self.config.max_attempts;
        match work {
            Work::Rollout { step, slot } => {
                let open = self.open.get_mut(&step).expect("a step in flight is open");
                open.rollout_attempts[slot] += 1;
                if open.rollout_attempts[slot] >= max_attempts {
                    return Err(Error::RolloutFailed {
                        step,
                        prompt_id: self.prompts[open.prompts[slot]].record.id.clone(),
                        attempts: open.rollout_attempts[slot],
                        reason,
                    });
                }
                self.rollout_queue.push_front((step, slot));
            }
            // A failed batch does not say which completion is at fault: retry each alone, so one
            // bad input cannot sink its neighbours; only failures alone count as attempts.
            Work::Reward {
                step,
                slot,
                completions,
            } if completions.len() > 1 => {
                for c in completions.into_iter().rev() {
                    self.reward_queue.push_front((step, slot, vec![c]));
                }
            }
            Work::Reward {
                step,
                slot,
                completions,
            } => {
                let open = self.open.get_mut(&step).expect("a step in flight is open");
                let c = completions[0];
                open.reward_attempts[slot][c] += 1;
                if open.reward_attempts[slot][c] >= max_attempts {
                    open.outputs[slot][c] = Some(RewardOutput {
                        reward: 0.0,
                        verdict: None,
                        rm_score: None,
                    });
                    let prompt_id = self.prompts[open.prompts[slot]].record.id.clone();
                    self.metrics.text(
                        "faults/unscored",
                        step,
                        &format!("prompt {prompt_id}, completion {c}: {reason}"),
                    );
                    open.unscored.push(UnscoredCompletion {
                        step,
                        prompt_id,
                        completion: c,
                        attempts: open.reward_attempts[slot][c],
                        reason,
                    });
                } else {
                    self.reward_queue.push_front((step, slot, vec![c]));
                }
            }
        }
        Ok(())
    }

    fn enforce_deadlines(&mut self) -> Result<()> {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for job_id in overdue {
            let flight = self.in_flight.remove(&job_id).expect("listed just above");
            self.busy.remove(&flight.worker);
            // A local worker is killed (its supervisor restarts it and says so with WorkerUp);
            // a remote one is benched until its late answer comes (see `readmit`). A result
            // either still sends carries a job id that is no longer in flight.
            self.alive.remove(&flight.worker);
            match (flight.worker.place, flight.worker.role) {
                (Place::Remote, _) => {}
                (Place::Local, Role::Rollout) => {
                    if let Some(a) = self.wiring.rollout.get(flight.worker.index) {
                        a.kill();
                    }
                }
                (Place::Local, Role::Reward) => {
                    if let Some(a) = self.wiring.reward.get(flight.worker.index) {
                        a.kill();
                    }
                }
            }
            let deadline = match flight.work {
                Work::Rollout { .. } => self.config.rollout_deadline,
                Work::Reward { .. } => self.config.message_deadline,
            };
            let reason = format!(
                "{} exceeded its deadline of {} ms",
                flight.worker,
                deadline.as_millis()
            );
            self.failed(flight.work, reason)?;
        }
        Ok(())
    }

    fn feed_learner(&mut self) -> Result<()> {
        let step = self.trained + 1;
        if self.learner_busy || !self.open.get(&step).is_some_and(OpenStep::is_scored) {
            return Ok(());
        }
        let open = &self.open[&step];
        let groups = open
            .groups
            .iter()
            .zip(&open.outputs)
            .map(|(group, outputs)| {
                let outputs: Vec<&RewardOutput> = outputs
                    .iter()
                    .map(|o| o.as_ref().expect("scored"))
                    .collect();
                let verdicts: Option<Vec<bool>> = outputs
                    .iter()
                    .map(|o| o.verdict.as_ref().map(|v| v.is_correct()))
                    .collect();
                ScoredGroup {
                    group: group.clone().expect("generated"),
                    rewards: outputs.iter().map(|o| o.reward).collect(),
                    verdicts,
                }
            })
            .collect();
        self.wiring
            .learner
            .send(LearnerMsg::Train(RolloutBatch { groups }))?;
        self.learner_busy = true;
        self.metrics.scalars(
            step,
            &[
                (
                    "queue/rollout_depth_max",
                    self.window.max_rollout_queue as f64,
                ),
                (
                    "queue/reward_depth_max",
                    self.window.max_reward_queue as f64,
                ),
                ("queue/open_steps", self.open.len() as f64),
            ],
        );
        Ok(())
    }

    fn handle_learner(&mut self, event: LearnerEvent) -> Result<()> {
        match event {
            LearnerEvent::Failed(message) => Err(Error::Runtime(format!("learner: {message}"))),
            LearnerEvent::Checkpointed(dir) => {
                self.report.checkpoints.push(dir);
                Ok(())
            }
            LearnerEvent::Stepped {
                report,
                snapshot,
                elapsed,
            } => {
                self.learner_busy = false;
                let step = self.trained + 1;
                self.trained = step;
                let open = self.open.remove(&step).expect("the trained step was open");
                self.checksums.insert(snapshot.version, snapshot.checksum);
                // Keep the checksums a group could still be stamped with.
                let oldest = step.saturating_sub(self.config.sync.max_policy_lag() + 1);
                self.checksums.retain(|&v, _| v >= oldest);
                self.wiring.board.publish(snapshot);
                self.log_step(step, &open, elapsed);
                self.record_step(step, open, *report);
                if self.checkpoints.as_ref().is_some_and(|c| c.due(step)) {
                    self.request_checkpoint()?;
                }
                Ok(())
            }
        }
    }

    fn log_step(&mut self, step: u64, open: &OpenStep, learner_time: Duration) {
        let now = Instant::now();
        let wall = now
            .duration_since(self.window_start)
            .as_secs_f64()
            .max(1e-9);
        let rollout_wall = open
            .generated_at
            .unwrap_or(now)
            .duration_since(open.opened_at)
            .as_secs_f64()
            .max(1e-9);
        let groups: Vec<&Group> = open.groups.iter().flatten().collect();
        let lags: Vec<f64> = groups
            .iter()
            .map(|g| policy_lag(g, step - 1) as f64)
            .collect();
        let n = groups.len().max(1) as f64;
        let window = std::mem::take(&mut self.window);
        self.metrics.scalars(
            step,
            &[
                (
                    "rollout/tokens_per_second",
                    open.sampled_tokens as f64 / rollout_wall,
                ),
                ("rollout/sampled_tokens", open.sampled_tokens as f64),
                (
                    "rollout/busy_fraction",
                    window.rollout_busy.as_secs_f64()
                        / (wall * self.pool_size(Role::Rollout) as f64),
                ),
                (
                    "reward/busy_fraction",
                    window.reward_busy.as_secs_f64() / (wall * self.pool_size(Role::Reward) as f64),
                ),
                ("policy/lag_mean", lags.iter().sum::<f64>() / n),
                ("policy/lag_max", lags.iter().cloned().fold(0.0, f64::max)),
                ("weights/checksum_match", open.checksum_matches as f64 / n),
                ("faults/failures", self.report.failures as f64),
                ("faults/restarts", self.report.restarts as f64),
                (
                    "faults/unscored",
                    (self.report.unscored_total() + open.unscored.len()) as f64,
                ),
                (
                    "faults/dropped_stale_groups",
                    self.report.dropped_stale_groups as f64,
                ),
                ("time/learner_seconds", learner_time.as_secs_f64()),
                ("time/step_seconds", wall),
            ],
        );
        self.window_start = now;
        self.report.rollout_busy_seconds += window.rollout_busy.as_secs_f64();
    }

    fn record_step(&mut self, step: u64, open: OpenStep, learner: mathrl_learners::GrpoStepReport) {
        let every = self.config.sample_text_every;
        if step.checked_rem(every) == Some(0) {
            self.metrics
                .text("samples/completions", step, &self.sample_text(&open));
        }
        let labels: Vec<String> = open
            .generated_by
            .iter()
            .map(|w| w.map(|w| self.label(w)).unwrap_or_default())
            .collect();
        let groups = open
            .groups
            .into_iter()
            .zip(labels)
            .zip(open.outputs)
            .zip(&open.prompts)
            .map(|(((group, worker), outputs), &p)| {
                let group = group.expect("a trained step has every group");
                GroupRecord {
                    prompt_id: self.prompts[p].record.id.clone(),
                    policy_version: group.policy_version,
                    worker,
                    rewards: outputs.iter().flatten().map(|o| o.reward).collect(),
                }
            })
            .collect();
        self.report.step_records.push(StepRecord {
            step,
            groups,
            unscored: open.unscored,
            learner,
        });
    }

    /// Markdown with the first completion of the step's first groups, their rewards and
    /// versions, so a reader of TensorBoard sees what the policy writes as it trains.
    fn sample_text(&self, open: &OpenStep) -> String {
        let mut text = String::new();
        let shown = open
            .groups
            .iter()
            .zip(&open.outputs)
            .zip(&open.prompts)
            .take(self.config.sample_text_completions);
        for ((group, outputs), &p) in shown {
            let (Some(group), Some(Some(output))) = (group, outputs.first()) else {
                continue;
            };
            let record = &self.prompts[p].record;
            let response = group
                .completions
                .first()
                .and_then(|c| c.text.as_deref())
                .unwrap_or_default();
            text.push_str(&format!(
                "**{}** (reward {:.3}, policy version {}, gold {})\n\n    {}\n\n    → {}\n\n",
                record.id,
                output.reward,
                group.policy_version,
                record.gold.as_deref().unwrap_or("-"),
                record.question.replace('\n', "\n    "),
                response.replace('\n', "\n    "),
            ));
        }
        text
    }

    /// The cursor a resumed run starts from: where the first untrained step drew its prompts.
    fn resume_cursor(&self) -> DataCursor {
        self.open
            .values()
            .next()
            .map(|o| o.cursor_before)
            .unwrap_or_else(|| self.stream.cursor())
    }

    fn request_checkpoint(&mut self) -> Result<()> {
        let Some(config) = self.checkpoints.clone() else {
            return Ok(());
        };
        let run = RunState {
            data_cursor: Some(self.resume_cursor()),
            extra: serde_json::json!({ "groups_by_worker": self.report.groups_by_worker }),
            ..RunState::default()
        };
        self.wiring
            .learner
            .send(LearnerMsg::Checkpoint(config, run))
    }

    /// Writes the final checkpoint (unless the last step's was already requested) and waits
    /// for it.
    fn finish_with_checkpoint(&mut self) -> Result<Ending> {
        let Some(config) = self.checkpoints.clone() else {
            return Ok(Ending::Finished);
        };
        if self.trained == self.report.resumed_from_step {
            return Ok(Ending::Finished);
        }
        if !config.due(self.trained) {
            self.request_checkpoint()?;
        }
        let wanted = mathrl_learners::checkpoint::checkpoint_name(self.trained);
        loop {
            if self.report.checkpoints.iter().any(|d| d.ends_with(&wanted)) {
                return Ok(Ending::Finished);
            }
            if self.stop.requests() >= 2 {
                return Ok(Ending::Abandoned);
            }
            crossbeam::select! {
                recv(self.wiring.learner_events) -> event => {
                    let event = event
                        .map_err(|_| Error::Runtime("the learner thread stopped".into()))?;
                    self.handle_learner(event)?;
                }
                default(Duration::from_millis(200)) => {}
            }
        }
    }
}

/// The sampling seed of a step's slot: a re-issued prompt samples the same group.
fn sampling_seed(seed: u64, step: u64, slot: usize) -> u64 {
    let mut x = seed
        ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (slot as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    // splitmix64 finaliser: nearby (step, slot) pairs get unrelated seeds.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncMode;
    use crate::event::RolloutResult;
    use crate::weights::WeightsSnapshot;
    use candle_core::{DType, Device};
    use crossbeam::channel::bounded;
    use mathrl::model::Trainable;
    use mathrl::Policy;
    use mathrl_learners::{GrpoConfig, GrpoLearner};

    const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");

    fn group(policy_version: u64) -> Group {
        Group {
            prompt_index: 0,
            prompt_ids: vec![1, 2],
            completions: Vec::new(),
            policy_version,
        }
    }

    /// In one process a rollout actor always samples with weights recent enough (steps open
    /// only when the lag allows it); a remote worker that missed a sync does not. The guard
    /// is tested here by handing the coordinator groups of chosen versions.
    #[test]
    fn groups_older_than_the_lag_are_dropped_counted_and_regenerated() -> Result<()> {
        let policy = Policy::load(TINY, &Device::Cpu, Some(DType::F32), Trainable::Yes)?;
        let snapshot = WeightsSnapshot::of_policy(&policy, 3)?;
        let checksum = snapshot.checksum;
        let learner = GrpoLearner::new(policy, None, GrpoConfig::default(), Metrics::null())?;
        let config = TrainerConfig {
            sync: SyncMode::Async { max_policy_lag: 1 },
            prompts_per_step: 2,
            ..TrainerConfig::default()
        };
        let prompts: Vec<EncodedPrompt> = ["a", "b"]
            .iter()
            .map(|id| EncodedPrompt {
                record: PromptRecord {
                    id: id.to_string(),
                    question: id.to_string(),
                    gold: None,
                    dataset: None,
                },
                ids: vec![1, 2],
            })
            .collect();
        let (_events_tx, events_rx) = bounded(4);
        let (learner_tx, learner_rx) = bounded(4);
        let wiring = Wiring {
            rollout: Slots::new(1),
            reward: Slots::new(1),
            events: events_rx,
            learner: LearnerThread::spawn(learner, learner_tx)?,
            learner_events: learner_rx,
            board: WeightsBoard::new(snapshot),
            remote: RemoteWorkers::none(),
        };
        // As after 3 learner steps: with lag 1, steps 4 and 5 may be sampled now.
        let mut c = Coordinator::new(
            &config,
            &prompts,
            PromptStream::new(prompts.len(), 0),
            Metrics::null(),
            StopHandle::new(),
            None,
            wiring,
            3,
            checksum,
        );
        c.open_steps(config.max_steps);
        assert_eq!(c.open.keys().copied().collect::<Vec<_>>(), vec![4, 5]);
        c.rollout_queue.clear();
        let worker = WorkerId::local(Role::Rollout, 0);
        let deliver = |c: &mut Coordinator<'_>, job_id: u64, version: u64| {
            c.start(
                job_id,
                worker,
                Work::Rollout { step: 5, slot: 1 },
                Duration::from_secs(60),
            );
            c.handle(Event::Rollout {
                worker,
                job_id,
                result: Ok(RolloutResult {
                    group: group(version),
                    weights_checksum: checksum,
                    busy: Duration::ZERO,
                }),
            })
        };

        // Step 5 trains on versions 3 ..= 4: a group of version 2 lags by 2 and is dropped,
        // counted, and its prompt queued again for generation.
        deliver(&mut c, 1, 2)?;
        assert_eq!(c.report.dropped_stale_groups, 1);
        assert_eq!(c.rollout_queue, VecDeque::from([(5, 1)]));
        assert!(c.open[&5].groups[1].is_none());
        assert!(c.reward_queue.is_empty());

        // Version 3 lags by 1: accepted and sent on to scoring.
        c.rollout_queue.clear();
        deliver(&mut c, 2, 3)?;
        assert_eq!(c.report.dropped_stale_groups, 1);
        assert_eq!(
            c.open[&5].groups[1].as_ref().map(|g| g.policy_version),
            Some(3)
        );
        assert_eq!(c.reward_queue, VecDeque::from([(5, 1, vec![])]));
        assert_eq!(c.report.groups_by_worker["rollout-0"], 1);
        Ok(())
    }
}
