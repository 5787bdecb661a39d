//! What a user watching a GRPO run sees of each step: a [`StepSummary`] handed to the run's
//! [`StepObserver`] (the recipes draw it as a progress bar or a line), next to the metrics.

use mathrl_learners::GrpoStepReport;

/// One trained step in the figures a person reads during a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSummary {
    /// The learner step just trained (1-based, counting steps before a resume).
    pub step: u64,
    /// The run's last step.
    pub max_steps: u64,
    /// Mean reward of the step's completions.
    pub reward_mean: f64,
    /// Fraction of completions the checker accepted, when the reward has a checker.
    pub accuracy: Option<f64>,
    /// Token mean of the KL to the reference (β > 0 only).
    pub kl: Option<f64>,
    /// Mean completion length in tokens.
    pub completion_length_mean: f64,
    /// Sampled tokens per second of the step's rollouts.
    pub tokens_per_second: f64,
    /// Wall time of the step, sampling to publication.
    pub step_seconds: f64,
    /// Updates skipped so far for a non-finite loss or gradient.
    pub skipped_updates: u64,
}

impl StepSummary {
    /// The summary of `report`, the learner's report of `step`, with the step's timings.
    pub fn new(
        report: &GrpoStepReport,
        max_steps: u64,
        tokens_per_second: f64,
        step_seconds: f64,
    ) -> Self {
        Self {
            step: report.step,
            max_steps,
            reward_mean: report.reward_mean,
            accuracy: report.accuracy,
            kl: report.kl,
            completion_length_mean: report.completion_length_mean,
            tokens_per_second,
            step_seconds,
            skipped_updates: report.skipped_updates,
        }
    }
}

/// Told of every trained step (on the thread that runs [`crate::Trainer::run`]).
pub type StepObserver = Box<dyn FnMut(&StepSummary) + Send>;

/// Shown the policy before the first step and after every `every`-th trained step, with the
/// step: the frozen copy the
/// learner published for the rollouts, never the learner's own weights (evaluation during RL).
/// It runs on the coordinator thread while training waits, so it sees each version exactly once
/// and cannot touch what the run computes.
pub type PolicyObserver = Box<dyn FnMut(u64, &mathrl::Policy) + Send>;

/// A [`PolicyObserver`] and how often it is called (in trained steps; 0 = never).
pub struct PolicyWatch {
    /// Called after steps that are multiples of this (and before the first step).
    pub every: u64,
    /// The observer.
    pub observer: PolicyObserver,
}

impl PolicyWatch {
    /// Whether the observer is due after `step`.
    pub fn due(&self, step: u64) -> bool {
        self.every > 0 && step.is_multiple_of(self.every)
    }
}
