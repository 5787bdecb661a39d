//! Experiment (not a recipe): SFT a small policy on the procedural task and track greedy
//! held-out accuracy and pass@8 over steps.
//! `cargo run --release --example tiny_sft_experiment -- HIDDEN LAYERS STEPS BATCH LR`

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device};
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::{ChatMessage, Metrics, Policy, Tokenizer};
use mathrl_learners::schedule::{Decay, LrSchedule};
use mathrl_learners::sft::{SftConfig, SftLearner};
use mathrl_learners::sft_data::tokenize_conversation;

fn boxed(text: &str) -> Option<String> {
    let i = text.rfind("\\boxed{")?;
    let rest = &text[i + 7..];
    Some(rest[..rest.find('}')?].to_string())
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let hidden: usize = a[0].parse()?;
    let layers: usize = a[1].parse()?;
    let steps: u64 = a[2].parse()?;
    let batch: usize = a[3].parse()?;
    let lr: f64 = a[4].parse()?;
    let tok = Tokenizer::from_dir("tests/fixtures/procedural-tokenizer")?;
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
    let train: Vec<_> = task.problems(Split::Train).take(30_000).collect();
    let held: Vec<_> = task.problems(Split::HeldOut).take(200).collect();
    let examples: Vec<_> = train
        .iter()
        .map(|p| {
            tokenize_conversation(
                &tok,
                &[
                    ChatMessage::new("user", &p.question),
                    ChatMessage::new("assistant", &p.solution),
                ],
                512,
            )
        })
        .collect::<Result<_, _>>()?;
    let cfg = Qwen2Config {
        vocab_size: tok.vocab_size().next_multiple_of(64),
        hidden_size: hidden,
        intermediate_size: hidden * 8 / 3 / 32 * 32,
        num_hidden_layers: layers,
        num_attention_heads: hidden / 32,
        num_key_value_heads: (hidden / 32 / 2).max(1),
        max_position_embeddings: 512,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        torch_dtype: Some("float32".into()),
        bos_token_id: None,
        eos_token_ids: vec![2],
        pad_token_id: Some(0),
        architecture: None,
        num_labels: None,
    };
    let policy = Policy::random(&cfg, 0, &Device::Cpu, DType::F32, Trainable::Yes)?;
    println!("params {:.2}M", policy.num_parameters() as f64 / 1e6);
    let mut sc = SftConfig {
        micro_batch_size: batch,
        max_length: 512,
        ..SftConfig::default()
    };
    sc.optimizer.weight_decay = 0.0;
    sc.train_step.schedule = LrSchedule {
        peak_lr: lr,
        warmup_steps: 20,
        decay: Decay::Cosine {
            total_steps: steps,
            min_lr_ratio: 0.1,
        },
    };
    let mut learner = SftLearner::new(policy, sc, Metrics::null())?;
    let prompts: Vec<Vec<u32>> = held
        .iter()
        .map(|p| {
            tok.encode(&tok.question_prompt(&p.question, None).unwrap())
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    for step in 1..=steps {
        let idx: Vec<usize> = (0..batch)
            .map(|i| ((step as usize) * batch + i) % examples.len())
            .collect();
        let ex: Vec<_> = idx.iter().map(|&i| &examples[i]).collect();
        let r = learner.step(&ex)?;
        if step % 25 == 0 {
            println!(
                "step {step} loss {:.4} t={:.0}s",
                r.loss,
                start.elapsed().as_secs_f64()
            );
        }
        if step % 100 == 0 || step == steps {
            let frozen = learner.policy().frozen_copy()?;
            let mut engine =
                Engine::from_policy(&frozen, EngineConfig::default()).with_tokenizer(tok.clone());
            let t0 = Instant::now();
            let out = engine.generate(&prompts, &SamplingParams::greedy(160))?;
            let greedy = out
                .groups
                .iter()
                .zip(&held)
                .filter(|(g, p)| {
                    boxed(g.completions[0].text.as_deref().unwrap_or("")) == Some(p.answer.clone())
                })
                .count();
            let tg = t0.elapsed().as_secs_f64();
            let out = engine.generate(
                &prompts,
                &SamplingParams {
                    n: 8,
                    max_new_tokens: 160,
                    seed: step,
                    ..Default::default()
                },
            )?;
            let (mut any, mut mean) = (0, 0.0);
            for (g, p) in out.groups.iter().zip(&held) {
                let c = g
                    .completions
                    .iter()
                    .filter(|c| boxed(c.text.as_deref().unwrap_or("")) == Some(p.answer.clone()))
                    .count();
                any += usize::from(c > 0);
                mean += c as f64 / 8.0;
            }
            println!("EVAL step {step}: greedy {:.1}% pass@8 {:.1}% mean@8 {:.1}% (greedy gen {tg:.1}s, {} tok)", greedy as f64 / 2.0, any as f64 / 2.0, mean / 2.0, out.stats.sampled_tokens);
        }
    }
    learner
        .policy()
        .save(std::env::var("OUT").unwrap_or("/work/exp/sft-policy".into()))?;
    Ok(())
}
