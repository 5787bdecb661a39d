//! `SftLearner`: supervised fine-tuning of the policy on chat conversations, the loss taken on the
//! assistant tokens only (prompt, template and padding masked out).
//!
//! [`SftLearner::step`] reads top to bottom: examples → rows (one conversation each, or several
//! packed) → micro-batches (bounded in rows and in padded tokens) → per micro-batch: forward,
//! masked token log-likelihood normalised by the step's trained tokens, backward into the
//! accumulator (with `gradient_checkpointing`, the decoder layers' activations recomputed there)
//! → one guarded AdamW update → metrics.
//!
//! Packing is off by default. When on, a packed row restarts positions at 0 for each conversation
//! and uses a block-diagonal causal attention bias, so no token attends across conversations and
//! the loss equals the unpacked one (tested); the last token of a conversation never predicts the
//! first of the next.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mathrl::model::{
    gather_log_softmax, loss_and_gradients, masked_score, Activations, AttentionMask,
};
use mathrl::{Metrics, Policy};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointConfig, RunState};
use crate::learner_core::LearnerCore;
use crate::micro_batch::micro_batch_ranges;
use crate::optim::AdamWConfig;
use crate::schedule::LrSchedule;
use crate::sft_data::{pack, SftExample};
use crate::sft_loss::{sft_loss_from_logprobs, SftLoss, TokenNormaliser};
use crate::train_step::{StepStats, TrainStepConfig};
use crate::{Error, Result};

/// Settings of the SFT learner. The report trains 3 epochs with 4,096-token sequences, batch 128
/// (1.5B, 7B) or 256 (72B); the epochs and batch size belong to the recipe's loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// AdamW moments and weight decay; its `lr` is overridden by `train_step.schedule`.
    pub optimizer: AdamWConfig,
    /// Peak learning rate 1e-5 (the report's, 1.5B and 7B; 5e-6 for 72B), clipping at 1. The
    /// report decays the rate to 7e-7: set a cosine `decay` with the run's total steps.
    pub train_step: TrainStepConfig,
    /// Most rows per forward/backward pass; gradients of a step's micro-batches are summed.
    pub micro_batch_size: usize,
    /// Most padded tokens (rows × longest row) per forward/backward pass; a longer single row
    /// goes alone. The split does not change the update (the loss is normalised by the step's
    /// trained tokens).
    pub micro_batch_tokens: usize,
    /// Recompute each decoder layer's activations in the backward pass instead of keeping them
    /// from the forward pass: about one more forward of compute for the activation memory of a
    /// single layer (plus each layer's input). Gradients are unchanged.
    pub gradient_checkpointing: bool,
    /// Longest row in tokens; longer conversations are truncated (the report uses 4096).
    pub max_length: usize,
    /// Pack several conversations into each row of up to `max_length` tokens.
    pub packing: bool,
    /// Positions per block of logits when computing log-probs.
    pub logprob_chunk_positions: usize,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            optimizer: AdamWConfig {
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
            train_step: TrainStepConfig {
                schedule: LrSchedule::constant(1e-5),
                max_grad_norm: Some(1.0),
                ..TrainStepConfig::default()
            },
            micro_batch_size: 4,
            micro_batch_tokens: 16_384,
            gradient_checkpointing: false,
            max_length: 4096,
            packing: false,
            logprob_chunk_positions: 1024,
        }
    }
}

/// A padded batch of rows: `targets[b, t]` is the token position t predicts and `loss_mask` marks
/// the targets that are assistant tokens of the same conversation.
#[derive(Debug, Clone)]
pub struct SftBatch {
    /// `[B, T]` u32.
    pub input_ids: Tensor,
    /// `[B, T]` u32, restarting at 0 for each packed conversation.
    pub positions: Tensor,
    /// `[B, 1, T, T]`: 0 where query t may attend to key s (same conversation, s ≤ t).
    pub attention_bias: Tensor,
    /// `[B, T-1]` u32.
    pub targets: Tensor,
    /// `[B, T-1]` f32.
    pub loss_mask: Tensor,
}

impl SftBatch {
    /// Rows made of `examples` by `rows` (lists of example indices, see [`pack`]), padded to the
    /// longest row; the bias uses the masked score of `dtype`.
    pub fn collate(
        examples: &[&SftExample],
        rows: &[Vec<usize>],
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let width = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&i| examples[i].input_ids.len())
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0)
            .max(2);
        let b = rows.len();
        let mut ids = vec![0u32; b * width];
        let mut positions = vec![0u32; b * width];
        // Segment 0 is padding; conversations are numbered from 1 within a row.
        let mut segment = vec![0u32; b * width];
        let mut assistant = vec![false; b * width];
        for (r, row) in rows.iter().enumerate() {
            let mut t = r * width;
            for (s, &i) in row.iter().enumerate() {
                let ex = examples[i];
                for (k, (&id, &m)) in ex.input_ids.iter().zip(&ex.assistant_mask).enumerate() {
                    ids[t] = id;
                    positions[t] = k as u32;
                    segment[t] = s as u32 + 1;
                    assistant[t] = m;
                    t += 1;
                }
            }
        }
        let blocked = masked_score(dtype);
        let mut bias = vec![blocked; b * width * width];
        let mut targets = vec![0u32; b * (width - 1)];
        let mut loss_mask = vec![0f32; b * (width - 1)];
        for r in 0..b {
            let base = r * width;
            for q in 0..width {
                let sq = segment[base + q];
                for k in 0..=q {
                    if sq != 0 && segment[base + k] == sq {
                        bias[(r * width + q) * width + k] = 0.0;
                    }
                }
                if q + 1 < width {
                    let next = base + q + 1;
                    targets[r * (width - 1) + q] = ids[next];
                    if sq != 0 && segment[next] == sq && assistant[next] {
                        loss_mask[r * (width - 1) + q] = 1.0;
                    }
                }
            }
        }
        Ok(Self {
            input_ids: Tensor::from_vec(ids, (b, width), device)?,
            positions: Tensor::from_vec(positions, (b, width), device)?,
            attention_bias: Tensor::from_vec(bias, (b, 1, width, width), device)?,
            targets: Tensor::from_vec(targets, (b, width - 1), device)?,
            loss_mask: Tensor::from_vec(loss_mask, (b, width - 1), device)?,
        })
    }

    /// Trained target tokens in the batch.
    pub fn num_trained_tokens(&self) -> Result<usize> {
        Ok(self.loss_mask.sum_all()?.to_scalar::<f32>()? as usize)
    }
}

/// What one SFT step did (also logged under `train/...`).
#[derive(Debug, Clone, PartialEq)]
pub struct SftStepReport {
    /// Learner step (1-based).
    pub step: u64,
    /// Mean negative log-likelihood per trained token.
    pub loss: f64,
    /// Trained (assistant) tokens of the step.
    pub trained_tokens: usize,
    /// Conversations in the step.
    pub sequences: usize,
    /// Rows after packing.
    pub rows: usize,
    /// The optimiser step.
    pub update: StepStats,
}

/// The SFT learner: the policy and its optimiser (the [`LearnerCore`]).
pub struct SftLearner {
    core: LearnerCore<Policy>,
    config: SftConfig,
    metrics: Metrics,
}

/// The `learner` name in checkpoints written by [`SftLearner`].
const LEARNER_NAME: &str = "sft";

impl SftConfig {
    /// Checks every setting (callers check before loading a model; [`SftLearner::new`] again).
    pub fn validate(&self) -> Result<()> {
        if self.micro_batch_size == 0 || self.max_length < 2 {
            return Err(Error::Config {
                field: "micro_batch_size",
                message: "micro_batch_size must be >= 1 and max_length >= 2".into(),
            });
        }
        if self.micro_batch_tokens == 0 {
            return Err(Error::Config {
                field: "micro_batch_tokens",
                message: "must be >= 1".into(),
            });
        }
        self.optimizer.validate()?;
        self.train_step.validate()
    }
}

impl SftLearner {
    /// A learner for `policy` (loaded trainable).
    pub fn new(policy: Policy, config: SftConfig, metrics: Metrics) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            core: LearnerCore::new(LEARNER_NAME, policy, config.optimizer, config.train_step)?,
            config,
            metrics,
        })
    }

    /// The policy being trained.
    pub fn policy(&self) -> &Policy {
        self.core.model()
    }

    /// The trained weights in f32 by name: the optimiser's master copies (see
    /// [`crate::optim::AdamW::master_weights`]), the policy's own weights when it computes in f32.
    pub fn master_weights(&self) -> Result<Vec<(String, Tensor)>> {
        self.core.optimizer().master_weights()
    }

    /// The settings.
    pub fn config(&self) -> &SftConfig {
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

    /// Micro-batches of `examples` as the learner trains on them (rows packed when configured),
    /// each of at most `micro_batch_size` rows and `micro_batch_tokens` padded tokens.
    pub fn batches(&self, examples: &[&SftExample]) -> Result<Vec<SftBatch>> {
        let rows = pack(examples, self.config.max_length, self.config.packing);
        let lengths: Vec<usize> = rows
            .iter()
            .map(|row| row.iter().map(|&i| examples[i].input_ids.len()).sum())
            .collect();
        micro_batch_ranges(
            &lengths,
            self.config.micro_batch_size,
            self.config.micro_batch_tokens,
        )
        .into_iter()
        .map(|range| {
            SftBatch::collate(
                examples,
                &rows[range],
                self.policy().device(),
                self.policy().dtype(),
            )
        })
        .collect()
    }

    /// The loss of one micro-batch, its token sum divided as `normaliser` says.
    pub fn batch_loss(&self, batch: &SftBatch, normaliser: TokenNormaliser) -> Result<SftLoss> {
        let hidden = self.policy().model().backbone().forward_with(
            &batch.input_ids,
            &batch.positions,
            &AttentionMask::Bias(batch.attention_bias.clone()),
            None,
        )?;
        self.loss_of_hidden(batch, &hidden, normaliser)
    }

    /// The loss of one micro-batch from its final hidden states `[B, T, d]`.
    fn loss_of_hidden(
        &self,
        batch: &SftBatch,
        hidden: &Tensor,
        normaliser: TokenNormaliser,
    ) -> Result<SftLoss> {
        let model = self.policy().model();
        let (b, t, d) = hidden.dims3()?;
        let rows = b * (t - 1);
        let hidden = hidden.narrow(1, 0, t - 1)?.reshape((rows, d))?;
        let targets = batch.targets.reshape((rows, 1))?;
        let chunk = self.config.logprob_chunk_positions.max(1);
        let mut pieces = Vec::with_capacity(rows.div_ceil(chunk));
        for start in (0..rows).step_by(chunk) {
            let len = chunk.min(rows - start);
            let logits = model
                .logits(&hidden.narrow(0, start, len)?)?
                .to_dtype(DType::F32)?;
            pieces.push(gather_log_softmax(
                &logits,
                &targets.narrow(0, start, len)?,
            )?);
        }
        let logprobs = Tensor::cat(&pieces, 0)?.reshape((b, t - 1))?;
        sft_loss_from_logprobs(&logprobs, &batch.loss_mask, normaliser)
    }

    /// One optimiser step on `examples` (already tokenized and truncated to `max_length`).
    pub fn step(&mut self, examples: &[&SftExample]) -> Result<SftStepReport> {
        if let Some(long) = examples
            .iter()
            .position(|e| e.input_ids.len() > self.config.max_length)
        {
            return Err(Error::Input(format!(
                "sft step: example {long} has {} tokens, more than max_length {}",
                examples[long].input_ids.len(),
                self.config.max_length
            )));
        }
        // 1. Rows and micro-batches; the step's trained tokens normalise every micro-batch.
        let batches = self.batches(examples)?;
        let rows = batches
            .iter()
            .map(|b| b.input_ids.dim(0))
            .sum::<Result<_, _>>()?;
        let tokens: usize = batches
            .iter()
            .map(SftBatch::num_trained_tokens)
            .sum::<Result<_>>()?;
        if tokens == 0 {
            return Err(Error::Input(
                "sft step: no assistant token in the batch (all truncated away?)".into(),
            ));
        }
        let normaliser = TokenNormaliser::Tokens(tokens as f64);

        // 2. Forward/backward per micro-batch, gradients summed.
        let activations = Activations::recomputed_if(self.config.gradient_checkpointing);
        let mut grads = self.core.gradients();
        for batch in &batches {
            let out = loss_and_gradients(
                self.policy().model().backbone(),
                &batch.input_ids,
                &batch.positions,
                &AttentionMask::Bias(batch.attention_bias.clone()),
                activations,
                |hidden| Ok::<_, Error>(self.loss_of_hidden(batch, hidden, normaliser)?.loss),
            )?;
            grads.add(out.loss, out.grads)?;
        }

        // 3. One guarded update, then metrics.
        let update = self.core.apply(grads)?;
        let step = self.core.advance_step();
        let report = SftStepReport {
            step,
            loss: update.loss,
            trained_tokens: tokens,
            sequences: examples.len(),
            rows,
            update,
        };
        let mut scalars = vec![
            ("train/loss", report.loss),
            ("train/learning_rate", update.lr),
            ("train/trained_tokens", tokens as f64),
            ("train/skipped_updates", update.skipped_steps as f64),
        ];
        if let Some(norm) = update.grad_norm {
            scalars.push(("train/grad_norm", norm));
        }
        self.metrics.scalars(step, &scalars);
        Ok(report)
    }

    /// Mean negative log-likelihood per assistant token of `examples`, without an update.
    pub fn evaluate(&self, examples: &[&SftExample]) -> Result<f64> {
        let mut sum = 0.0;
        let mut tokens = 0usize;
        for batch in self.batches(examples)? {
            let out = self.batch_loss(&batch, TokenNormaliser::Tokens(1.0))?;
            sum += out.loss.detach().to_scalar::<f32>()? as f64;
            tokens += out.num_tokens;
        }
        Ok(sum / tokens.max(1) as f64)
    }

    /// Writes a checkpoint of the current step (weights, optimiser, step, `run`).
    pub fn save_checkpoint(&self, config: &CheckpointConfig, run: &RunState) -> Result<PathBuf> {
        self.core.save_checkpoint(config, &self.config, &[], run)
    }

    /// Restores the checkpoint in `dir` (weights, optimiser and step) and returns the caller's
    /// [`RunState`].
    pub fn restore(&mut self, dir: impl AsRef<Path>) -> Result<RunState> {
        Ok(self.core.restore(dir)?.run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32], mask: &[bool]) -> SftExample {
        SftExample {
            input_ids: ids.to_vec(),
            assistant_mask: mask.to_vec(),
        }
    }

    #[test]
    fn packed_rows_are_block_diagonal_with_reset_positions() {
        let a = ex(&[1, 2, 3], &[false, true, true]);
        let b = ex(&[4, 5], &[false, true]);
        let examples = [&a, &b];
        let batch = SftBatch::collate(&examples, &[vec![0, 1]], &Device::Cpu, DType::F32).unwrap();
        assert_eq!(
            batch.positions.to_vec2::<u32>().unwrap(),
            vec![vec![0, 1, 2, 0, 1]]
        );
        assert_eq!(
            batch.targets.to_vec2::<u32>().unwrap(),
            vec![vec![2, 3, 4, 5]]
        );
        // Position 2 (token 3) would predict token 4, the next conversation's first: masked.
        assert_eq!(
            batch.loss_mask.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 1.0, 0.0, 1.0]]
        );
        let bias = batch
            .attention_bias
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let allowed: Vec<Vec<u8>> = bias
            .iter()
            .map(|row| row.iter().map(|&x| u8::from(x == 0.0)).collect())
            .collect();
        assert_eq!(
            allowed,
            vec![
                vec![1, 0, 0, 0, 0],
                vec![1, 1, 0, 0, 0],
                vec![1, 1, 1, 0, 0],
                vec![0, 0, 0, 1, 0],
                vec![0, 0, 0, 1, 1],
            ]
        );
    }

    #[test]
    fn unpacked_rows_are_right_padded_and_padding_is_never_trained() {
        let a = ex(&[1, 2, 3], &[false, true, true]);
        let b = ex(&[4, 5], &[true, true]);
        let examples = [&a, &b];
        let batch =
            SftBatch::collate(&examples, &[vec![0], vec![1]], &Device::Cpu, DType::F32).unwrap();
        assert_eq!(
            batch.loss_mask.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 1.0], vec![1.0, 0.0]]
        );
        assert_eq!(batch.num_trained_tokens().unwrap(), 3);
    }
}
