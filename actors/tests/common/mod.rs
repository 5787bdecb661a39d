//! Shared by the runtime tests: the tiny fixture policy with the procedural tokenizer, a learner,
//! prompts and small reward functions.
#![allow(dead_code)] // each test file uses a different subset

use std::sync::Arc;

use anyhow::Result;
use candle_core::{DType, Device};
use mathrl::metrics::MemorySink;
use mathrl::model::Trainable;
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_actors::{QaRecord, Trainer, TrainerConfig};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule};
use mathrl_rewards::{RewardFunction, RewardInput, RewardOutput};

/// The tiny Qwen2 fixture (vocab 1024, hidden 64, 2 layers, random weights).
pub const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");
/// The procedural task's tokenizer (653 ids, ChatML template): its ids fit the tiny vocabulary.
pub const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/procedural-tokenizer"
);

/// The tiny policy on the CPU in f32.
pub fn tiny_policy(trainable: Trainable) -> Result<Policy> {
    Ok(Policy::load(
        TINY,
        &Device::Cpu,
        Some(DType::F32),
        trainable,
    )?)
}

/// The tokenizer.
pub fn tokenizer() -> Result<Tokenizer> {
    Ok(Tokenizer::from_dir(TOKENIZER)?)
}

/// A GRPO learner on the tiny policy with a large learning rate (so weights visibly move).
pub fn learner(metrics: &Metrics) -> Result<GrpoLearner> {
    let mut config = GrpoConfig::default();
    config.train_step.schedule = LrSchedule::constant(1e-3);
    config.micro_batch_size = 16;
    config.rollout.group_size = 3;
    config.rollout.max_new_tokens = 6;
    Ok(GrpoLearner::new(
        tiny_policy(Trainable::Yes)?,
        None,
        config,
        metrics.clone(),
    )?)
}

/// `n` arithmetic questions `q0..`, with gold answers.
pub fn prompts(n: usize) -> Vec<QaRecord> {
    (0..n)
        .map(|i| QaRecord {
            id: format!("q{i}"),
            question: format!("What is {i} + 2?"),
            gold: Some((i + 2).to_string()),
            ..QaRecord::default()
        })
        .collect()
}

/// A small, fast configuration: 2 rollout and 2 reward actors, 4 prompts per step (× 3
/// completions of 6 tokens: the [`learner`]'s rollout settings).
pub fn config(max_steps: u64) -> TrainerConfig {
    let mut c = TrainerConfig {
        rollout_actors: 2,
        reward_actors: 2,
        prompts_per_step: 4,
        max_steps,
        seed: 5,
        handle_signals: false,
        ..TrainerConfig::default()
    };
    c.sampling.stop_token_ids = Some(vec![]);
    c
}

/// Reward = share of the response's characters that are ASCII digits (varies within a group).
pub fn digit_share(response: &str) -> f32 {
    let chars = response.chars().count().max(1) as f32;
    response.chars().filter(char::is_ascii_digit).count() as f32 / chars
}

/// The digit-share reward as a [`RewardFunction`].
pub struct DigitShare;

impl RewardFunction for DigitShare {
    fn name(&self) -> &str {
        "digit-share"
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        Ok(inputs
            .iter()
            .map(|i| RewardOutput {
                reward: digit_share(i.response),
                verdict: None,
                rm_score: None,
            })
            .collect())
    }
}

/// A trainer over the tiny fixture with `reward`, logging into a memory sink.
pub fn trainer(
    config: TrainerConfig,
    reward: Arc<dyn RewardFunction>,
) -> Result<(Trainer, MemorySink)> {
    let sink = MemorySink::new();
    let metrics = Metrics::new(sink.clone());
    let trainer = Trainer::new(config, learner(&metrics)?, tokenizer()?, reward, metrics)?;
    Ok((trainer, sink))
}
