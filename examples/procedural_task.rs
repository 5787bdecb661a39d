//! Writes the procedural task's splits as JSONL and trains its tokenizer, printing sample problems,
//! timings and token lengths.
//!
//! `cargo run --release --example procedural_task -- OUT_DIR [TRAIN_COUNT] [VOCAB_SIZE]`
//! writes OUT_DIR/{train_sft.jsonl, train.jsonl, held_out.jsonl, test.jsonl, tokenizer/}.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use mathrl::data::jsonl::{write_messages_jsonl, write_question_answer_jsonl};
use mathrl::data::procedural::{Problem, ProceduralTask, Split, TaskConfig};
use mathrl::tokenizer_training::{chatml_conversation, train_tokenizer};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        args.first()
            .context("usage: procedural_task OUT_DIR [TRAIN_COUNT] [VOCAB_SIZE]")?,
    );
    let train_count: usize = args
        .get(1)
        .map_or(Ok(50_000), |s| s.parse())
        .context("TRAIN_COUNT")?;
    let vocab_size: usize = args
        .get(2)
        .map_or(Ok(1024), |s| s.parse())
        .context("VOCAB_SIZE")?;
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;

    let task = ProceduralTask::new(TaskConfig::default())?;
    let start = Instant::now();
    let train: Vec<Problem> = task.problems(Split::Train).take(train_count).collect();
    let held_out: Vec<Problem> = task.problems(Split::HeldOut).take(1000).collect();
    let test: Vec<Problem> = task.problems(Split::Test).take(1000).collect();
    println!(
        "generated {} problems in {:.2?}",
        train.len() + 2000,
        start.elapsed()
    );
    for p in train.iter().take(6) {
        println!(
            "\n[{:?}, {} steps] {}\n{}",
            p.template, p.steps, p.question, p.solution
        );
    }
    let distinct: std::collections::HashSet<&str> =
        train.iter().map(|p| p.question.as_str()).collect();
    println!(
        "\ndistinct training questions: {} of {}",
        distinct.len(),
        train.len()
    );

    write_messages_jsonl(&out.join("train_sft.jsonl"), &train)?;
    write_question_answer_jsonl(&out.join("train.jsonl"), &train)?;
    write_question_answer_jsonl(&out.join("held_out.jsonl"), &held_out)?;
    write_question_answer_jsonl(&out.join("test.jsonl"), &test)?;

    let start = Instant::now();
    let corpus = train
        .iter()
        .map(|p| chatml_conversation(&p.question, &p.solution));
    let tokenizer = train_tokenizer(corpus, vocab_size, &out.join("tokenizer"))?;
    println!(
        "trained a {}-id tokenizer on {} conversations in {:.2?}",
        tokenizer.vocab_size(),
        train.len(),
        start.elapsed()
    );

    let mean = |f: &dyn Fn(&Problem) -> String| -> Result<f64> {
        let mut total = 0;
        for p in &held_out {
            total += tokenizer.encode(&f(p))?.len();
        }
        Ok(total as f64 / held_out.len() as f64)
    };
    let prompt = mean(&|p| {
        tokenizer
            .question_prompt(&p.question, None)
            .expect("renders")
    })?;
    let question = mean(&|p| p.question.clone())?;
    let solution = mean(&|p| p.solution.clone())?;
    let both = mean(&|p| format!("{}{}", p.question, p.solution))?;
    let full = mean(&|p| chatml_conversation(&p.question, &p.solution))?;
    println!("mean tokens on held-out: question {question:.1}, solution {solution:.1}, question+solution {both:.1}, prompt {prompt:.1}, full conversation {full:.1}");
    let longest = held_out
        .iter()
        .map(|p| {
            tokenizer
                .encode(&chatml_conversation(&p.question, &p.solution))
                .map(|ids| ids.len())
        })
        .collect::<mathrl::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    println!("longest held-out conversation: {longest} tokens");
    Ok(())
}
