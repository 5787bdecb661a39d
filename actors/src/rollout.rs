//! The rollout actor: samples with the learner's latest published weights through a generation
//! [`Engine`] and turns one prompt into one group of completions per message.
//!
//! The weights are the shared frozen copy of the [`WeightsBoard`]'s latest version
//! ([`PublishedWeights::local`]): every rollout actor of the process reads the same `Arc<Policy>`
//! (the engine's model shares its tensors), so N actors hold one copy of the weights, not N.
//!
//! Generation is CPU-heavy and blocking, so it runs on tokio's blocking pool inside the actor's
//! own rayon pool (`threads` threads: candle's matmuls use the pool they are called from); the
//! engine moves into that task and back. Before each group the actor compares its weights with
//! the board and takes a newer version if there is one, so a group never mixes versions, and a
//! restarted actor starts from the latest published weights.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device};
use crossbeam::channel::Sender;
use mathrl::generation::{Engine, EngineConfig, SamplingParams, ToolExecutor};
use mathrl::model::Qwen2Config;
use mathrl::{Policy, Tokenizer};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;
use serde::{Deserialize, Serialize};

use crate::event::{Event, RolloutResult, WorkerId};
use crate::weights::{PublishedWeights, WeightsBoard, WeightsSnapshot};

/// What a rollout actor needs to build its engine (shared by the pool, cheap to clone). The
/// weights, their device and dtype come from the board.
#[derive(Clone)]
pub struct RolloutSetup {
    /// Engine limits.
    pub engine: EngineConfig,
    /// Decodes completions (the reward functions read text).
    pub tokenizer: Tokenizer,
    /// Threads of the actor's compute pool.
    pub threads: usize,
    /// The latest published weights.
    pub board: WeightsBoard,
    /// Where results go.
    pub events: Sender<Event>,
    /// The executor of tool-integrated reasoning: with one, completions may call it (python
    /// blocks run, their output blocks become tool tokens).
    pub tool: Option<Arc<dyn ToolExecutor>>,
}

/// One prompt to turn into a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutJob {
    /// The coordinator's id for this attempt.
    pub job_id: u64,
    /// The formatted prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// Sampling settings (`n` = group size, a seed per step and prompt).
    pub params: SamplingParams,
}

/// Messages of the rollout actor (local only: a remote worker gets [`crate::cluster::WorkerMsg`]).
#[derive(Debug, RactorMessage)]
pub enum RolloutMsg {
    /// Generate one group and report it as [`Event::Rollout`].
    Generate(RolloutJob),
}

/// The rollout actor (one per pool slot; its index is kept across restarts).
#[derive(Clone)]
pub struct RolloutActor {
    /// Its id, as reported with every result.
    pub worker: WorkerId,
}

/// The rollout actor's state: the engine (absent while a blocking task holds it) and the shared
/// weights it samples with.
pub struct RolloutState {
    setup: RolloutSetup,
    engine: Option<Engine>,
    weights: Loaded,
    pool: Arc<rayon::ThreadPool>,
}

/// The published version an engine samples with.
#[derive(Clone)]
struct Loaded {
    version: u64,
    checksum: u64,
    /// Held so the version's shared copy lives as long as an actor samples with it.
    _policy: Arc<Policy>,
}

/// An engine over the shared frozen copy of `published` (no copy of the weights is made).
fn engine_for(
    setup: &RolloutSetup,
    published: &PublishedWeights,
) -> crate::Result<(Engine, Loaded)> {
    let policy = published
        .local
        .clone()
        .ok_or_else(|| crate::Error::Weights {
            version: published.version,
            message: "published without the local rollout copy (the trainer has no local rollout \
                  actor)"
                .into(),
        })?;
    let mut engine = with_tool(
        Engine::from_policy(&policy, setup.engine.clone()).with_tokenizer(setup.tokenizer.clone()),
        setup.tool.as_ref(),
    );
    engine.set_policy_version(published.version);
    let loaded = Loaded {
        version: published.version,
        checksum: published.checksum,
        _policy: policy,
    };
    Ok((engine, loaded))
}

/// Verifies `snapshot`, builds a frozen policy from it and an engine over that policy, stamped
/// with the snapshot's version (a remote worker's path).
pub(crate) fn build_engine(
    model_config: &Qwen2Config,
    device: &Device,
    dtype: DType,
    engine: &EngineConfig,
    tokenizer: &Tokenizer,
    tool: Option<&Arc<dyn ToolExecutor>>,
    snapshot: &WeightsSnapshot,
) -> crate::Result<Engine> {
    let policy = snapshot.to_policy(model_config, device, dtype)?;
    let mut engine = with_tool(
        Engine::from_policy(&policy, engine.clone()).with_tokenizer(tokenizer.clone()),
        tool,
    );
    engine.set_policy_version(snapshot.version);
    Ok(engine)
}

/// `engine` with the tool executor, when the run has one.
fn with_tool(engine: Engine, tool: Option<&Arc<dyn ToolExecutor>>) -> Engine {
    match tool {
        Some(tool) => engine.with_tool(tool.clone()),
        None => engine,
    }
}

/// Generates the group of `job` with `engine`, timed, with the checksum of its weights.
pub(crate) fn generate_group(
    engine: &mut Engine,
    job: &RolloutJob,
    weights_checksum: u64,
) -> Result<RolloutResult, String> {
    let start = Instant::now();
    let out = engine.generate(std::slice::from_ref(&job.prompt_ids), &job.params);
    out.map_err(|e| e.to_string())
        .and_then(|mut out| out.groups.pop().ok_or_else(|| "no group".to_string()))
        .map(|group| RolloutResult {
            group,
            weights_checksum,
            busy: start.elapsed(),
        })
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".into())
}

impl Actor for RolloutActor {
    type Msg = RolloutMsg;
    type State = RolloutState;
    type Arguments = RolloutSetup;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        setup: RolloutSetup,
    ) -> Result<Self::State, ActorProcessingErr> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(setup.threads.max(1))
            .thread_name({
                let worker = self.worker;
                move |i| format!("{worker}-compute-{i}")
            })
            .build()?;
        // Cheap: the engine shares the published copy's tensors.
        let (engine, weights) = engine_for(&setup, &setup.board.latest())?;
        Ok(RolloutState {
            setup,
            engine: Some(engine),
            weights,
            pool: Arc::new(pool),
        })
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.setup.events.send(Event::WorkerUp {
            worker: self.worker,
        })?;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RolloutMsg::Generate(job) = message;
        let job_id = job.job_id;
        let mut engine = state
            .engine
            .take()
            .ok_or("rollout actor lost its engine to an earlier failure")?;
        let latest = state.setup.board.latest();
        let setup = state.setup.clone();
        let pool = state.pool.clone();
        let mut weights = state.weights.clone();
        // A panic inside generation fails this actor (the supervisor restarts it); an error is
        // reported as a failed attempt and the actor keeps its engine.
        let (engine, weights, result) = tokio::task::spawn_blocking(move || {
            pool.install(|| {
                // New weights are taken here, between groups, never inside one.
                if latest.version != weights.version || latest.checksum != weights.checksum {
                    match engine_for(&setup, &latest) {
                        Ok((fresh, loaded)) => {
                            engine = fresh;
                            weights = loaded;
                        }
                        Err(e) => return (engine, weights, Err(e.to_string())),
                    }
                }
                let result = generate_group(&mut engine, &job, weights.checksum);
                (engine, weights, result)
            })
        })
        .await
        .map_err(|e| -> ActorProcessingErr {
            if e.is_panic() {
                format!("generation panicked: {}", panic_message(e.into_panic())).into()
            } else {
                format!("generation task cancelled: {e}").into()
            }
        })?;
        state.weights = weights;
        state.engine = Some(engine);
        state.setup.events.send(Event::Rollout {
            worker: self.worker,
            job_id,
            result,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use candle_core::{DType, Device};
    use crossbeam::channel::{unbounded, Receiver};
    use mathrl::model::Trainable;

    use super::*;
    use crate::event::Role;
    use crate::weights::Publisher;

    const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");
    const TOKENIZER: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/procedural-tokenizer"
    );
    const ACTORS: usize = 3;

    fn job(job_id: u64) -> RolloutJob {
        RolloutJob {
            job_id,
            prompt_ids: vec![5, 17, 42, 9],
            params: SamplingParams {
                n: 3,
                max_new_tokens: 6,
                seed: 11,
                ..SamplingParams::default()
            },
        }
    }

    /// The next `n` rollout results (worker start-up events are skipped).
    async fn results(events: &Receiver<Event>, n: usize) -> Vec<RolloutResult> {
        let events = events.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            while out.len() < n {
                match events.recv_timeout(Duration::from_secs(60)) {
                    Ok(Event::Rollout { result, .. }) => out.push(result.expect("generated")),
                    Ok(_) => {}
                    Err(e) => panic!("no rollout result: {e}"),
                }
            }
            out
        })
        .await
        .unwrap()
    }

    /// Local rollout actors read one shared allocation of each published version (no deep copy
    /// per actor), sample exactly what a private copy decoded from the published bytes samples,
    /// and let go of a version once they have all moved to the next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_actors_share_one_copy_and_sample_as_a_private_copy_does() {
        let policy = Policy::load(TINY, &Device::Cpu, Some(DType::F32), Trainable::Yes).unwrap();
        let tokenizer = Tokenizer::from_dir(TOKENIZER).unwrap();
        let publisher = Publisher {
            rollout_device: Some(Device::Cpu),
            remote: true,
            bf16_weights: false,
        };
        let board = WeightsBoard::new(publisher.publish(&policy, 0).unwrap());
        let (events_tx, events_rx) = unbounded();
        let setup = RolloutSetup {
            engine: EngineConfig::default(),
            tokenizer: tokenizer.clone(),
            threads: 1,
            board: board.clone(),
            events: events_tx,
            tool: None,
        };
        let mut actors = Vec::new();
        for index in 0..ACTORS {
            let worker = WorkerId::local(Role::Rollout, index);
            let (actor, handle) = Actor::spawn(None, RolloutActor { worker }, setup.clone())
                .await
                .unwrap();
            actors.push((actor, handle));
        }
        let first = board.latest();
        let shared = first.local.clone().expect("a local copy was published");
        // The board, each actor and this test: one allocation, N + 2 handles.
        assert_eq!(Arc::strong_count(&shared), ACTORS + 2);

        for (i, (actor, _)) in actors.iter().enumerate() {
            actor.cast(RolloutMsg::Generate(job(i as u64))).unwrap();
        }
        let groups = results(&events_rx, ACTORS).await;
        // What the bytes path (a private, checksum-verified copy) samples for the same job.
        let private = first
            .wire
            .as_ref()
            .unwrap()
            .to_policy(policy.config(), &Device::Cpu, DType::F32)
            .unwrap();
        let mut engine =
            Engine::from_policy(&private, EngineConfig::default()).with_tokenizer(tokenizer);
        let expected = generate_group(&mut engine, &job(0), first.checksum)
            .unwrap()
            .group;
        for result in &groups {
            assert_eq!(result.weights_checksum, first.checksum);
            assert_eq!(result.group.completions.len(), 3);
            for (got, want) in result.group.completions.iter().zip(&expected.completions) {
                assert_eq!(got.token_ids, want.token_ids);
                assert_eq!(got.logprobs, want.logprobs);
            }
        }
        assert_eq!(Arc::strong_count(&shared), ACTORS + 2);

        // Version 1: each actor takes it before its next group and drops version 0.
        board.publish(publisher.publish(&policy, 1).unwrap());
        drop(first);
        for (i, (actor, _)) in actors.iter().enumerate() {
            actor
                .cast(RolloutMsg::Generate(job(10 + i as u64)))
                .unwrap();
        }
        for result in results(&events_rx, ACTORS).await {
            assert_eq!(result.group.policy_version, 1);
        }
        assert_eq!(Arc::strong_count(&shared), 1, "version 0 is still held");
        let second = board.latest().local.clone().unwrap();
        assert!(!Arc::ptr_eq(&shared, &second));
        assert_eq!(Arc::strong_count(&second), ACTORS + 2);

        for (actor, handle) in actors {
            actor.stop(None);
            handle.await.unwrap();
        }
    }
}
