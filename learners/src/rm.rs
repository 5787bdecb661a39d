//! `RmLearner`: trains the reward model with the Qwen2.5-Math listwise ranking loss — for each
//! query, the mean over its (positive, negative) response pairs of −log σ(r_pos − r_neg); a batch
//! averages its queries.
//!
//! [`RmLearner::step`] reads top to bottom: drop (and count) queries whose responses are all
//! correct or all wrong → micro-batches of queries → per micro-batch: rewards of every response,
//! ranking loss scaled by the micro-batch's share of the used queries, backward into the
//! accumulator → one guarded AdamW update → metrics (loss, pairwise accuracy, skipped queries).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mathrl::{Metrics, Tokenizer};
use mathrl_rewards::RewardModel;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointConfig, RunState};
use crate::learner_core::LearnerCore;
use crate::optim::AdamWConfig;
use crate::rm_loss::ranking_loss;
use crate::schedule::LrSchedule;
use crate::train_step::{StepStats, TrainStepConfig};
use crate::{Error, Result};

/// One query's sampled responses, each as the token ids of the whole (query, response)
/// conversation, with the checker's verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmQuery {
    /// Token ids of each (query, response) pair.
    pub sequences: Vec<Vec<u32>>,
    /// Whether each response's answer is correct.
    pub is_positive: Vec<bool>,
}

impl RmQuery {
    /// A query from text through the chat template (see [`RewardModel::pair_ids`]).
    pub fn from_text(
        tokenizer: &Tokenizer,
        question: &str,
        responses: &[(&str, bool)],
    ) -> Result<Self> {
        let sequences = responses
            .iter()
            .map(|(r, _)| RewardModel::pair_ids(tokenizer, question, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sequences,
            is_positive: responses.iter().map(|&(_, p)| p).collect(),
        })
    }

    /// Whether the query has both a positive and a negative response (else it gives no pair).
    pub fn has_pairs(&self) -> bool {
        self.is_positive.contains(&true) && self.is_positive.contains(&false)
    }
}

/// Settings of the RM learner. The report does not state its RM optimiser settings; these are
/// conservative fine-tuning defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmConfig {
    /// AdamW moments and weight decay; its `lr` is overridden by `train_step.schedule`.
    pub optimizer: AdamWConfig,
    /// Learning-rate schedule (constant 5e-6) and gradient clipping at 1.
    pub train_step: TrainStepConfig,
    /// Queries per forward/backward pass (all responses of a query go through together).
    pub micro_batch_queries: usize,
}

impl Default for RmConfig {
    fn default() -> Self {
        Self {
            optimizer: AdamWConfig {
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
            train_step: TrainStepConfig {
                schedule: LrSchedule::constant(5e-6),
                max_grad_norm: Some(1.0),
                ..TrainStepConfig::default()
            },
            micro_batch_queries: 2,
        }
    }
}

/// Loss and accuracy over a set of queries.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RmEval {
    /// Mean over used queries of their ranking loss; `None` when no query had a pair.
    pub loss: Option<f64>,
    /// Fraction of (pos, neg) pairs ranked correctly; `None` without pairs.
    pub pairwise_accuracy: Option<f64>,
    /// Number of (pos, neg) pairs.
    pub pairs: usize,
    /// Queries with both a positive and a negative response.
    pub used_queries: usize,
    /// Queries skipped because all their responses were positive or all negative.
    pub skipped_queries: usize,
}

/// What one RM step did (also logged under `train/...`).
#[derive(Debug, Clone, PartialEq)]
pub struct RmStepReport {
    /// Learner step (1-based).
    pub step: u64,
    /// Loss and accuracy of the batch, before the update.
    pub eval: RmEval,
    /// The optimiser step; `None` when every query was skipped.
    pub update: Option<StepStats>,
}

/// The RM learner: the reward model and its optimiser (the [`LearnerCore`]).
pub struct RmLearner {
    core: LearnerCore<RewardModel>,
    config: RmConfig,
    metrics: Metrics,
    skipped_queries: u64,
}

/// The `learner` name in checkpoints written by [`RmLearner`].
const LEARNER_NAME: &str = "rm";
/// The checkpoint counter of queries skipped for want of a (positive, negative) pair.
const SKIPPED_QUERIES: &str = "skipped_queries";

impl RmConfig {
    /// Checks every setting (callers check before loading a model; [`RmLearner::new`] again).
    pub fn validate(&self) -> Result<()> {
        if self.micro_batch_queries == 0 {
            return Err(Error::Config {
                field: "micro_batch_queries",
                message: "must be >= 1".into(),
            });
        }
        self.optimizer.validate()?;
        self.train_step.validate()
    }
}

impl RmLearner {
    /// A learner for `model` (loaded trainable).
    pub fn new(model: RewardModel, config: RmConfig, metrics: Metrics) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            core: LearnerCore::new(LEARNER_NAME, model, config.optimizer, config.train_step)?,
            config,
            metrics,
            skipped_queries: 0,
        })
    }

    /// The reward model being trained.
    pub fn model(&self) -> &RewardModel {
        self.core.model()
    }

    /// The trained weights in f32 by name: the optimiser's master copies (see
    /// [`crate::optim::AdamW::master_weights`]), the model's own weights when it computes in f32.
    pub fn master_weights(&self) -> Result<Vec<(String, Tensor)>> {
        self.core.optimizer().master_weights()
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

    /// Queries skipped so far (no positive or no negative response).
    pub fn skipped_queries(&self) -> u64 {
        self.skipped_queries
    }

    /// One optimiser step on `queries`.
    pub fn step(&mut self, queries: &[RmQuery]) -> Result<RmStepReport> {
        validate(queries)?;
        let step = self.core.advance_step();
        // 1. Queries without a (pos, neg) pair carry no signal.
        let used: Vec<&RmQuery> = queries.iter().filter(|q| q.has_pairs()).collect();
        let skipped = queries.len() - used.len();
        self.skipped_queries += skipped as u64;

        // 2. Per micro-batch: rewards, ranking loss weighted by its share of the used queries.
        let mut grads = self.core.gradients();
        let mut eval = Totals::default();
        for chunk in used.chunks(self.config.micro_batch_queries) {
            let (loss, counts) = self.chunk_loss(chunk)?;
            let share = chunk.len() as f64 / used.len() as f64;
            grads.backward(&(loss * share)?)?;
            eval.add(counts);
        }

        // 3. One guarded update (none when everything was skipped), then metrics.
        let update = if used.is_empty() {
            None
        } else {
            Some(self.core.apply(grads)?)
        };
        let eval = eval.finish(skipped);
        let mut scalars = vec![
            ("train/skipped_queries", skipped as f64),
            ("train/pairs", eval.pairs as f64),
        ];
        if let (Some(loss), Some(acc)) = (eval.loss, eval.pairwise_accuracy) {
            scalars.extend([("train/loss", loss), ("train/pairwise_accuracy", acc)]);
        }
        if let Some(u) = update {
            scalars.extend([
                ("train/learning_rate", u.lr),
                ("train/skipped_updates", u.skipped_steps as f64),
            ]);
            if let Some(norm) = u.grad_norm {
                scalars.push(("train/grad_norm", norm));
            }
        }
        self.metrics.scalars(step, &scalars);
        Ok(RmStepReport { step, eval, update })
    }

    /// Loss and pairwise accuracy on held-out `queries`, without an update; logged under
    /// `eval/...` at the current step.
    pub fn evaluate(&self, queries: &[RmQuery]) -> Result<RmEval> {
        validate(queries)?;
        let used: Vec<&RmQuery> = queries.iter().filter(|q| q.has_pairs()).collect();
        let mut totals = Totals::default();
        for chunk in used.chunks(self.config.micro_batch_queries) {
            let (_, counts) = self.chunk_loss(chunk)?;
            totals.add(counts);
        }
        let eval = totals.finish(queries.len() - used.len());
        if let (Some(loss), Some(acc)) = (eval.loss, eval.pairwise_accuracy) {
            self.metrics.scalars(
                self.core.step_count(),
                &[("eval/loss", loss), ("eval/pairwise_accuracy", acc)],
            );
        }
        Ok(eval)
    }

    /// The ranking loss (mean over the chunk's queries) and its counts.
    fn chunk_loss(&self, queries: &[&RmQuery]) -> Result<(Tensor, ChunkCounts)> {
        let sequences: Vec<&Vec<u32>> = queries.iter().flat_map(|q| &q.sequences).collect();
        let labels: Vec<bool> = queries
            .iter()
            .flat_map(|q| q.is_positive.iter().copied())
            .collect();
        let per_query: Vec<usize> = queries.iter().map(|q| q.sequences.len()).collect();
        let (ids, mask) = right_padded(&sequences, self.model().device())?;
        let rewards = self.model().forward(&ids, &mask)?;
        let out = ranking_loss(&rewards, &labels, &per_query)?;
        let loss = out
            .loss
            .expect("every query of the chunk has a (pos, neg) pair");
        let counts = ChunkCounts {
            loss_sum: loss.to_scalar::<f32>()? as f64 * out.used_queries as f64,
            correct_pairs: (out.pairwise_accuracy.unwrap_or(0.0) * out.num_pairs as f64).round(),
            pairs: out.num_pairs,
            queries: out.used_queries,
        };
        Ok((loss, counts))
    }

    /// Writes a checkpoint of the current step (the reward model in its Hugging Face layout,
    /// optimiser, counters, `run`).
    pub fn save_checkpoint(&self, config: &CheckpointConfig, run: &RunState) -> Result<PathBuf> {
        self.core.save_checkpoint(
            config,
            &self.config,
            &[(SKIPPED_QUERIES, self.skipped_queries)],
            run,
        )
    }

    /// Restores the checkpoint in `dir` (weights, optimiser, step and counters) and returns the
    /// caller's [`RunState`].
    pub fn restore(&mut self, dir: impl AsRef<Path>) -> Result<RunState> {
        let restored = self.core.restore(dir)?;
        self.skipped_queries = restored.counter(SKIPPED_QUERIES);
        Ok(restored.run)
    }
}

/// Checks that every query has one verdict per non-empty sequence.
fn validate(queries: &[RmQuery]) -> Result<()> {
    for (i, q) in queries.iter().enumerate() {
        if q.sequences.len() != q.is_positive.len() {
            return Err(Error::Input(format!(
                "rm query {i}: {} sequences but {} verdicts",
                q.sequences.len(),
                q.is_positive.len()
            )));
        }
        if let Some(r) = q.sequences.iter().position(Vec::is_empty) {
            return Err(Error::Input(format!(
                "rm query {i}: response {r} has no tokens"
            )));
        }
    }
    Ok(())
}

/// Right-pads `sequences` with id 0 (masked) into `[n, T]` ids and mask.
fn right_padded(sequences: &[&Vec<u32>], device: &Device) -> Result<(Tensor, Tensor)> {
    let n = sequences.len();
    let width = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = vec![0u32; n * width];
    let mut mask = vec![0u32; n * width];
    for (i, s) in sequences.iter().enumerate() {
        ids[i * width..i * width + s.len()].copy_from_slice(s);
        mask[i * width..i * width + s.len()].fill(1);
    }
    Ok((
        Tensor::from_vec(ids, (n, width), device)?,
        Tensor::from_vec(mask, (n, width), device)?,
    ))
}

/// Counts of one micro-batch, summed into an [`RmEval`].
#[derive(Debug, Clone, Copy, Default)]
struct ChunkCounts {
    loss_sum: f64,
    correct_pairs: f64,
    pairs: usize,
    queries: usize,
}

#[derive(Debug, Default)]
struct Totals(ChunkCounts);

impl Totals {
    fn add(&mut self, c: ChunkCounts) {
        self.0.loss_sum += c.loss_sum;
        self.0.correct_pairs += c.correct_pairs;
        self.0.pairs += c.pairs;
        self.0.queries += c.queries;
    }

    fn finish(&self, skipped: usize) -> RmEval {
        let t = self.0;
        RmEval {
            loss: (t.queries > 0).then(|| t.loss_sum / t.queries as f64),
            pairwise_accuracy: (t.pairs > 0).then(|| (t.correct_pairs / t.pairs as f64).min(1.0)),
            pairs: t.pairs,
            used_queries: t.queries,
            skipped_queries: skipped,
        }
    }
}
