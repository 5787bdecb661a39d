//! `tiny-bootstrap`: reproduces the embedded default from scratch, with nothing downloaded —
//! the procedural task's tokenizer, a small Qwen2 policy trained from random weights by the SFT
//! loop, and a small reward model trained by the RM-retraining loop on that policy's samples.
//!
//! SFT runs in two stages. The first trains on worked solutions (every step written out, then
//! `The answer is \boxed{N}.`) until greedy held-out accuracy reaches a bar. The second is a
//! short SFT on data most of whose answers are bare (`\boxed{N}` alone, as in data sets scraped
//! without their reasoning): the policy keeps both styles but now answers greedily without
//! reasoning, which a 2M-parameter model gets right far less often. That gap is the room the
//! embedded default's RL run has: GRPO finds that completions which reason score higher, as RL
//! elicits reasoning in Qwen2.5-Math.
//!
//! `mathrl --recipe tiny-bootstrap [--output DIR]` writes `DIR/assets/{tiny-math-policy,
//! tiny-math-rm}`; copy them over `recipes/assets/` to refresh the shipped ones.

use anyhow::{Context, Result};
use candle_core::DType;
use mathrl::data::procedural::{Problem, ProceduralTask, Split, TaskConfig};
use mathrl::data::QaRecord;
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::tokenizer_training::{chatml_conversation, train_tokenizer};
use mathrl::{ChatMessage, Policy};
use mathrl_learners::sft_data::Conversation;
use mathrl_learners::{Decay, LrSchedule};
use mathrl_rewards::{RewardHeadKind, RewardModel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::driver::prepare;
use crate::eval::EvalMode;
use crate::run::{print_summary, RunContext};
use crate::train::accuracy::{greedy_accuracy, Accuracy};
use crate::train::reasoning::Reasoning;
use crate::train::rm_retraining::{retrain_rm, RmRetrainingConfig};
use crate::train::sft::{train_sft, SftOutcome, SftRecipeConfig};

/// Shape of the small policy (a Qwen2 with tied embeddings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TinyModelConfig {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads (head dim = hidden_size / heads).
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Longest sequence.
    pub max_position_embeddings: usize,
}

impl Default for TinyModelConfig {
    fn default() -> Self {
        Self {
            hidden_size: 192,
            num_hidden_layers: 4,
            num_attention_heads: 6,
            num_key_value_heads: 2,
            intermediate_size: 512,
            max_position_embeddings: 512,
        }
    }
}

/// Settings of the `tiny-bootstrap` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TinyBootstrapConfig {
    /// The procedural task (seed, difficulty, splits).
    pub task: TaskConfig,
    /// Training problems the tokenizer is trained on.
    pub tokenizer_problems: usize,
    /// Ids the tokenizer asks for (the corpus may run out of merges first).
    pub tokenizer_vocab: usize,
    /// The policy's shape.
    pub model: TinyModelConfig,
    /// Training problems for SFT.
    pub sft_problems: usize,
    /// The first SFT stage, on worked solutions; `sft.steps` is the most it may take.
    pub sft: SftRecipeConfig,
    /// Stop the first SFT stage at the first greedy held-out check at or above this accuracy.
    pub sft_stop_accuracy: f64,
    /// SFT steps between greedy held-out checks.
    pub sft_check_every: u64,
    /// Share of the second stage's problems answered with a bare `\boxed{answer}` instead of
    /// the worked solution (each problem drawn with this probability from the run's seed).
    pub answer_only_fraction: f64,
    /// The second SFT stage, on the same problems with that share of bare answers.
    pub answer_only_sft: SftRecipeConfig,
    /// Training problems (after the SFT ones) the RM's samples are drawn for.
    pub rm_problems: usize,
    /// The RM-retraining loop.
    pub rm: RmRetrainingConfig,
    /// Held-out questions of the greedy accuracy.
    pub eval_questions: usize,
    /// Longest greedy answer.
    pub max_new_tokens: usize,
}

impl Default for TinyBootstrapConfig {
    fn default() -> Self {
        let mut sft = SftRecipeConfig {
            // A 600-step cosine schedule (below); the accuracy check usually stops it earlier.
            steps: 600,
            batch_size: 32,
            eval_examples: 64,
            eval_every: 100,
            checkpoint_every: 50,
            keep_checkpoints: 20,
            ..SftRecipeConfig::default()
        };
        sft.learner.max_length = 512;
        sft.learner.micro_batch_size = 32;
        sft.learner.train_step.schedule = LrSchedule {
            peak_lr: 2e-3,
            warmup_steps: 20,
            decay: Decay::Cosine {
                total_steps: 600,
                min_lr_ratio: 0.1,
            },
        };
        // Short and at a constant rate: enough to make bare answers the greedy choice (194 of 200
        // held-out answers after 100 steps) while worked solutions stay in the distribution.
        let mut answer_only_sft = SftRecipeConfig {
            steps: 100,
            checkpoint_dir: "answer-only-checkpoints".into(),
            ..sft.clone()
        };
        answer_only_sft.learner.train_step.schedule = LrSchedule::constant(5e-4);
        let mut rm = RmRetrainingConfig {
            samples_per_query: 6,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 160,
            eval_queries: 64,
            epochs: 2,
            queries_per_step: 16,
            // The first SFT stage's checkpoints are in `checkpoints/`.
            checkpoint_dir: "rm-checkpoints".into(),
            ..RmRetrainingConfig::default()
        };
        rm.learner.micro_batch_queries = 16;
        rm.learner.train_step.schedule = LrSchedule::constant(1e-3);
        Self {
            task: crate::assets::embedded_task(),
            tokenizer_problems: 2000,
            tokenizer_vocab: 1024,
            model: TinyModelConfig::default(),
            sft_problems: 30_000,
            sft,
            sft_stop_accuracy: 0.4,
            sft_check_every: 50,
            answer_only_fraction: 0.7,
            answer_only_sft,
            rm_problems: 768,
            rm,
            eval_questions: 200,
            max_new_tokens: 160,
        }
    }
}

/// The policy's Qwen2 config for `tokenizer_vocab` ids (padded to a multiple of 64).
pub fn policy_config(model: &TinyModelConfig, vocab: usize, eos: u32, pad: u32) -> Qwen2Config {
    Qwen2Config {
        vocab_size: vocab.next_multiple_of(64),
        hidden_size: model.hidden_size,
        intermediate_size: model.intermediate_size,
        num_hidden_layers: model.num_hidden_layers,
        num_attention_heads: model.num_attention_heads,
        num_key_value_heads: model.num_key_value_heads,
        max_position_embeddings: model.max_position_embeddings,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        torch_dtype: Some("float32".into()),
        bos_token_id: None,
        eos_token_ids: vec![eos],
        pad_token_id: Some(pad),
        architecture: None,
        num_labels: None,
    }
}

/// (question, gold) pairs of `problems`.
pub fn qa_items(problems: &[Problem]) -> Vec<QaRecord> {
    problems.iter().map(QaRecord::from).collect()
}

/// The SFT conversations of `problems`: each answered by its worked solution, or with
/// probability `answer_only_fraction` by a bare `\boxed{answer}`.
pub fn sft_conversations(
    problems: &[Problem],
    answer_only_fraction: f64,
    seed: u64,
) -> Result<Vec<Conversation>> {
    if !(0.0..=1.0).contains(&answer_only_fraction) {
        anyhow::bail!("answer_only_fraction: {answer_only_fraction} is not in [0, 1]");
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x616E_7377_6572_0001);
    Ok(problems
        .iter()
        .map(|p| {
            let answer = if rng.random_bool(answer_only_fraction) {
                format!("\\boxed{{{}}}", p.answer)
            } else {
                p.solution.clone()
            };
            Conversation {
                messages: vec![
                    ChatMessage::new("user", &p.question),
                    ChatMessage::new("assistant", &answer),
                ],
            }
        })
        .collect())
}

/// SFT in chunks of `sft_check_every` steps (each chunk resumes from the previous one's
/// checkpoint, so the run is the same as one uninterrupted loop) until the greedy held-out
/// accuracy reaches `sft_stop_accuracy` or `sft.steps` are done.
fn sft_until_accuracy(
    mut policy: Policy,
    tokenizer: &mathrl::Tokenizer,
    conversations: &[Conversation],
    held_out: &[QaRecord],
    config: &TinyBootstrapConfig,
    run: &RunContext,
) -> Result<(SftOutcome, Accuracy)> {
    let verifier = crate::train::verifier::default_verifier();
    let max_steps = run
        .max_steps
        .map_or(config.sft.steps, |m| m.min(config.sft.steps));
    let mut done = 0;
    loop {
        let mut chunk = config.sft.clone();
        chunk.steps = (done + config.sft_check_every.max(1)).min(max_steps);
        let outcome = train_sft(policy, tokenizer, conversations, &chunk, run)?;
        done = outcome.steps;
        let accuracy = greedy_accuracy(
            &outcome.policy,
            tokenizer,
            held_out,
            verifier.as_ref(),
            &EvalMode::greedy_cot(config.max_new_tokens),
        )?;
        run.metrics
            .scalar("sft/stop_check_accuracy", done, accuracy.accuracy);
        tracing::info!(
            step = done,
            accuracy = accuracy.accuracy,
            n = accuracy.n,
            "SFT stop check (greedy, held-out)"
        );
        if accuracy.accuracy >= config.sft_stop_accuracy || done >= max_steps {
            return Ok((outcome, accuracy));
        }
        policy = outcome.policy;
    }
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<TinyBootstrapConfig>(cli, "tiny-bootstrap")? else {
        return Ok(());
    };
    let config = &recipe.config;
    // `--resume RUN_DIR` has made RUN_DIR the output: each stage resumes from its own
    // checkpoints there, none from another stage's.
    let mut own = cli.clone();
    own.resume = None;
    let run = recipe.start_with(&own)?;
    let assets = run.path("assets");
    let task = ProceduralTask::new(config.task.clone())?;
    let train: Vec<Problem> = task
        .problems(Split::Train)
        .take(config.sft_problems + config.rm_problems)
        .collect();
    // The first `eval_questions` held-out problems are the reported (and the RL recipe's) figure;
    // the next as many decide when SFT stops, so that the figure is not selected on.
    let held_out: Vec<Problem> = task
        .problems(Split::HeldOut)
        .take(2 * config.eval_questions)
        .collect();
    let (report_set, stop_set) = held_out.split_at(config.eval_questions.min(held_out.len()));

    // 1. Tokenizer on the first training conversations.
    let tokenizer_dir = run.path("tokenizer");
    let corpus = train
        .iter()
        .take(config.tokenizer_problems)
        .map(|p| chatml_conversation(&p.question, &p.solution));
    let tokenizer = train_tokenizer(corpus, config.tokenizer_vocab, &tokenizer_dir)?;
    let eos = tokenizer
        .eos_token_id()
        .context("the trained tokenizer has no eos token")?;
    let pad = tokenizer.pad_token_id().unwrap_or(eos);

    // 2. SFT from random weights on worked solutions.
    let model_config = policy_config(&config.model, tokenizer.vocab_size(), eos, pad);
    let policy = Policy::random(
        &model_config,
        run.seed,
        &run.device,
        DType::F32,
        Trainable::Yes,
    )?
    .with_side_files_from(&tokenizer_dir);
    tracing::info!(parameters = policy.num_parameters(), "tiny policy");
    let sft_problems = &train[..config.sft_problems.min(train.len())];
    let conversations = sft_conversations(sft_problems, 0.0, run.seed)?;
    let verifier = crate::train::verifier::default_verifier();
    let (worked, _) = sft_until_accuracy(
        policy,
        &tokenizer,
        &conversations,
        &qa_items(stop_set),
        config,
        &run,
    )?;
    let worked_accuracy = greedy_accuracy(
        &worked.policy,
        &tokenizer,
        &qa_items(report_set),
        verifier.as_ref(),
        &EvalMode::greedy_cot(config.max_new_tokens),
    )?;
    tracing::info!(
        steps = worked.steps,
        accuracy = worked_accuracy.accuracy,
        "SFT on worked solutions done (greedy, held-out)"
    );

    // 3. SFT on mostly bare answers: the policy's greedy answers stop reasoning.
    let mixed = sft_conversations(sft_problems, config.answer_only_fraction, run.seed)?;
    let sft = train_sft(
        worked.policy,
        &tokenizer,
        &mixed,
        &config.answer_only_sft,
        &run,
    )?;
    let policy_dir = assets.join("tiny-math-policy");
    sft.policy.save(&policy_dir)?;
    let accuracy = greedy_accuracy(
        &sft.policy,
        &tokenizer,
        &qa_items(report_set),
        verifier.as_ref(),
        &EvalMode::greedy_cot(config.max_new_tokens),
    )?;

    // 4. RM from the policy's backbone, trained on its labelled samples.
    let rm_items = qa_items(&train[config.sft_problems.min(train.len())..]);
    let rm_start = RewardModel::from_policy(
        &sft.policy,
        RewardHeadKind::Qwen25MathRm,
        run.seed,
        Trainable::Yes,
    )?;
    let rm = retrain_rm(
        &sft.policy,
        rm_start,
        &tokenizer,
        &rm_items,
        verifier,
        &config.rm,
        &Reasoning::cot(),
        &run,
    )?;
    let rm_dir = assets.join("tiny-math-rm");
    rm.rm.save(&rm_dir)?;

    let summary = serde_json::json!({
        "policy": {"parameters": sft.policy.num_parameters(), "sft_steps": worked.steps,
                   "worked_solutions_accuracy": worked_accuracy.accuracy,
                   "answer_only_sft_steps": sft.steps,
                   "held_out_accuracy": accuracy.accuracy, "n": accuracy.n,
                   "eval_loss": sft.eval_loss},
        "rm": {"pairwise_accuracy_before": rm.accuracy_before, "pairwise_accuracy_after": rm.accuracy_after,
               "steps": rm.steps, "positives": rm.positives.0, "samples": rm.positives.1},
        "seconds": run.elapsed().as_secs_f64(),
    });
    std::fs::write(
        assets.join("bootstrap.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    run.write_summary(&summary)?;
    print_summary(
        &run,
        &[
            (
                "policy",
                format!(
                    "{} ({:.2}M parameters)",
                    policy_dir.display(),
                    sft.policy.num_parameters() as f64 / 1e6
                ),
            ),
            (
                "held-out acc",
                format!(
                    "{:.1}% of {} ({:.1}% after the worked-solution stage)",
                    100.0 * accuracy.accuracy,
                    accuracy.n,
                    100.0 * worked_accuracy.accuracy
                ),
            ),
            ("reward model", rm_dir.display().to_string()),
            (
                "RM pairwise",
                format!("{:?} -> {:?}", rm.accuracy_before, rm.accuracy_after),
            ),
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(conversations: &[Conversation]) -> Vec<&str> {
        conversations
            .iter()
            .map(|c| c.messages[1].content.as_str())
            .collect()
    }

    #[test]
    fn the_sft_corpus_mixes_bare_answers_and_worked_solutions_in_the_configured_share() {
        let task = ProceduralTask::new(crate::assets::embedded_task()).unwrap();
        let problems: Vec<Problem> = task.problems(Split::Train).take(2000).collect();
        let worked = sft_conversations(&problems, 0.0, 7).unwrap();
        assert!(answers(&worked)
            .iter()
            .zip(&problems)
            .all(|(a, p)| *a == p.solution));
        let bare = sft_conversations(&problems, 1.0, 7).unwrap();
        assert!(answers(&bare)
            .iter()
            .zip(&problems)
            .all(|(a, p)| *a == format!("\\boxed{{{}}}", p.answer)));

        let mixed = sft_conversations(&problems, 0.6, 7).unwrap();
        let share = answers(&mixed)
            .iter()
            .filter(|a| a.starts_with("\\boxed"))
            .count() as f64
            / problems.len() as f64;
        // Binomial(2000, 0.6): the standard deviation of the share is 0.011; allow 3.2 of them.
        assert!((share - 0.6).abs() < 0.035, "share of bare answers {share}");
        assert_eq!(mixed, sft_conversations(&problems, 0.6, 7).unwrap());
        assert_ne!(mixed, sft_conversations(&problems, 0.6, 8).unwrap());
    }

    #[test]
    fn an_answer_only_fraction_outside_zero_to_one_is_refused_by_name() {
        let err = sft_conversations(&[], 1.5, 0).unwrap_err().to_string();
        assert!(err.contains("answer_only_fraction"), "{err}");
    }
}
