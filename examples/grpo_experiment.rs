//! Experiment (not a recipe): synchronous GRPO on the procedural task from an SFT policy, to tune
//! the embedded default's hyper-parameters. Prints greedy held-out accuracy over steps.
//! `cargo run --release --example grpo_experiment -- POLICY_DIR STEPS PROMPTS GROUP LR BETA TEMP`

use std::time::Instant;

use anyhow::Result;
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::Trainable;
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_learners::{GrpoConfig, GrpoLearner, LrSchedule, RolloutBatch, ScoredGroup};
use mathrl_recipes::accuracy::greedy_accuracy;
use mathrl_recipes::tiny_bootstrap::qa_items;
use mathrl_recipes::verifier::default_verifier;

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let dir = &a[0];
    let steps: u64 = a[1].parse()?;
    let prompts_per_step: usize = a[2].parse()?;
    let group: usize = a[3].parse()?;
    let lr: f64 = a[4].parse()?;
    let beta: f64 = a[5].parse()?;
    let temp: f64 = a[6].parse()?;
    let tok = Tokenizer::from_dir(dir)?;
    let policy = Policy::load(dir, &candle_core::Device::Cpu, None, Trainable::Yes)?;
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let task = ProceduralTask::new(TaskConfig {
        max_steps: env("TASK_MAX_STEPS", 4) as usize,
        max_operand: env("TASK_MAX_OPERAND", 12),
        ..TaskConfig::default()
    })?;
    let train: Vec<_> = task
        .problems(Split::Train)
        .skip(40_000)
        .take(5_000)
        .collect();
    let held = qa_items(&task.problems(Split::HeldOut).take(200).collect::<Vec<_>>());
    let verifier = default_verifier();
    let acc = greedy_accuracy(&policy, &tok, &held, verifier.as_ref(), 160)?;
    println!("before: {:.1}%", 100.0 * acc.accuracy);
    let mut cfg = GrpoConfig::default();
    cfg.loss.beta = beta;
    cfg.rollout.temperature = temp;
    cfg.train_step.schedule = LrSchedule::constant(lr);
    cfg.micro_batch_size = 16;
    cfg.log_entropy = false;
    let mut learner = GrpoLearner::new(policy, None, cfg, Metrics::null())?;
    let start = Instant::now();
    for step in 1..=steps {
        let t0 = Instant::now();
        let batch =
            &train[(step as usize - 1) * prompts_per_step % train.len()..][..prompts_per_step];
        let prompts: Vec<Vec<u32>> = batch
            .iter()
            .map(|p| {
                tok.encode(&tok.question_prompt(&p.question, None).unwrap())
                    .unwrap()
            })
            .collect();
        let frozen = learner.policy().frozen_copy()?;
        let mut engine =
            Engine::from_policy(&frozen, EngineConfig::default()).with_tokenizer(tok.clone());
        engine.set_policy_version(step - 1);
        let params = SamplingParams {
            n: group,
            temperature: temp,
            max_new_tokens: 160,
            seed: step,
            ..Default::default()
        };
        let out = engine.generate(&prompts, &params)?;
        let tg = t0.elapsed().as_secs_f64();
        let groups = out
            .groups
            .into_iter()
            .zip(batch)
            .map(|(g, p)| {
                let verdicts: Vec<bool> = g
                    .completions
                    .iter()
                    .map(|c| {
                        verifier
                            .verify(c.text.as_deref().unwrap_or(""), &p.answer, None)
                            .is_correct()
                    })
                    .collect();
                let rewards = verdicts.iter().map(|&v| f32::from(u8::from(v))).collect();
                ScoredGroup {
                    group: g,
                    rewards,
                    verdicts: Some(verdicts),
                }
            })
            .collect();
        let r = learner.step(RolloutBatch { groups })?;
        println!(
            "step {step} acc {:.3} zero-var {:.2} len {:.0} kl {:?} gen {tg:.1}s total {:.1}s t={:.0}s",
            r.accuracy.unwrap_or(0.0),
            r.zero_variance_fraction,
            r.completion_length_mean,
            r.kl,
            t0.elapsed().as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
        if step % 10 == 0 || step == steps {
            let acc = greedy_accuracy(learner.policy(), &tok, &held, verifier.as_ref(), 160)?;
            println!("EVAL step {step}: {:.1}%", 100.0 * acc.accuracy);
        }
    }
    Ok(())
}
