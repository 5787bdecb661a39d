//! Utilisation of the rollout pool: steps/s and the fraction of wall time the rollout actors
//! spend generating, with 1 and then 2 rollout actors, on the tiny fixture policy.
//!
//! ```sh
//! cargo run --release -p mathrl-actors --example utilisation -- [steps] [prompts_per_step]
//! ```
//!
//! Both runs happen in the same process, so the ratio of their steps/s is the figure to read.

use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use mathrl::model::Trainable;
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_actors::{QaRecord, Trainer, TrainerConfig};
use mathrl_learners::{GrpoConfig, GrpoLearner};
use mathrl_rewards::{RewardFunction, RewardInput, RewardOutput};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");
const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/procedural-tokenizer"
);

/// Reward = share of digits in the response.
struct DigitShare;

impl RewardFunction for DigitShare {
    fn name(&self) -> &str {
        "digit-share"
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        Ok(inputs
            .iter()
            .map(|i| {
                let n = i.response.chars().count().max(1) as f32;
                RewardOutput {
                    reward: i.response.chars().filter(char::is_ascii_digit).count() as f32 / n,
                    verdict: None,
                    rm_score: None,
                }
            })
            .collect())
    }
}

fn run(rollout_actors: usize, steps: u64, prompts_per_step: usize) -> Result<(f64, f64)> {
    let policy = Policy::load(TINY, &Device::Cpu, Some(DType::F32), Trainable::Yes)?;
    let mut grpo = GrpoConfig::default();
    grpo.rollout.group_size = 8;
    grpo.rollout.max_new_tokens = 32;
    let learner = GrpoLearner::new(policy, None, grpo, Metrics::null())?;
    let tokenizer = Tokenizer::from_dir(TOKENIZER)?;
    let mut config = TrainerConfig {
        rollout_actors,
        reward_actors: 1,
        prompts_per_step,
        max_steps: steps,
        handle_signals: false,
        ..TrainerConfig::default()
    };
    config.sampling.stop_token_ids = Some(vec![]);
    let prompts = (0..64)
        .map(|i| QaRecord {
            id: format!("q{i}"),
            question: format!("What is {i} + {}?", i % 7),
            gold: None,
            ..QaRecord::default()
        })
        .collect();
    let report = Trainer::new(
        config,
        learner,
        tokenizer,
        Arc::new(DigitShare),
        Metrics::null(),
    )?
    .run(prompts)
    .context("training run")?;
    Ok((
        report.steps as f64 / report.wall_seconds,
        report.rollout_busy_fraction(rollout_actors),
    ))
}

fn main() -> Result<()> {
    mathrl::device::pin_cpu_threads();
    let args: Vec<String> = std::env::args().collect();
    let steps: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(6);
    let per_step: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    println!("tiny fixture, {steps} steps of {per_step} prompts x 8 completions x 32 tokens");
    println!("| rollout actors | steps/s | rollout busy fraction |");
    println!("|---|---|---|");
    let mut base = None;
    for actors in [1, 2] {
        let (rate, busy) = run(actors, steps, per_step)?;
        let base_rate = *base.get_or_insert(rate);
        println!(
            "| {actors} | {rate:.3} ({:.2}x) | {busy:.2} |",
            rate / base_rate
        );
    }
    Ok(())
}
