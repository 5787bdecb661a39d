//! A custom recipe: greedy chain-of-thought accuracy of a model on the first GSM8K questions.
//! `cargo run --release -p mathrl-recipes --example custom_recipe -- [MODEL_DIR] [N]`
use anyhow::{Context, Result};
use mathrl::{model::Trainable, Policy, Tokenizer};
use mathrl_recipes::eval::{datasets, evaluate, recipe::default_model_dir, EvalMode};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_dir = args.next().map_or_else(default_model_dir, Into::into);
    let questions: usize = args.next().map_or(Ok(20), |n| n.parse()).context("N")?;
    let device = mathrl::device::parse_device("cpu")?;
    let policy = Policy::load(&model_dir, &device, None, Trainable::No)?;
    let tokenizer = Tokenizer::from_dir(&model_dir)?;
    let data_dir = datasets::default_data_dir();
    let items = datasets::load_dataset(&data_dir, "gsm8k", Some(questions))?;
    let checker = mathrl_rewards::Checker::new(mathrl_rewards::CheckerProfile::Qwen25Math);
    let mode = EvalMode::greedy_cot(512);
    let result = evaluate(&policy, &tokenizer, &items, &mode, &checker, None)?;
    let percent = 100.0 * result.accuracy;
    println!("gsm8k {}: {percent:.1}% of {}", result.mode, result.n);
    Ok(())
}
