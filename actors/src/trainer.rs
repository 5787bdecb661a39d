//! `Trainer`: the GRPO loop on actors. A recipe configures the pools, the reward and the
//! learner, then calls [`Trainer::run`] with its prompts:
//!
//! ```no_run
//! # fn demo(learner: mathrl_learners::GrpoLearner, tokenizer: mathrl::Tokenizer,
//! #         reward: std::sync::Arc<dyn mathrl_rewards::RewardFunction>,
//! #         prompts: Vec<mathrl_actors::QaRecord>) -> mathrl_actors::Result<()> {
//! use mathrl_actors::{Trainer, TrainerConfig};
//! let config = TrainerConfig { rollout_actors: 4, max_steps: 100, ..TrainerConfig::default() };
//! let report = Trainer::new(config, learner, tokenizer, reward, mathrl::Metrics::null())?
//!     .with_checkpoint_dir("runs/grpo/checkpoints".into())
//!     .run(prompts)?;
//! println!("{} steps, groups per worker {:?}", report.steps, report.groups_by_worker);
//! # Ok(()) }
//! ```
//!
//! Layout of a run: the coordinator loop runs on the caller's thread; rollout and reward actors
//! run on a small tokio runtime under one supervisor per pool, their heavy work on blocking
//! threads; the learner has its own thread. Local rollout actors share one frozen copy of each
//! published version on the rollout device ([`Trainer::with_rollout_device`], default the
//! learner's); remote workers get [`crate::WeightsSnapshot`] bytes.
//! With [`Trainer::with_cluster`] the same runtime also listens for `mathrl worker` processes,
//! which join the pools ([`crate::cluster`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use crossbeam::channel::bounded;
use mathrl::data::QaRecord;
use mathrl::generation::ToolExecutor;
use mathrl::{Metrics, Tokenizer};
use mathrl_learners::{
    latest_checkpoint, CheckpointConfig, GrpoLearner, ResumeConfig, RunIdentity,
};
use mathrl_rewards::RewardFunction;
use ractor::{Actor, ActorRef};

use crate::cluster::host::Host;
use crate::cluster::protocol::Setup;
use crate::cluster::{ClusterConfig, RemoteWorkers};
use crate::config::TrainerConfig;
use crate::coordinator::{Coordinator, EncodedPrompt, Ending, ModelShape, Wiring};
use crate::event::{Role, WorkerId};
use crate::learner::LearnerThread;
use crate::progress::{PolicyObserver, PolicyWatch, StepObserver};
use crate::prompt::PromptStream;
use crate::report::TrainReport;
use crate::reward::{RewardActor, RewardSetup};
use crate::rollout::{RolloutActor, RolloutSetup};
use crate::stop::{install_signal_handlers, StopHandle};
use crate::supervision::{PoolArgs, PoolMsg, PoolSupervisor, Slots};
use crate::weights::{Publisher, WeightsBoard};
use crate::{Error, Result};

/// Runs GRPO with pools of rollout and reward actors around one learner.
pub struct Trainer {
    config: TrainerConfig,
    learner: GrpoLearner,
    tokenizer: Tokenizer,
    reward: Arc<dyn RewardFunction>,
    metrics: Metrics,
    checkpoint_dir: Option<PathBuf>,
    stop: StopHandle,
    cluster: Option<ClusterConfig>,
    rollout_device: Option<Device>,
    identity: IdentitySource,
    resume_from: Option<PathBuf>,
    observer: Option<StepObserver>,
    policy_watch: Option<PolicyWatch>,
    system_prompt: Option<String>,
    tool: Option<RunTool>,
}

/// The tool of tool-integrated reasoning ([`Trainer::with_tool`]).
#[derive(Clone)]
struct RunTool {
    /// The local rollout actors' executor.
    executor: Arc<dyn ToolExecutor>,
    /// What remote rollout workers build their own executor from.
    worker_settings: serde_json::Value,
}

/// What the run's identity is made of besides its seed and prompts ([`Trainer::with_identity`]).
#[derive(Debug, Clone, Default)]
struct IdentitySource {
    config: serde_json::Value,
    data_file: Option<PathBuf>,
    resume: ResumeConfig,
}

impl Trainer {
    /// A trainer; the config is checked here. The rollout settings (temperature, group size,
    /// length limit) are the learner's `rollout`: the behaviour log-probs and the learner's must
    /// be of the same distribution.
    pub fn new(
        mut config: TrainerConfig,
        learner: GrpoLearner,
        tokenizer: Tokenizer,
        reward: Arc<dyn RewardFunction>,
        metrics: Metrics,
    ) -> Result<Self> {
        config.use_rollout(&learner.config().rollout);
        // The pool sizes are checked in `run`: they may be 0 when remote workers fill them.
        config.validate_with_remote_workers()?;
        learner
            .config()
            .validate_step_size(config.prompts_per_step)?;
        Ok(Self {
            config,
            learner,
            tokenizer,
            reward,
            metrics,
            checkpoint_dir: None,
            stop: StopHandle::new(),
            cluster: None,
            rollout_device: None,
            identity: IdentitySource::default(),
            resume_from: None,
            observer: None,
            policy_watch: None,
            system_prompt: None,
            tool: None,
        })
    }

    /// Puts `system` before every question as the chat's system turn (the TIR system prompt of
    /// a tool-integrated run); without it prompts have the user turn alone.
    pub fn with_system_prompt(mut self, system: impl Into<String>) -> Self {
        self.system_prompt = Some(system.into());
        self
    }

    /// Tool-integrated reasoning: local rollout actors generate with `executor` (a python block
    /// followed by "```output" runs, its output block becomes tool tokens, masked out of the
    /// loss), and remote rollout workers build their own executor from `worker_settings` with
    /// their [`crate::cluster::ToolBuilder`]. Steps then log `rollout/tool_calls_mean`,
    /// `rollout/tool_errors` and `rollout/tool_seconds`.
    pub fn with_tool(
        mut self,
        executor: Arc<dyn ToolExecutor>,
        worker_settings: serde_json::Value,
    ) -> Self {
        self.tool = Some(RunTool {
            executor,
            worker_settings,
        });
        self
    }

    /// Also accepts `mathrl worker` processes per `cluster`: they authenticate with its
    /// cookie and join the rollout or reward pool, which may then be empty locally.
    pub fn with_cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Places the local rollout actors' copy of the weights (one, shared by all of them) and
    /// their KV caches on `device` instead of the learner's device.
    pub fn with_rollout_device(mut self, device: Device) -> Self {
        self.rollout_device = Some(device);
        self
    }

    /// The device of the local rollout actors: [`Trainer::with_rollout_device`]'s, else the
    /// learner's.
    pub fn rollout_device(&self) -> Device {
        self.rollout_device
            .clone()
            .unwrap_or_else(|| self.learner.policy().device().clone())
    }

    /// How the learner publishes its weights in this run: a shared copy on the rollout device
    /// when there are local rollout actors, bytes when remote workers may join.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            rollout_device: (self.config.rollout_actors > 0).then(|| self.rollout_device()),
            remote: self.cluster.is_some(),
            bf16_weights: self.config.engine.bf16_weights,
        }
    }

    /// Checkpoints go to `dir` (every `checkpoint_every` steps, at the end, and on a stop
    /// request); a run resumes from the latest complete checkpoint found there.
    pub fn with_checkpoint_dir(mut self, dir: PathBuf) -> Self {
        self.checkpoint_dir = Some(dir);
        self
    }

    /// Records `config` (the recipe's settings less those a resume may change) and `data_file`
    /// in every checkpoint with the seed and a hash of the prompts; a resume whose seed, prompts
    /// or settings differ is refused unless `resume.allow_changed` (see [`RunIdentity`]).
    pub fn with_identity(
        mut self,
        config: serde_json::Value,
        data_file: Option<PathBuf>,
        resume: ResumeConfig,
    ) -> Self {
        self.identity = IdentitySource {
            config,
            data_file,
            resume,
        };
        self
    }

    /// Starts from the checkpoint in `dir` (`--resume`) instead of the newest one in the
    /// checkpoint directory.
    pub fn with_resume_from(mut self, dir: Option<PathBuf>) -> Self {
        self.resume_from = dir;
        self
    }

    /// Tells `observer` of every trained step (a progress bar, a line per step).
    pub fn with_step_observer(mut self, observer: StepObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Shows `observer` the policy published after every `every`-th step (0: never), e.g. to
    /// evaluate it. It is called on the coordinator's thread while training waits, with the
    /// frozen copy the rollouts sample from: it cannot change the weights, the prompt order or
    /// any random stream, so a seeded run trains the same with or without it.
    pub fn with_policy_observer(mut self, every: u64, observer: PolicyObserver) -> Self {
        self.policy_watch = Some(PolicyWatch { every, observer });
        self
    }

    /// Uses `stop` for stop requests (so a handle made before the trainer, e.g. one a timer
    /// or another component holds, can stop it).
    pub fn with_stop_handle(mut self, stop: StopHandle) -> Self {
        self.stop = stop;
        self
    }

    /// A handle that requests a stop (as SIGINT does): the first request finishes the current
    /// step and writes a checkpoint, the second makes `run` return at once.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Trains until `max_steps` (counting steps before a resume) or a stop request, cycling
    /// through `prompts` in a seeded shuffle.
    pub fn run(mut self, prompts: Vec<QaRecord>) -> Result<TrainReport> {
        let started = Instant::now();
        if self.cluster.is_none() {
            self.config.validate()?;
        }
        if prompts.is_empty() {
            return Err(Error::Input("Trainer::run: no prompts".into()));
        }
        let identity = self.run_identity(&prompts)?;
        let encoded = self.encode(prompts)?;
        let mut stream = PromptStream::new(encoded.len(), self.config.seed);
        let checkpoints = self.checkpoint_dir.as_ref().map(|dir| {
            CheckpointConfig::new(
                dir,
                self.config.checkpoint_every,
                self.config.keep_checkpoints,
            )
        });
        let start = match (&self.resume_from, &self.checkpoint_dir) {
            (Some(named), _) => Some(named.clone()),
            (None, Some(dir)) => latest_checkpoint(dir)?,
            (None, None) => None,
        };
        if let Some(checkpoint) = start {
            self.resume(&checkpoint, &mut stream, &identity)?;
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mathrl-actors")
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("starting tokio: {e}")))?;
        if self.config.handle_signals {
            install_signal_handlers(&runtime, self.stop.clone());
        }
        // Remote workers report on the same channel; 64 more places keep it from filling.
        let remote_places = if self.cluster.is_some() { 64 } else { 0 };
        let workers = self.config.rollout_actors + self.config.reward_actors;
        let (events_tx, events_rx) = bounded(4 * workers + 16 + remote_places);
        let (learner_tx, learner_rx) = bounded(4);
        let trained = self.learner.step_count();
        let publisher = self.publisher();
        let initial = publisher.publish(self.learner.policy(), trained)?;
        let initial_checksum = initial.checksum;
        let board = WeightsBoard::new(initial);
        let rollout_setup = RolloutSetup {
            engine: self.config.engine.clone(),
            tokenizer: self.tokenizer.clone(),
            threads: self.config.threads_per_rollout_actor,
            board: board.clone(),
            events: events_tx.clone(),
            tool: self.tool.as_ref().map(|t| t.executor.clone()),
        };
        let rollout_slots = Slots::new(self.config.rollout_actors);
        let reward_slots = Slots::new(self.config.reward_actors);
        let rollout_pool = runtime.block_on(spawn_pool::<RolloutActor>(
            Role::Rollout,
            self.config.rollout_actors,
            Arc::new(|worker| RolloutActor { worker }),
            rollout_setup,
            rollout_slots.clone(),
            events_tx.clone(),
        ))?;
        let reward_pool = runtime.block_on(spawn_pool::<RewardActor>(
            Role::Reward,
            self.config.reward_actors,
            Arc::new(|worker| RewardActor { worker }),
            RewardSetup {
                reward: self.reward.clone(),
                events: events_tx.clone(),
            },
            reward_slots.clone(),
            events_tx.clone(),
        ))?;
        let host = match &self.cluster {
            Some(cluster) => {
                let setup = rollout_setup_for_workers(
                    self.learner.policy(),
                    &self.tokenizer,
                    &self.config,
                    self.tool.as_ref().map(|t| t.worker_settings.clone()),
                )?;
                Some(Host::start(
                    &runtime,
                    cluster,
                    &setup,
                    board.clone(),
                    events_tx.clone(),
                )?)
            }
            None => None,
        };
        let remote = host
            .as_ref()
            .map_or_else(RemoteWorkers::none, Host::workers);
        let shape = ModelShape {
            config: self.learner.policy().config().clone(),
            device: self.learner.policy().device().clone(),
            dtype: self.learner.policy().dtype(),
        };
        let learner = LearnerThread::spawn(self.learner, publisher, learner_tx)?;

        let coordinator = Coordinator::new(
            &self.config,
            &encoded,
            stream,
            self.metrics.clone(),
            self.stop.clone(),
            checkpoints,
            Wiring {
                rollout: rollout_slots,
                reward: reward_slots,
                events: events_rx,
                learner,
                learner_events: learner_rx,
                board,
                remote: remote.clone(),
            },
            trained,
            initial_checksum,
        )
        .with_identity(identity)
        .with_observer(self.observer.take())
        .with_tool_metrics(self.tool.is_some())
        .with_policy_watch(self.policy_watch.take(), shape);
        let outcome = coordinator.run();

        if let Some(host) = host {
            host.shut_down(&runtime);
        }
        for pool in [&rollout_pool, &reward_pool] {
            let _ = pool.cast(PoolMsg::Shutdown);
        }
        // Workers stuck in a blocking call (a hung reward) are not waited for.
        runtime.shutdown_timeout(Duration::from_secs(1));
        if let Err(e) = self.metrics.flush() {
            tracing::warn!("flushing metrics: {e}");
        }
        let (ending, learner, mut tally) = outcome?;
        match ending {
            Ending::Abandoned => return Err(Error::Stopped),
            Ending::Diverged(message) => {
                drop(learner.finish());
                let checkpoint = tally
                    .checkpoints
                    .last()
                    .map_or_else(|| "none".into(), |d| d.display().to_string());
                return Err(Error::Runtime(format!(
                    "step {}: {message} (last checkpoint: {checkpoint})",
                    tally.steps
                )));
            }
            Ending::Finished => {}
        }
        let learner = learner.finish()?;
        tally.steps = learner.step_count();
        let mut report = TrainReport::new(
            tally,
            learner.policy().clone(),
            learner.master_weights()?,
            started.elapsed().as_secs_f64(),
        );
        report.remote_workers = remote.roster();
        Ok(report)
    }

    /// The seed, a hash of `prompts` and the settings given to [`Trainer::with_identity`].
    fn run_identity(&self, prompts: &[QaRecord]) -> Result<RunIdentity> {
        let items = prompts
            .iter()
            .map(serde_json::to_vec)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Input(format!("serialising a prompt: {e}")))?;
        Ok(RunIdentity::new(
            self.config.seed,
            self.identity.data_file.as_deref(),
            items,
            self.identity.config.clone(),
        ))
    }

    /// Formats and encodes every prompt; the error names the prompt.
    fn encode(&self, prompts: Vec<QaRecord>) -> Result<Vec<EncodedPrompt>> {
        prompts
            .into_iter()
            .map(|record| {
                let text = self
                    .tokenizer
                    .question_prompt(&record.question, self.system_prompt.as_deref())
                    .and_then(|t| self.tokenizer.encode(&t))
                    .map_err(|e| Error::Input(format!("prompt `{}`: {e}", record.id)))?;
                if text.is_empty() {
                    return Err(Error::Input(format!(
                        "prompt `{}` encodes to no tokens",
                        record.id
                    )));
                }
                Ok(EncodedPrompt { record, ids: text })
            })
            .collect()
    }

    /// Restores the learner (weights, optimiser, counters) from the checkpoint in `dir` and
    /// moves the prompt stream to where the checkpoint left it.
    fn resume(
        &mut self,
        dir: &std::path::Path,
        stream: &mut PromptStream,
        identity: &RunIdentity,
    ) -> Result<()> {
        let recorded = mathrl_learners::read_trainer_state(dir)?.run.identity;
        identity.check_resume(recorded.as_ref(), dir, self.identity.resume)?;
        let run = self.learner.restore(dir)?;
        if let Some(cursor) = run.data_cursor {
            stream.seek(cursor);
        }
        tracing::info!(
            "resumed from {} (step {})",
            dir.display(),
            self.learner.step_count()
        );
        Ok(())
    }
}

/// What a remote rollout worker needs besides the weights: the architecture, dtype, engine
/// limits and tokenizer of the local rollout copies.
fn rollout_setup_for_workers(
    policy: &mathrl::Policy,
    tokenizer: &Tokenizer,
    config: &TrainerConfig,
    tool: Option<serde_json::Value>,
) -> Result<Setup> {
    let (tokenizer_json, tokenizer_config) = tokenizer.to_json()?;
    Ok(Setup::Rollout {
        model_config: Box::new(policy.config().clone()),
        dtype: policy.dtype().as_str().to_string(),
        engine: config.engine.clone(),
        tokenizer_json,
        tokenizer_config,
        tool,
    })
}

/// Spawns a supervisor with `n` workers of `role`.
async fn spawn_pool<A>(
    role: Role,
    n: usize,
    factory: crate::supervision::WorkerFactory<A>,
    arguments: A::Arguments,
    slots: Slots<A::Msg>,
    events: crossbeam::channel::Sender<crate::event::Event>,
) -> Result<ActorRef<PoolMsg>>
where
    A: Actor,
    A::Arguments: Clone + Sync,
{
    let (pool, _) = Actor::spawn(
        None,
        PoolSupervisor::<A>::default(),
        PoolArgs {
            workers: (0..n).map(|index| WorkerId::local(role, index)).collect(),
            factory,
            arguments,
            slots,
            events,
        },
    )
    .await
    .map_err(|e| Error::Runtime(format!("starting the {} pool: {e}", role.as_str())))?;
    Ok(pool)
}
