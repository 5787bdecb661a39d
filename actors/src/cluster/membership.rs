//! The coordinator's membership actor: it watches the workers' process groups, sends each
//! joiner its setup (and announces it to the coordinator once that succeeds), and reports a
//! leaver as a lost worker so its job is re-issued.

use crossbeam::channel::Sender;
use ractor::{pg, Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster::RactorMessage;

use super::protocol::{self, decode, Reply, WorkerMsg, REWARD_GROUP, ROLLOUT_GROUP};
use super::remote::{finish, rpc, RemoteWorkers, SETUP_TIMEOUT};
use crate::event::{Event, Role, WorkerId};

/// The membership actor's (only) message: it acts on supervision events alone.
#[derive(RactorMessage)]
pub(super) struct MembershipMsg;

/// Watches the workers' process groups: sets up joiners, reports leavers.
pub(super) struct Membership;

/// What the membership actor works with.
pub(super) struct MembershipState {
    /// The run's remote workers.
    pub(super) workers: RemoteWorkers,
    /// Where joins and leaves are announced.
    pub(super) events: Sender<Event>,
    /// The CBOR setup of a rollout worker.
    pub(super) rollout_setup: Vec<u8>,
    /// The CBOR setup of a reward worker (`None`: reward workers are refused).
    pub(super) reward_setup: Option<Vec<u8>>,
}

impl Actor for Membership {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = MembershipState;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: MembershipState,
    ) -> Result<Self::State, ActorProcessingErr> {
        for group in [ROLLOUT_GROUP, REWARD_GROUP] {
            pg::monitor(group.to_string(), myself.get_cell());
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        _message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ProcessGroupChanged(change) = event else {
            return Ok(());
        };
        match change {
            pg::GroupChangeMessage::Join(_, group, cells) => {
                let Some(role) = protocol::role_of(&group) else {
                    return Ok(());
                };
                // Local members (a worker inside this process, in tests) are not remote workers.
                for cell in cells.iter().filter(|c| !c.get_id().is_local()) {
                    let name = cell
                        .get_name()
                        .unwrap_or_else(|| format!("worker-{}", cell.get_id()));
                    if state.workers.was_dropped(&name) {
                        tracing::warn!(
                            "remote worker {name} was dropped earlier in this run; refusing it"
                        );
                        let actor = ActorRef::from(cell.clone());
                        tokio::spawn(async move {
                            let reason = "this worker's results failed the coordinator's checks \
                                          earlier in the run; it may not rejoin";
                            let _ = finish(&actor, Some(reason.into())).await;
                        });
                        continue;
                    }
                    if let Some(worker) = state.workers.register(name.clone(), role, cell) {
                        tracing::info!("remote {} worker {name} joined", role.as_str());
                        let setup = match role {
                            Role::Rollout => Some(state.rollout_setup.clone()),
                            Role::Reward => state.reward_setup.clone(),
                        };
                        tokio::spawn(set_up(
                            state.workers.clone(),
                            state.events.clone(),
                            worker,
                            name,
                            ActorRef::from(cell.clone()),
                            setup,
                        ));
                    }
                }
            }
            pg::GroupChangeMessage::Leave(_, _, cells) => {
                for cell in cells.iter().filter(|c| !c.get_id().is_local()) {
                    if let Some((worker, name)) = state.workers.disconnect(cell.get_id()) {
                        tracing::warn!("remote worker {name} disconnected");
                        let _ = state.events.send(Event::WorkerDown {
                            worker,
                            reason: format!("({name}) disconnected"),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Sends a joiner its setup; on success the coordinator hears of it as a new worker.
async fn set_up(
    workers: RemoteWorkers,
    events: Sender<Event>,
    worker: WorkerId,
    name: String,
    actor: ActorRef<WorkerMsg>,
    setup: Option<Vec<u8>>,
) {
    let Some(setup) = setup else {
        let reason = "this run's reward cannot be built on a remote worker (the recipe gave no \
                      reward spec); start rollout workers only";
        tracing::warn!("remote reward worker {name} refused: {reason}");
        let _ = finish(&actor, Some(reason.into())).await;
        return;
    };
    let outcome = rpc(
        &actor,
        |port| WorkerMsg::Setup(setup, port),
        Some(SETUP_TIMEOUT),
    )
    .await
    .and_then(|bytes| decode::<Reply<()>>("setup reply", &bytes).map_err(|e| e.to_string()))
    .and_then(|reply| reply);
    match outcome {
        Ok(()) => {
            if workers.mark_ready(worker) {
                tracing::info!("remote worker {name} is ready as {worker}");
                let _ = events.send(Event::WorkerUp { worker });
            }
        }
        Err(e) => {
            tracing::warn!("remote worker {name} failed its setup: {e}");
            let _ = finish(&actor, Some(format!("setup failed: {e}"))).await;
        }
    }
}
