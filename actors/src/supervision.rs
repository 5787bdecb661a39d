//! Supervision: a pool supervisor spawns its workers linked to itself and restarts any that
//! fails (a panic in a handler) or is killed (the coordinator kills a worker that overruns its
//! per-message deadline). It tells the coordinator about both, so the lost job is re-issued.
//!
//! A worker keeps its pool index across restarts; the current [`ActorRef`] of each index lives in
//! [`Slots`], which the coordinator reads to send work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crossbeam::channel::Sender;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::RactorMessage;

use crate::event::{Event, WorkerId};

/// Restarts of one worker in a row that may fail before it is given up.
const MAX_RESTART_TRIES: usize = 3;

/// The current actor of each pool index (`None` while it is being restarted or was given up).
pub struct Slots<M>(Arc<Mutex<Vec<Option<ActorRef<M>>>>>);

impl<M> Clone for Slots<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: ractor::Message> Slots<M> {
    /// `n` empty slots.
    pub fn new(n: usize) -> Self {
        Self(Arc::new(Mutex::new(vec![None; n])))
    }

    /// The actor of slot `index`, if it is up.
    pub fn get(&self, index: usize) -> Option<ActorRef<M>> {
        self.lock().get(index).cloned().flatten()
    }

    fn set(&self, index: usize, actor: Option<ActorRef<M>>) {
        self.lock()[index] = actor;
    }

    /// Every live actor.
    pub fn all(&self) -> Vec<ActorRef<M>> {
        self.lock().iter().flatten().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<ActorRef<M>>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Builds the worker actor for a pool index (its handler value carries the index).
pub type WorkerFactory<A> = Arc<dyn Fn(WorkerId) -> A + Send + Sync>;

/// Supervises one pool of workers of actor type `A`.
pub struct PoolSupervisor<A: Actor> {
    _worker: std::marker::PhantomData<fn() -> A>,
}

impl<A: Actor> Default for PoolSupervisor<A> {
    fn default() -> Self {
        Self {
            _worker: std::marker::PhantomData,
        }
    }
}

/// What a pool supervisor starts with.
pub struct PoolArgs<A: Actor> {
    /// The workers' ids (role and index), one per pool slot.
    pub workers: Vec<WorkerId>,
    /// Builds a worker's handler.
    pub factory: WorkerFactory<A>,
    /// The arguments every worker starts (and restarts) with.
    pub arguments: A::Arguments,
    /// Where the live actors are published.
    pub slots: Slots<A::Msg>,
    /// Where lifecycle events go.
    pub events: Sender<Event>,
}

/// The supervisor's state.
pub struct PoolState<A: Actor> {
    args: PoolArgs<A>,
    by_actor: HashMap<ActorId, usize>,
    stopping: bool,
}

/// Messages of the supervisor.
#[derive(Debug, RactorMessage)]
pub enum PoolMsg {
    /// Stop every worker, then the supervisor, without restarting anything.
    Shutdown,
}

impl<A> PoolState<A>
where
    A: Actor,
    A::Arguments: Clone,
{
    async fn start(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: usize,
    ) -> Result<(), ActorProcessingErr> {
        let worker = self.args.workers[slot];
        let handler = (self.args.factory)(worker);
        let (actor, _) = Actor::spawn_linked(
            None,
            handler,
            self.args.arguments.clone(),
            myself.get_cell(),
        )
        .await?;
        self.by_actor.insert(actor.get_id(), slot);
        self.args.slots.set(slot, Some(actor));
        Ok(())
    }
}

impl<A> Actor for PoolSupervisor<A>
where
    A: Actor,
    A::Arguments: Clone + Sync,
{
    type Msg = PoolMsg;
    type State = PoolState<A>;
    type Arguments = PoolArgs<A>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PoolArgs<A>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = PoolState {
            args,
            by_actor: HashMap::new(),
            stopping: false,
        };
        for slot in 0..state.args.workers.len() {
            state.start(&myself, slot).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let PoolMsg::Shutdown = message;
        state.stopping = true;
        for actor in state.args.slots.all() {
            actor.stop(Some("shutdown".into()));
        }
        myself.stop(None);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("terminated: {}", reason.unwrap_or_else(|| "killed".into())),
            ),
            _ => return Ok(()),
        };
        let Some(slot) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        let worker = state.args.workers[slot];
        state.args.slots.set(slot, None);
        // The coordinator learns of the loss first, so it re-issues the job before the
        // restarted worker asks for more.
        let _ = state.args.events.send(Event::WorkerDown {
            worker,
            reason: reason.clone(),
        });
        tracing::warn!("{worker} {reason}; restarting");
        let mut last_error = None;
        for _ in 0..MAX_RESTART_TRIES {
            match state.start(&myself, slot).await {
                Ok(()) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        tracing::error!(
            "{worker} could not be restarted: {}",
            last_error.map(|e| e.to_string()).unwrap_or_default()
        );
        Ok(())
    }
}
