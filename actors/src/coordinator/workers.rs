//! One facade over the two places a worker can be: an actor of a local pool (under its
//! supervisor, reached through [`Slots`]) or a `mathrl worker` process that joined over the
//! network ([`RemoteWorkers`]). Every decision that depends on where a worker runs (how a job
//! reaches it, what happens when it overruns its deadline, how it is named and counted when it
//! is lost) is made here, so the rest of the coordinator deals in [`WorkerId`]s only.

use std::time::Duration;

use crate::cluster::RemoteWorkers;
use crate::event::{Place, Role, WorkerId};
use crate::report::RunTally;
use crate::reward::{RewardJob, RewardMsg};
use crate::rollout::{RolloutJob, RolloutMsg};
use crate::supervision::Slots;

/// The rollout and reward workers of a run, local and remote.
pub(super) struct Workers {
    rollout: Slots<RolloutMsg>,
    reward: Slots<RewardMsg>,
    remote: RemoteWorkers,
    /// Local pool sizes (rollout, reward), as configured.
    local: (usize, usize),
}

impl Workers {
    /// The local pools of `local` (rollout, reward) actors and the remote workers.
    pub(super) fn new(
        rollout: Slots<RolloutMsg>,
        reward: Slots<RewardMsg>,
        remote: RemoteWorkers,
        local: (usize, usize),
    ) -> Self {
        Self {
            rollout,
            reward,
            remote,
            local,
        }
    }

    /// Sends a rollout job; false if the worker is gone (nothing was sent).
    pub(super) fn generate(&self, worker: WorkerId, job: RolloutJob) -> bool {
        match worker.place {
            Place::Local => self
                .rollout
                .get(worker.index)
                .is_some_and(|actor| actor.cast(RolloutMsg::Generate(job)).is_ok()),
            Place::Remote => self.remote.generate(worker, job),
        }
    }

    /// Sends a reward job; false if the worker is gone (nothing was sent).
    pub(super) fn score(&self, worker: WorkerId, job: RewardJob) -> bool {
        match worker.place {
            Place::Local => self
                .reward
                .get(worker.index)
                .is_some_and(|actor| actor.cast(RewardMsg::Score(job)).is_ok()),
            Place::Remote => self.remote.score(worker, job),
        }
    }

    /// Stops a worker that overran its deadline. A local actor is killed: its supervisor
    /// restarts it and says so with `WorkerUp`. A remote process cannot be restarted from here:
    /// it is left alone, benched until its late answer shows it is free (see
    /// [`Workers::may_readmit`]). A result either still sends carries a job id no longer in flight.
    pub(super) fn stop_overdue(&self, worker: WorkerId) {
        match (worker.place, worker.role) {
            (Place::Remote, _) => {}
            (Place::Local, Role::Rollout) => {
                if let Some(actor) = self.rollout.get(worker.index) {
                    actor.kill();
                }
            }
            (Place::Local, Role::Reward) => {
                if let Some(actor) = self.reward.get(worker.index) {
                    actor.kill();
                }
            }
        }
    }

    /// Whether a benched worker whose late answer just came may take work again: a remote
    /// worker that is still connected. A local actor comes back through its supervisor instead.
    pub(super) fn may_readmit(&self, worker: WorkerId) -> bool {
        worker.place == Place::Remote && self.remote.is_connected(worker)
    }

    /// Drops a worker whose results kept failing the coordinator's checks; it is told `reason`.
    /// Only remote results are checked, so only a remote worker is ever dropped.
    pub(super) fn drop_worker(&self, worker: WorkerId, reason: String) {
        if worker.place == Place::Remote {
            self.remote.drop_worker(worker, reason);
        }
    }

    /// Counts a lost worker: a local actor is restarted by its supervisor, a remote worker is
    /// gone until it joins again.
    pub(super) fn count_lost(&self, worker: WorkerId, tally: &mut RunTally) {
        match worker.place {
            Place::Local => tally.restarts += 1,
            Place::Remote => tally.disconnects += 1,
        }
    }

    /// The name a worker is reported by: `rollout-0` for a local actor, its own name for a
    /// remote worker.
    pub(super) fn label(&self, worker: WorkerId) -> String {
        match worker.place {
            Place::Local => worker.to_string(),
            Place::Remote => self
                .remote
                .name(worker)
                .unwrap_or_else(|| worker.to_string()),
        }
    }

    /// Workers of `role` that can share the load: the local pool and every remote worker that
    /// joined (at least 1, as a divisor).
    pub(super) fn pool_size(&self, role: Role) -> usize {
        let local = match role {
            Role::Rollout => self.local.0,
            Role::Reward => self.local.1,
        };
        (local + self.remote.joined(role)).max(1)
    }

    /// The remote workers the run waits for before its first step: (ready now, wanted, how
    /// long to wait for them).
    pub(super) fn awaited(&self) -> (usize, usize, Duration) {
        let (wanted, timeout) = self.remote.wait_for();
        (self.remote.ready_now(), wanted, timeout)
    }
}
