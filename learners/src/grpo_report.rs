//! What one GRPO learner step did ([`GrpoStepReport`]), as the learner logs it under `train/...`.

use crate::train_step::StepStats;

/// What one learner step did (also logged under `train/...`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GrpoStepReport {
    /// Learner step (1-based).
    pub step: u64,
    /// Loss, averaged over the updates.
    pub loss: f64,
    /// Clipped-surrogate part of the loss, averaged over the updates.
    pub pg_loss: f64,
    /// Token mean of the k3 KL to the reference over all updates (β > 0 only).
    pub kl: Option<f64>,
    /// Fraction of trained tokens where the lower clip binds, over all updates.
    pub clip_fraction_low: f64,
    /// Fraction of trained tokens where the upper clip binds, over all updates.
    pub clip_fraction_high: f64,
    /// Mean importance ratio ρ = exp(logp − logp_old) over trained tokens, over all updates.
    pub ratio_mean: f64,
    /// Largest importance ratio ρ over trained tokens, over all updates.
    pub ratio_max: f64,
    /// Mean per-token entropy of the policy before the update (when `log_entropy`).
    pub entropy: Option<f64>,
    /// Gradient norm before clipping, averaged over the updates that computed one.
    pub grad_norm: Option<f64>,
    /// Learning rate of the last update.
    pub learning_rate: f64,
    /// Mean reward over all completions of the batch.
    pub reward_mean: f64,
    /// Standard deviation of the rewards over the batch.
    pub reward_std: f64,
    /// Fraction of completions the checker accepted, when the batch carries verdicts.
    pub accuracy: Option<f64>,
    /// Mean completion length in tokens (tool output included).
    pub completion_length_mean: f64,
    /// Longest completion in tokens.
    pub completion_length_max: usize,
    /// Fraction of groups whose rewards are all equal.
    pub zero_variance_fraction: f64,
    /// Trained (non-padding, non-tool) completion tokens of the step.
    pub trained_tokens: usize,
    /// Updates skipped so far (non-finite loss or gradient, or nothing to train on).
    pub skipped_updates: u64,
    /// Mean |behaviour − learner| log-prob over trained tokens, before the first update.
    pub logprob_drift_mean: f64,
    /// Max |behaviour − learner| log-prob over trained tokens, before the first update.
    pub logprob_drift_max: f64,
    /// Largest `learner version − group version` in the batch.
    pub policy_lag_max: u64,
    /// Every optimiser update of the step, in order: pass by pass, mini-batch by mini-batch
    /// (empty when there was nothing to train on).
    pub updates: Vec<StepStats>,
}
