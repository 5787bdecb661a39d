//! Experiment (not a recipe): greedy and sampled held-out accuracy of a policy of the embedded
//! task by answer style (bare `\boxed{N}` or worked), optionally after fine-tuning it on a mix
//! of bare answers (share DIRECT_FRACTION) and worked solutions.
//! `cargo run --release --example style_mix_probe -- POLICY_DIR [DIRECT_FRACTION STEPS LR OUT]`

use anyhow::Result;
use candle_core::Device;
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::Trainable;
use mathrl::{ChatMessage, Metrics, Policy, Tokenizer};
use mathrl_learners::schedule::LrSchedule;
use mathrl_learners::sft::{SftConfig, SftLearner};
use mathrl_learners::sft_data::tokenize_conversation;
use mathrl_rewards::{Checker, CheckerProfile, Verifier};

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let src = std::path::Path::new(&a[0]);
    let arg = |i: usize, default: &str| a.get(i).cloned().unwrap_or(default.into());
    let fraction: f64 = arg(1, "0").parse()?;
    let steps: u64 = arg(2, "0").parse()?;
    let lr: f64 = arg(3, "0").parse()?;
    let out = std::path::PathBuf::from(arg(4, "/work/exp/style-mix"));
    let tok = Tokenizer::from_dir(src)?;
    let task = ProceduralTask::new(TaskConfig {
        max_steps: 2,
        ..TaskConfig::default()
    })?;
    let train: Vec<_> = task.problems(Split::Train).take(30_000).collect();
    let held: Vec<_> = task.problems(Split::HeldOut).take(200).collect();
    let examples: Vec<_> = train
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let direct = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64
                / ((1u64 << 53) as f64)
                < fraction;
            let solution = if direct {
                format!("\\boxed{{{}}}", p.answer)
            } else {
                p.solution.clone()
            };
            tokenize_conversation(
                &tok,
                &[
                    ChatMessage::new("user", &p.question),
                    ChatMessage::new("assistant", &solution),
                ],
                512,
            )
        })
        .collect::<Result<_, _>>()?;
    let policy = Policy::load(src, &Device::Cpu, None, Trainable::Yes)?;
    let mut sc = SftConfig {
        micro_batch_size: 32,
        max_length: 512,
        ..SftConfig::default()
    };
    sc.train_step.schedule = LrSchedule::constant(lr);
    let mut learner = SftLearner::new(policy, sc, Metrics::null())?;
    // The chat template with the default (CoT) system prompt, as the RL recipe evaluates.
    let prompts = held
        .iter()
        .map(|p| Ok(tok.encode(&tok.question_prompt(&p.question, None)?)?))
        .collect::<Result<Vec<Vec<u32>>>>()?;
    let checker = Checker::new(CheckerProfile::Strict);
    let eval = |policy: &Policy, label: &str| -> Result<()> {
        let frozen = policy.frozen_copy()?;
        let mut engine =
            Engine::from_policy(&frozen, EngineConfig::default()).with_tokenizer(tok.clone());
        let res = engine.generate(&prompts, &SamplingParams::greedy(160))?;
        let (mut direct, mut direct_ok, mut worked_ok) = (0, 0, 0);
        for (g, p) in res.groups.iter().zip(&held) {
            let t = g.completions[0].text.as_deref().unwrap_or("");
            let ok = checker.verify(t, &p.answer, None).is_correct();
            if t.starts_with("\\boxed") {
                direct += 1;
                direct_ok += usize::from(ok);
            } else {
                worked_ok += usize::from(ok);
            }
        }
        let sampled = engine.generate(
            &prompts,
            &SamplingParams {
                n: 8,
                max_new_tokens: 160,
                seed: 1,
                ..Default::default()
            },
        )?;
        let (mut sd, mut sd_ok, mut sw_ok, mut n) = (0, 0, 0, 0);
        for (g, p) in sampled.groups.iter().zip(&held) {
            for c in &g.completions {
                let t = c.text.as_deref().unwrap_or("");
                let ok = checker.verify(t, &p.answer, None).is_correct();
                n += 1;
                if t.starts_with("\\boxed") {
                    sd += 1;
                    sd_ok += usize::from(ok);
                } else {
                    sw_ok += usize::from(ok);
                }
            }
        }
        println!(
            "{label}: greedy acc {:.1}% direct {direct}/200 (ok {direct_ok}) worked ok {worked_ok}/{} | sampled direct {sd}/{n} ok {sd_ok}, worked ok {sw_ok}/{}",
            (direct_ok + worked_ok) as f64 / 2.0,
            200 - direct,
            n - sd
        );
        Ok(())
    };
    eval(learner.policy(), "start")?;
    for step in 1..=steps {
        let ex: Vec<_> = (0..32)
            .map(|i| &examples[((step as usize) * 32 + i) % examples.len()])
            .collect();
        let r = learner.step(&ex)?;
        if step % 25 == 0 {
            println!("step {step} loss {:.4}", r.loss);
        }
        if step % 50 == 0 || step == steps {
            eval(learner.policy(), &format!("step {step}"))?;
        }
    }
    if steps > 0 {
        learner.policy().save(out.join("tiny-math-policy"))?;
    }
    Ok(())
}
