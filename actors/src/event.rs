//! What actors report to the coordinator: results of their work and their own lifecycle.
//!
//! Every report travels over one bounded crossbeam channel that the coordinator's loop drains;
//! each worker has at most one job in flight, so the channel's capacity (a few per worker) is
//! never the bottleneck, and it gives back-pressure if the coordinator stalls.

use std::time::Duration;

use mathrl::types::Group;
use mathrl_rewards::RewardOutput;
use serde::{Deserialize, Serialize};

/// The kind of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Generates groups of completions.
    Rollout,
    /// Scores completions.
    Reward,
}

impl Role {
    /// `rollout` or `reward`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Rollout => "rollout",
            Role::Reward => "reward",
        }
    }
}

/// Where a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// An actor of this process, under a pool supervisor.
    Local,
    /// A `mathrl worker` process that joined over the network (see [`crate::cluster`]).
    Remote,
}

/// A worker: its role, where it runs and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    /// Its pool.
    pub role: Role,
    /// Its index in the pool (kept across restarts), or in the order remote workers joined.
    pub index: usize,
    /// In this process or remote.
    pub place: Place,
}

impl WorkerId {
    /// The local actor `index` of the `role` pool.
    pub fn local(role: Role, index: usize) -> Self {
        Self {
            role,
            index,
            place: Place::Local,
        }
    }

    /// The `index`-th remote worker of `role` to join.
    pub fn remote(role: Role, index: usize) -> Self {
        Self {
            role,
            index,
            place: Place::Remote,
        }
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.place {
            Place::Local => write!(f, "{}-{}", self.role.as_str(), self.index),
            Place::Remote => write!(f, "remote-{}-{}", self.role.as_str(), self.index),
        }
    }
}

/// A generated group with what the coordinator checks and measures.
#[derive(Debug, Clone)]
pub struct RolloutResult {
    /// The group, stamped with the policy version that generated it.
    pub group: Group,
    /// Checksum of the weights the engine held while generating.
    pub weights_checksum: u64,
    /// Wall time of the generation.
    pub busy: Duration,
}

/// A report to the coordinator.
#[derive(Debug)]
pub enum Event {
    /// A rollout job finished (or failed without crashing its actor).
    Rollout {
        /// Who ran it.
        worker: WorkerId,
        /// Which job.
        job_id: u64,
        /// The group, or why there is none.
        result: Result<RolloutResult, String>,
    },
    /// A reward job finished (or its reward function returned an error).
    Reward {
        /// Who ran it.
        worker: WorkerId,
        /// Which job.
        job_id: u64,
        /// One output per item of the job, or why there are none.
        result: Result<Vec<RewardOutput>, String>,
        /// Wall time of the scoring.
        busy: Duration,
    },
    /// A remote worker's result failed the coordinator's checks ([`crate::cluster::validate`]):
    /// the job failed and the worker is at fault.
    Rejected {
        /// Who sent it.
        worker: WorkerId,
        /// Which job.
        job_id: u64,
        /// What was wrong with it (naming the completion and token at fault).
        reason: String,
    },
    /// A worker stopped (panic, kill after a deadline, a remote worker's disconnect); its job
    /// is lost.
    WorkerDown {
        /// Which worker.
        worker: WorkerId,
        /// Why, as its supervisor saw it.
        reason: String,
    },
    /// A worker (re)started and is ready for work.
    WorkerUp {
        /// Which worker.
        worker: WorkerId,
    },
}
