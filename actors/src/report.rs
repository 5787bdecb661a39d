//! What a run reports: steps done, the final policy, who produced what, and every fault.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Tensor;
use mathrl::Policy;
use mathrl_learners::GrpoStepReport;
use serde::Serialize;

use crate::event::Role;

/// One group as it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRecord {
    /// The prompt's id.
    pub prompt_id: String,
    /// Version of the weights that generated it.
    pub policy_version: u64,
    /// The rollout worker that generated it (`rollout-0`, ...).
    pub worker: String,
    /// The rewards of its completions.
    pub rewards: Vec<f32>,
}

/// A completion that could not be scored within `max_attempts` and was scored 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnscoredCompletion {
    /// Learner step.
    pub step: u64,
    /// The prompt's id.
    pub prompt_id: String,
    /// Index of the completion in its group.
    pub completion: usize,
    /// Attempts made alone (after the batch it was in failed).
    pub attempts: usize,
    /// The last failure.
    pub reason: String,
}

/// One learner step of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Learner step (1-based; continues across a resume).
    pub step: u64,
    /// Its groups, in the order the prompts were drawn.
    pub groups: Vec<GroupRecord>,
    /// Completions scored 0 after repeated failures.
    pub unscored: Vec<UnscoredCompletion>,
    /// The learner's report.
    pub learner: GrpoStepReport,
}

/// What the coordinator counts while it runs.
#[derive(Debug, Default)]
pub struct RunTally {
    /// Learner steps done in total (including those before a resume).
    pub steps: u64,
    /// Steps already done when this run started (0 unless resumed).
    pub resumed_from_step: u64,
    /// Groups generated per rollout worker.
    pub groups_by_worker: BTreeMap<String, u64>,
    /// Failed jobs.
    pub failures: u64,
    /// Worker restarts.
    pub restarts: u64,
    /// Remote workers that disconnected during the run.
    pub disconnects: u64,
    /// Groups dropped for lagging more than `max_policy_lag`.
    pub dropped_stale_groups: u64,
    /// Remote results that failed the coordinator's checks (also counted in `failures`).
    pub rejected_results: u64,
    /// Remote workers dropped after `max_attempts` rejected results, by name.
    pub dropped_workers: Vec<String>,
    /// Whether a stop request ended the run.
    pub stopped_early: bool,
    /// Whether `max_train_seconds` ended the run.
    pub time_limit_reached: bool,
    /// Checkpoints written.
    pub checkpoints: Vec<PathBuf>,
    /// Seconds the rollout actors spent generating.
    pub rollout_busy_seconds: f64,
    /// Every step.
    pub step_records: Vec<StepRecord>,
}

impl RunTally {
    /// Completions scored 0 after repeated failures, over the recorded steps.
    pub fn unscored_total(&self) -> usize {
        self.step_records.iter().map(|s| s.unscored.len()).sum()
    }
}

/// The outcome of [`crate::Trainer::run`].
pub struct TrainReport {
    /// Learner steps done in total (including those before a resume).
    pub steps: u64,
    /// Steps already done when this run started (0 unless resumed).
    pub resumed_from_step: u64,
    /// The final weights.
    pub policy: Policy,
    /// The final weights in f32 by name: the optimiser's masters, which a bf16 policy rounds
    /// (save with [`Policy::save_with_masters`] to keep them).
    pub master_weights: Vec<(String, Tensor)>,
    /// Groups accepted per rollout worker (`rollout-0` → n); dropped stale groups not included.
    pub groups_by_worker: BTreeMap<String, u64>,
    /// Failed jobs: errors, panics, missed deadlines, lost workers.
    pub failures: u64,
    /// Worker restarts by the supervisors.
    pub restarts: u64,
    /// Remote workers that disconnected during the run (their jobs were re-issued).
    pub disconnects: u64,
    /// Remote workers that joined: name and role.
    pub remote_workers: Vec<(String, Role)>,
    /// Groups dropped because their weights lagged more than `max_policy_lag`.
    pub dropped_stale_groups: u64,
    /// Remote results that failed the coordinator's checks (also counted in `failures`).
    pub rejected_results: u64,
    /// Remote workers dropped after `max_attempts` rejected results, by name.
    pub dropped_workers: Vec<String>,
    /// Completions scored 0 after `max_attempts` failures (reasons in `step_records`).
    pub unscored: u64,
    /// Whether a stop request ended the run before `max_steps`.
    pub stopped_early: bool,
    /// Whether `max_train_seconds` ended the run before `max_steps`.
    pub time_limit_reached: bool,
    /// Checkpoints written by this run.
    pub checkpoints: Vec<PathBuf>,
    /// Seconds the rollout actors spent generating (summed over actors).
    pub rollout_busy_seconds: f64,
    /// Wall-clock seconds of the run (actors started to the last step).
    pub wall_seconds: f64,
    /// Every step of this run.
    pub step_records: Vec<StepRecord>,
}

// By hand: `Policy` has no `Debug` (its weights are not worth printing).
impl std::fmt::Debug for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainReport")
            .field("steps", &self.steps)
            .field("resumed_from_step", &self.resumed_from_step)
            .field("groups_by_worker", &self.groups_by_worker)
            .field("failures", &self.failures)
            .field("restarts", &self.restarts)
            .field("disconnects", &self.disconnects)
            .field("remote_workers", &self.remote_workers)
            .field("dropped_stale_groups", &self.dropped_stale_groups)
            .field("rejected_results", &self.rejected_results)
            .field("dropped_workers", &self.dropped_workers)
            .field("unscored", &self.unscored)
            .field("stopped_early", &self.stopped_early)
            .field("time_limit_reached", &self.time_limit_reached)
            .field("checkpoints", &self.checkpoints)
            .field("wall_seconds", &self.wall_seconds)
            .finish_non_exhaustive()
    }
}

impl TrainReport {
    /// The report of a finished run.
    pub fn new(
        tally: RunTally,
        policy: Policy,
        master_weights: Vec<(String, Tensor)>,
        wall_seconds: f64,
    ) -> Self {
        Self {
            steps: tally.steps,
            resumed_from_step: tally.resumed_from_step,
            policy,
            master_weights,
            unscored: tally.unscored_total() as u64,
            groups_by_worker: tally.groups_by_worker,
            failures: tally.failures,
            restarts: tally.restarts,
            disconnects: tally.disconnects,
            remote_workers: Vec::new(),
            dropped_stale_groups: tally.dropped_stale_groups,
            rejected_results: tally.rejected_results,
            dropped_workers: tally.dropped_workers,
            stopped_early: tally.stopped_early,
            time_limit_reached: tally.time_limit_reached,
            checkpoints: tally.checkpoints,
            rollout_busy_seconds: tally.rollout_busy_seconds,
            wall_seconds,
            step_records: tally.step_records,
        }
    }

    /// Fraction of the run's wall time the rollout pool of `actors` actors was generating
    /// (count remote rollout workers in `actors` too: [`TrainReport::rollout_workers`]).
    pub fn rollout_busy_fraction(&self, actors: usize) -> f64 {
        self.rollout_busy_seconds / (self.wall_seconds * actors as f64).max(1e-9)
    }

    /// Rollout workers of the run: `local_actors` plus the remote rollout workers that joined.
    pub fn rollout_workers(&self, local_actors: usize) -> usize {
        local_actors
            + self
                .remote_workers
                .iter()
                .filter(|(_, role)| *role == Role::Rollout)
                .count()
    }
}
