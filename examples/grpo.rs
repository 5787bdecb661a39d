//! GRPO in one loop: sample a group of completions per question from the current policy, score
//! them with the answer checker, and take one learner step on the group-relative advantages.
//! Greedy held-out accuracy every 10 steps shows whether it learns.
//!
//! `cargo run --release --example grpo -- [POLICY_DIR STEPS PROMPTS GROUP LR BETA TEMP]`
//! (defaults: the shipped `recipes/assets/tiny-math-policy 40 16 8 1e-4 0 1.0`, on the embedded
//! default's task).
//!
//! What this simplifies from the `qwen25-math-rl` recipe, and why:
//! - synchronous and on-policy: one thread samples, then trains, with the weights of the step
//!   before; no rollout or reward actors, no policy lag. With one optimiser pass per step the
//!   importance ratio is 1 up to numerical drift, so the clip of the surrogate never binds;
//! - the reward is the checker's verdict (1 or 0): no reward model, no shaping;
//! - a constant learning rate, no checkpoints, and printed numbers instead of TensorBoard;
//! - a fresh engine on a frozen copy of the weights each step, where the recipe publishes
//!   weight snapshots to long-lived rollout engines.
//!
//! The loss, advantages, micro-batching and AdamW are the real ones: [`GrpoLearner`].

use anyhow::{Context, Result};
use mathrl::data::procedural::Split;
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::Trainable;
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule, RolloutBatch, ScoredGroup};
use mathrl_recipes::accuracy::greedy_accuracy;
use mathrl_recipes::assets::{default_policy_dir, procedural_items, BOOTSTRAP_TRAIN_PROBLEMS};
use mathrl_recipes::eval::EvalMode;
use mathrl_recipes::verifier::default_verifier;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).map_or(default, String::as_str).to_string();
    let dir = args.first().map_or_else(default_policy_dir, Into::into);
    let steps: u64 = arg(1, "40").parse().context("STEPS")?;
    let prompts_per_step: usize = arg(2, "16").parse().context("PROMPTS")?;
    let group_size: usize = arg(3, "8").parse().context("GROUP")?;
    let lr: f64 = arg(4, "1e-4").parse().context("LR")?;
    let beta: f64 = arg(5, "0").parse().context("BETA")?;
    let temperature: f64 = arg(6, "1.0").parse().context("TEMP")?;

    let tokenizer = Tokenizer::from_dir(&dir)?;
    let policy = Policy::load(&dir, &candle_core::Device::Cpu, None, Trainable::Yes)?;
    // The embedded default's questions: training ones the shipped policy's SFT never saw.
    let train = procedural_items(Split::Train, BOOTSTRAP_TRAIN_PROBLEMS, 5_000)?;
    let held_out = procedural_items(Split::HeldOut, 0, 200)?;
    let verifier = default_verifier();

    let mut config = GrpoConfig::default();
    config.loss.beta = beta;
    config.rollout.temperature = temperature;
    config.train_step.schedule = LrSchedule::constant(lr);
    let mut learner = GrpoLearner::new(policy, None, config, Metrics::null())?;
    let print_accuracy = |step: u64, policy: &Policy| -> Result<()> {
        let mode = EvalMode::greedy_cot(160);
        let accuracy = greedy_accuracy(policy, &tokenizer, &held_out, &*verifier, &mode)?;
        println!(
            "step {step}: held-out accuracy {:.1}%",
            100.0 * accuracy.accuracy
        );
        Ok(())
    };
    print_accuracy(0, learner.policy())?;

    for step in 1..=steps {
        // 1. This step's questions, as chat prompts.
        let start = (step as usize - 1) * prompts_per_step % train.len();
        let questions = &train[start..(start + prompts_per_step).min(train.len())];
        let prompts = questions
            .iter()
            .map(|p| Ok(tokenizer.encode(&tokenizer.question_prompt(&p.question, None)?)?))
            .collect::<Result<Vec<Vec<u32>>>>()?;
        // 2. A group of completions per question from the weights after the previous step.
        let weights = learner.policy().frozen_copy()?;
        let mut engine = Engine::from_policy(&weights, EngineConfig::default())
            .with_tokenizer(tokenizer.clone());
        engine.set_policy_version(learner.policy_version());
        let params = SamplingParams {
            n: group_size,
            temperature,
            max_new_tokens: 160,
            seed: step,
            ..Default::default()
        };
        let generated = engine.generate(&prompts, &params)?;
        // 3. Rewards: 1 for a completion whose final answer checks equal to the gold answer.
        let groups = generated
            .groups
            .into_iter()
            .zip(questions)
            .map(|(group, problem)| {
                let verdicts: Vec<bool> = group
                    .completions
                    .iter()
                    .map(|c| {
                        let response = c.text.as_deref().unwrap_or("");
                        verifier
                            .verify(response, problem.gold_or_empty(), None)
                            .is_correct()
                    })
                    .collect();
                ScoredGroup {
                    rewards: verdicts.iter().map(|&v| f32::from(u8::from(v))).collect(),
                    verdicts: Some(verdicts),
                    group,
                }
            })
            .collect();
        // 4. One GRPO step: advantages within each group, clipped surrogate (+ β·KL), AdamW.
        let report = learner.step(RolloutBatch { groups })?;
        println!(
            "step {step}: sampled accuracy {:.3}, mean length {:.0} tokens, loss {:.4}",
            report.accuracy.unwrap_or(0.0),
            report.completion_length_mean,
            report.loss,
        );
        if step % 10 == 0 || step == steps {
            print_accuracy(step, learner.policy())?;
        }
    }
    Ok(())
}
