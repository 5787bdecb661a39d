//! `GrpoLearner`: one GRPO step per batch of scored groups, as in the Qwen2.5-Math report.
//!
//! [`GrpoLearner::step`] reads top to bottom: group advantages over the whole step → mini-batches
//! of whole groups ([`crate::mini_batch`]), each cut into micro-batches of padded
//! `[prompt | completion]` rows (or, with `pack_groups`, of packed groups) → μ epochs over the
//! mini-batches, each mini-batch one guarded AdamW update from its micro-batches' accumulated
//! gradients (peak memory follows the micro-batch, not the mini-batch: micro-batches are bounded
//! in rows and in padded tokens, and with `gradient_checkpointing` the decoder layers'
//! activations are recomputed in the backward pass) → metrics. A step makes μ × (mini-batches) updates; by default one mini-batch is the step.
//!
//! What it does not do, and why:
//! - No value network: advantages are group-relative (that is GRPO).
//! - With μ = 1 and one mini-batch (the default) the old policy is the current one, so ρ = 1
//!   exactly and clipping never binds. Otherwise the old log-probs are the learner's own before
//!   the step's first update: the first mini-batch's from its first forward pass, the others' from
//!   one forward pass without gradient before that update (as verl computes `old_log_prob`).
//!   [`OldLogprobs::Behaviour`] uses the sampler's instead, for stale groups.
//! - The reference model is loaded (a frozen copy of the initial policy) only when β > 0.
//! - Completions with no trainable token (empty, or all tool output) are dropped before padding.
//! - Tool-output tokens (TIR) are context: they are in the rows but masked out of the loss.

use candle_core::Tensor;
use mathrl::model::{loss_and_gradients, token_logprobs, Activations, LogprobOptions};
use mathrl::{Metrics, Policy};

use crate::checkpoint::{CheckpointConfig, RunState};
use crate::entropy::entropy_of_hidden;
use crate::grpo_batch::{micro_batches, packed_micro_batches, MicroBatch, Row};
pub use crate::grpo_config::{GrpoConfig, OldLogprobs};
pub use crate::grpo_report::GrpoStepReport;
use crate::learner_core::LearnerCore;
use crate::mini_batch::mini_batch_ranges;
use crate::optim::AdamW;
use crate::policy_loss::{grpo_loss, PolicyLossInputs, PolicyLossMetrics, StepNormaliser};
use crate::rollout::{policy_lag, RolloutBatch};
use crate::{Error, Result};

/// The GRPO learner: the policy with its optimiser (the [`LearnerCore`]) and, when β > 0, the
/// frozen reference.
pub struct GrpoLearner {
    core: LearnerCore<Policy>,
    reference: Option<Policy>,
    config: GrpoConfig,
    metrics: Metrics,
    zero_variance_groups: u64,
    groups_seen: u64,
    steps_without_tokens: u64,
}

impl GrpoLearner {
    /// A learner for `policy` (loaded trainable). When β > 0 the reference is `reference`, or a
    /// frozen copy of `policy` as it is now; when β = 0 no reference is kept or made.
    pub fn new(
        policy: Policy,
        reference: Option<Policy>,
        config: GrpoConfig,
        metrics: Metrics,
    ) -> Result<Self> {
        config.validate()?;
        let core = LearnerCore::new(LEARNER_NAME, policy, config.optimizer, config.train_step)?;
        let reference = match (config.loss.beta > 0.0, reference) {
            (false, _) => None,
            (true, Some(r)) => Some(r),
            (true, None) => Some(core.model().frozen_copy()?),
        };
        Ok(Self {
            core,
            reference,
            config,
            metrics,
            zero_variance_groups: 0,
            groups_seen: 0,
            steps_without_tokens: 0,
        })
    }

    /// The policy being trained (its weights change in place with each update).
    pub fn policy(&self) -> &Policy {
        self.core.model()
    }

    /// The trained weights in f32 by name: the optimiser's master copies (see
    /// [`crate::optim::AdamW::master_weights`]), the policy's own weights when it computes in f32.
    pub fn master_weights(&self) -> Result<Vec<(String, Tensor)>> {
        self.core.optimizer().master_weights()
    }

    /// The frozen reference, present only when β > 0.
    pub fn reference(&self) -> Option<&Policy> {
        self.reference.as_ref()
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &AdamW {
        self.core.optimizer()
    }

    /// The settings.
    pub fn config(&self) -> &GrpoConfig {
        &self.config
    }

    /// Learner steps completed.
    pub fn step_count(&self) -> u64 {
        self.core.step_count()
    }

    /// An error once too many updates in a row were skipped (see
    /// [`crate::TrainStepConfig::max_consecutive_skips`]); callers checkpoint, then stop.
    pub fn check_diverged(&self) -> Result<()> {
        self.core.check_diverged()
    }

    /// Version of the policy weights: learner steps completed (rollout actors tag their groups
    /// with the version they sampled from; see [`LearnerCore`]).
    pub fn policy_version(&self) -> u64 {
        self.core.policy_version()
    }

    /// One GRPO step on `batch`.
    pub fn step(&mut self, batch: RolloutBatch) -> Result<GrpoStepReport> {
        batch.validate(self.policy().config().vocab_size)?;
        // The lag is measured against the weights this step starts from.
        let version = self.core.policy_version();
        let step = self.core.advance_step();
        let mut report = self.batch_statistics(&batch, step, version);

        // 1. Group-relative advantages over the whole step; zero-variance groups counted and
        //    optionally dropped.
        let (rows, group_rows) = self.rows_with_advantages(&batch, &mut report)?;
        self.log_distributions(&batch, &rows, step);

        // 2. Mini-batches of whole groups (one update each), each cut into padded micro-batches
        //    bounded in rows and tokens, with its own loss normaliser (each update is a complete
        //    loss).
        let mini_batches = self.mini_batches(rows, &group_rows)?;
        if mini_batches.is_empty() {
            self.steps_without_tokens += 1;
            report.skipped_updates = self.skipped_updates();
            self.log(&report);
            return Ok(report);
        }
        let normalisers = mini_batches
            .iter()
            .map(|mini| {
                let masks: Vec<&Tensor> = mini.iter().map(|m| &m.completion_mask).collect();
                StepNormaliser::from_masks(&masks)
            })
            .collect::<Result<Vec<_>>>()?;
        report.trained_tokens = normalisers
            .iter()
            .map(|n| n.step_active_tokens as usize)
            .sum();

        // 3. Reference log-probs, once per step (they do not change between updates).
        let reference = mini_batches
            .iter()
            .map(|mini| {
                mini.iter()
                    .map(|mb| match &self.reference {
                        Some(r) => self
                            .completion_logprobs(r, mb)
                            .map(|out| Some(out.logprobs.detach())),
                        None => Ok(None),
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;

        // 4. The policy's log-probs before the step's first update: the first mini-batch's come
        //    from its first forward pass below; the later mini-batches' need a forward pass now,
        //    before that update changes the weights (their π_old, drift and entropy).
        let mut sums = PassSums::default();
        let mut before_step: Vec<Vec<Tensor>> = Vec::with_capacity(mini_batches.len());
        before_step.push(Vec::with_capacity(mini_batches[0].len()));
        for mini in &mini_batches[1..] {
            let mut logprobs = Vec::with_capacity(mini.len());
            for mb in mini {
                let out = self.completion_logprobs(self.policy(), mb)?;
                sums.add_first_pass(self.first_pass_statistics(mb, &out)?);
                logprobs.push(out.logprobs.detach());
            }
            before_step.push(logprobs);
        }

        // 5. μ passes over the mini-batches, each mini-batch one optimiser update from the summed
        //    gradients of its micro-batches.
        let loss_config = self.config.effective_loss();
        let activations = Activations::recomputed_if(self.config.gradient_checkpointing);
        for pass in 0..self.config.num_iterations {
            for (j, mini) in mini_batches.iter().enumerate() {
                let mut grads = self.core.gradients();
                for (k, mb) in mini.iter().enumerate() {
                    let policy = self.core.model();
                    let backbone = policy.model().backbone();
                    let (input_ids, positions, mask) = mb.forward_inputs(backbone)?;
                    let mut metrics = None;
                    let first_update = pass == 0 && j == 0;
                    // The policy's log-probs and loss from the final hidden states (with
                    // recomputation the forward and backward through the layers run around it).
                    let loss_of_hidden = |hidden: &Tensor| -> Result<Tensor> {
                        let out = self.completion_logprobs_of_hidden(policy, hidden, mb)?;
                        if first_update {
                            sums.add_first_pass(self.first_pass_statistics(mb, &out)?);
                            before_step[0].push(out.logprobs.detach());
                        }
                        let old = match self.config.old_logprobs {
                            OldLogprobs::Behaviour => Some(&mb.behaviour),
                            // The weights are still the step's own: ρ = 1 without a copy.
                            OldLogprobs::Recompute if first_update => None,
                            OldLogprobs::Recompute => Some(&before_step[j][k]),
                        };
                        let out = grpo_loss(
                            &loss_config,
                            &PolicyLossInputs {
                                logprobs: &out.logprobs,
                                old_logprobs: old,
                                ref_logprobs: reference[j][k].as_ref(),
                                advantages: &mb.advantages,
                                completion_mask: &mb.completion_mask,
                            },
                            &normalisers[j],
                        )?;
                        metrics = Some(out.metrics);
                        Ok(out.loss)
                    };
                    let out = loss_and_gradients(
                        backbone,
                        &input_ids,
                        &positions,
                        &mask,
                        activations,
                        loss_of_hidden,
                    )?;
                    grads.add(out.loss, out.grads)?;
                    sums.add_loss_metrics(&metrics.expect("the loss closure ran"));
                }
                let update = self.core.apply(grads)?;
                report.updates.push(update);
            }
        }

        // 6. Metrics.
        sums.finish(&mut report);
        report.learning_rate = report.updates.last().map_or(0.0, |u| u.lr);
        report.skipped_updates = self.skipped_updates();
        self.log(&report);
        Ok(report)
    }

    /// Per-token log-probs `[n, C]` of the completion tokens under `model` at the sampling
    /// temperature, their entropies where the fused CPU pass gave them, and the final hidden
    /// states `[n, C, d]` that predicted them.
    fn completion_logprobs(&self, model: &Policy, mb: &MicroBatch) -> Result<CompletionLogprobs> {
        let backbone = model.model().backbone();
        let (input_ids, positions, mask) = mb.forward_inputs(backbone)?;
        let hidden = backbone.forward_with(&input_ids, &positions, &mask, None)?;
        self.completion_logprobs_of_hidden(model, &hidden, mb)
    }

    /// [`Self::completion_logprobs`] from the final hidden states of the forward pass over
    /// [`MicroBatch::forward_inputs`].
    fn completion_logprobs_of_hidden(
        &self,
        model: &Policy,
        hidden: &Tensor,
        mb: &MicroBatch,
    ) -> Result<CompletionLogprobs> {
        let (p, c) = (mb.prompt_width, mb.completion_width);
        let hidden = mb.completion_hidden(hidden)?;
        let out = token_logprobs(
            model.model(),
            &hidden,
            &mb.input_ids.narrow(1, p - 1, c + 1)?,
            LogprobOptions {
                temperature: self.config.rollout.temperature,
                chunk_positions: self.config.logprob_chunk_positions,
            },
        )?;
        Ok(CompletionLogprobs {
            logprobs: out.logprobs,
            entropy: out.entropy,
            hidden: hidden.narrow(1, 0, c)?,
        })
    }

    /// Log-prob drift and entropy of one micro-batch before any update of this step.
    fn first_pass_statistics(
        &self,
        mb: &MicroBatch,
        out: &CompletionLogprobs,
    ) -> Result<FirstPass> {
        let (n, c, d) = out.hidden.dims3()?;
        let diff = ((out.logprobs.detach() - &mb.behaviour)?.abs()? * &mb.completion_mask)?;
        let tokens = mb.trained_positions.dim(0)?;
        let entropy_sum = if self.config.log_entropy && tokens > 0 {
            let entropy = match &out.entropy {
                Some(e) => e.flatten_all()?.index_select(&mb.trained_positions, 0)?,
                None => entropy_of_hidden(
                    self.policy().model(),
                    &out.hidden
                        .detach()
                        .reshape((n * c, d))?
                        .index_select(&mb.trained_positions, 0)?,
                    self.config.rollout.temperature,
                    self.config.logprob_chunk_positions,
                )?,
            };
            Some(entropy.sum_all()?.to_scalar::<f32>()? as f64)
        } else {
            None
        };
        Ok(FirstPass {
            drift_sum: diff.sum_all()?.to_scalar::<f32>()? as f64,
            drift_max: diff
                .max_keepdim(1)?
                .max(0)?
                .squeeze(0)?
                .to_scalar::<f32>()? as f64,
            entropy_sum,
            tokens,
        })
    }

    /// Rewards, accuracy, lengths and policy lag (behind `version`) of the whole batch, before
    /// any filtering.
    fn batch_statistics(&self, batch: &RolloutBatch, step: u64, version: u64) -> GrpoStepReport {
        let rewards: Vec<f64> = batch
            .groups
            .iter()
            .flat_map(|g| g.rewards.iter().map(|&r| r as f64))
            .collect();
        let n = rewards.len().max(1) as f64;
        let mean = rewards.iter().sum::<f64>() / n;
        let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        let verdicts: Vec<bool> = batch
            .groups
            .iter()
            .filter_map(|g| g.verdicts.as_ref())
            .flatten()
            .copied()
            .collect();
        let lengths: Vec<usize> = batch
            .groups
            .iter()
            .flat_map(|g| g.group.completions.iter().map(|c| c.token_ids.len()))
            .collect();
        GrpoStepReport {
            step,
            reward_mean: mean,
            reward_std: var.sqrt(),
            accuracy: (!verdicts.is_empty())
                .then(|| verdicts.iter().filter(|&&v| v).count() as f64 / verdicts.len() as f64),
            completion_length_mean: lengths.iter().sum::<usize>() as f64
                / lengths.len().max(1) as f64,
            completion_length_max: lengths.iter().copied().max().unwrap_or(0),
            policy_lag_max: batch
                .groups
                .iter()
                .map(|g| policy_lag(&g.group, version))
                .max()
                .unwrap_or(0),
            ..GrpoStepReport::default()
        }
    }

    /// Advantages per group, then one [`Row`] per completion that has a trained token, group by
    /// group, with the number of rows of each group kept.
    fn rows_with_advantages<'a>(
        &mut self,
        batch: &'a RolloutBatch,
        report: &mut GrpoStepReport,
    ) -> Result<(Vec<Row<'a>>, Vec<usize>)> {
        let mut rows = Vec::with_capacity(batch.num_completions());
        let mut group_rows = Vec::with_capacity(batch.groups.len());
        let mut zero_variance = 0usize;
        for (g, scored) in batch.groups.iter().enumerate() {
            let (advantages, zero) = self
                .config
                .advantage
                .group(&scored.rewards)
                .map_err(|e| Error::Input(format!("rollout group {g}: {e}")))?;
            zero_variance += usize::from(zero);
            if zero && self.config.filter_zero_variance_groups {
                continue;
            }
            let group = &scored.group;
            let first_row = rows.len();
            for (completion, advantage) in group.completions.iter().zip(advantages) {
                let trained: Vec<bool> = completion.tool_mask.iter().map(|&t| !t).collect();
                if !trained.contains(&true) {
                    continue;
                }
                rows.push(Row {
                    group: g,
                    prompt: &group.prompt_ids,
                    completion: &completion.token_ids,
                    behaviour: completion
                        .logprobs
                        .iter()
                        .map(|lp| lp.unwrap_or(0.0))
                        .collect(),
                    trained,
                    advantage,
                });
            }
            group_rows.push(rows.len() - first_row);
        }
        self.zero_variance_groups += zero_variance as u64;
        self.groups_seen += batch.groups.len() as u64;
        report.zero_variance_fraction = zero_variance as f64 / batch.groups.len().max(1) as f64;
        Ok((rows, group_rows))
    }

    /// The step's rows as mini-batches of whole groups (see [`crate::mini_batch`]), each as
    /// padded micro-batches.
    fn mini_batches(&self, rows: Vec<Row>, group_rows: &[usize]) -> Result<Vec<Vec<MicroBatch>>> {
        let ranges = mini_batch_ranges(group_rows, self.config.mini_batch_size);
        let mut rows = rows.into_iter();
        ranges
            .into_iter()
            .map(|range| {
                let cut = if self.config.pack_groups {
                    packed_micro_batches
                } else {
                    micro_batches
                };
                cut(
                    rows.by_ref().take(range.len()).collect(),
                    self.config.micro_batch_size,
                    self.config.micro_batch_tokens,
                    self.policy().device(),
                )
            })
            .collect()
    }

    fn skipped_updates(&self) -> u64 {
        self.core.skipped_steps() + self.steps_without_tokens
    }

    /// Histograms of the step's rewards (every completion) and of the advantages the loss
    /// sees (the rows kept for training): a mean hides a bimodal reward or a collapsed spread.
    fn log_distributions(&self, batch: &RolloutBatch, rows: &[Row<'_>], step: u64) {
        let rewards: Vec<f64> = batch
            .groups
            .iter()
            .flat_map(|g| g.rewards.iter().map(|&r| f64::from(r)))
            .collect();
        self.metrics.histogram("train/rewards", step, &rewards);
        let advantages: Vec<f64> = rows.iter().map(|r| f64::from(r.advantage)).collect();
        self.metrics
            .histogram("train/advantages", step, &advantages);
    }

    fn log(&self, r: &GrpoStepReport) {
        let mut scalars = vec![
            ("train/reward_mean", r.reward_mean),
            ("train/reward_std", r.reward_std),
            ("train/completion_length_mean", r.completion_length_mean),
            (
                "train/completion_length_max",
                r.completion_length_max as f64,
            ),
            ("train/zero_variance_fraction", r.zero_variance_fraction),
            ("train/skipped_updates", r.skipped_updates as f64),
            ("train/policy_lag_max", r.policy_lag_max as f64),
        ];
        if let Some(a) = r.accuracy {
            scalars.push(("train/accuracy", a));
        }
        if !r.updates.is_empty() {
            scalars.extend([
                ("train/loss", r.loss),
                ("train/pg_loss", r.pg_loss),
                ("train/clip_fraction_low", r.clip_fraction_low),
                ("train/clip_fraction_high", r.clip_fraction_high),
                ("train/ratio_mean", r.ratio_mean),
                ("train/ratio_max", r.ratio_max),
                ("train/learning_rate", r.learning_rate),
                ("train/trained_tokens", r.trained_tokens as f64),
                ("train/logprob_drift_mean", r.logprob_drift_mean),
                ("train/logprob_drift_max", r.logprob_drift_max),
            ]);
            for (tag, value) in [
                ("train/kl", r.kl),
                ("train/entropy", r.entropy),
                ("train/grad_norm", r.grad_norm),
            ] {
                if let Some(v) = value {
                    scalars.push((tag, v));
                }
            }
        }
        self.metrics.scalars(r.step, &scalars);
    }

    /// Writes a checkpoint of the current step (policy weights, optimiser, counters, `run`).
    pub fn save_checkpoint(
        &self,
        config: &CheckpointConfig,
        run: &RunState,
    ) -> Result<std::path::PathBuf> {
        self.core.save_checkpoint(
            config,
            &self.config,
            &[
                (ZERO_VARIANCE_GROUPS, self.zero_variance_groups),
                (GROUPS_SEEN, self.groups_seen),
                (STEPS_WITHOUT_TOKENS, self.steps_without_tokens),
            ],
            run,
        )
    }

    /// Restores the checkpoint in `dir` (weights, optimiser, step and counters) and returns the
    /// caller's [`RunState`].
    pub fn restore(&mut self, dir: impl AsRef<std::path::Path>) -> Result<RunState> {
        let restored = self.core.restore(dir)?;
        self.zero_variance_groups = restored.counter(ZERO_VARIANCE_GROUPS);
        self.groups_seen = restored.counter(GROUPS_SEEN);
        self.steps_without_tokens = restored.counter(STEPS_WITHOUT_TOKENS);
        Ok(restored.run)
    }
}

/// The `learner` name in checkpoints written by [`GrpoLearner`].
const LEARNER_NAME: &str = "grpo";
/// Checkpoint counters of the learner's running totals.
const ZERO_VARIANCE_GROUPS: &str = "zero_variance_groups";
const GROUPS_SEEN: &str = "groups_seen";
const STEPS_WITHOUT_TOKENS: &str = "steps_without_tokens";

/// The policy's view of one micro-batch's completion tokens.
struct CompletionLogprobs {
    /// Log-probs `[n, C]`, differentiable.
    logprobs: Tensor,
    /// Entropies `[n, C]` when the log-prob pass computed them (on the CPU).
    entropy: Option<Tensor>,
    /// Final hidden states `[n, C, d]` that predicted the tokens.
    hidden: Tensor,
}

/// Drift and entropy of one micro-batch before the step's first update.
struct FirstPass {
    drift_sum: f64,
    drift_max: f64,
    entropy_sum: Option<f64>,
    tokens: usize,
}

/// Running sums of the step's metrics over micro-batches and updates.
#[derive(Default)]
struct PassSums {
    loss_terms: usize,
    pg_loss: f64,
    kl_weighted: Option<f64>,
    clip_low_weighted: f64,
    clip_high_weighted: f64,
    ratio_weighted: f64,
    ratio_max: f64,
    tokens: f64,
    drift_sum: f64,
    drift_max: f64,
    drift_tokens: usize,
    entropy_sum: Option<f64>,
}

impl PassSums {
    fn add_first_pass(&mut self, f: FirstPass) {
        self.drift_sum += f.drift_sum;
        self.drift_max = self.drift_max.max(f.drift_max);
        self.drift_tokens += f.tokens;
        if let Some(e) = f.entropy_sum {
            *self.entropy_sum.get_or_insert(0.0) += e;
        }
    }

    fn add_loss_metrics(&mut self, m: &PolicyLossMetrics) {
        let w = m.active_tokens as f64;
        self.loss_terms += 1;
        self.pg_loss += m.pg_loss;
        if let Some(kl) = m.kl_mean {
            *self.kl_weighted.get_or_insert(0.0) += kl * w;
        }
        self.clip_low_weighted += m.clip_fraction_low * w;
        self.clip_high_weighted += m.clip_fraction_high * w;
        self.ratio_weighted += m.ratio_mean * w;
        self.ratio_max = self.ratio_max.max(m.ratio_max);
        self.tokens += w;
    }

    fn finish(&self, r: &mut GrpoStepReport) {
        let updates = r.updates.len().max(1) as f64;
        let tokens = self.tokens.max(1.0);
        r.loss = r.updates.iter().map(|u| u.loss).sum::<f64>() / updates;
        r.pg_loss = self.pg_loss / updates;
        r.kl = self.kl_weighted.map(|k| k / tokens);
        r.clip_fraction_low = self.clip_low_weighted / tokens;
        r.clip_fraction_high = self.clip_high_weighted / tokens;
        r.ratio_mean = self.ratio_weighted / tokens;
        r.ratio_max = self.ratio_max;
        let drift_tokens = self.drift_tokens.max(1) as f64;
        r.logprob_drift_mean = self.drift_sum / drift_tokens;
        r.logprob_drift_max = self.drift_max;
        r.entropy = self.entropy_sum.map(|e| e / drift_tokens);
        let norms: Vec<f64> = r.updates.iter().filter_map(|u| u.grad_norm).collect();
        r.grad_norm = (!norms.is_empty()).then(|| norms.iter().sum::<f64>() / norms.len() as f64);
    }
}
