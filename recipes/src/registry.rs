//! The registry of recipes: name, one-line description and entry point.

use anyhow::{bail, Result};

use crate::cli::Cli;

/// A recipe the binary can run.
pub struct Recipe {
    /// The name given to `--recipe`.
    pub name: &'static str,
    /// One line for `--list-recipes`.
    pub description: &'static str,
    /// Runs the recipe with the parsed command line.
    pub run: fn(&Cli) -> Result<()>,
}

/// Every recipe, in the order `--list-recipes` shows them.
pub fn recipes() -> Vec<Recipe> {
    vec![Recipe {
        name: "qwen25-math-rl",
        description: "GRPO with the report's shaped reward on rollout/reward actors; the embedded default with no arguments ([--model DIR --data qa.jsonl] [--rm DIR])",
        run: crate::train::qwen25_math_rl::run,
    }, Recipe {
        name: "pipeline",
        description: "the report's loop: SFT → RM → rounds of (SFT-data evolution → RM retraining) → RL → eval (--model BASE --data sft.jsonl --set qa_data=qa.jsonl [--set rounds=N])",
        run: crate::train::pipeline::run,
    }, Recipe {
        name: "logprobs",
        description:
            "per-token log-probs of given token ids (--model DIR --input IN.json --output OUT.json)",
        run: crate::tools::logprobs::run,
    }, Recipe {
        name: "rm-score",
        description: "reward-model scores of token ids or (question, response) pairs (--rm DIR --input IN --output OUT)",
        run: crate::tools::rm_score::run,
    }, Recipe {
        name: "grade",
        description: "check answers against gold answers (--input IN.jsonl --output OUT.jsonl [--checker qwen25-math|strict])",
        run: crate::tools::grade::run,
    }, Recipe {
        name: "decontaminate",
        description: "copy a JSONL data file without the lines whose question shares a 13-gram with (or nearly copies) an evaluation question; removed lines to OUT.removed.jsonl (--input IN.jsonl --output OUT.jsonl [--data-dir DIR])",
        run: crate::tools::decontaminate::run,
    }, Recipe {
        name: "python",
        description: "run {\"code\": ...} lines in the TIR sandbox; writes {output, status, seconds} per line (--input IN.jsonl --output OUT.jsonl [--set tool.KEY=VALUE])",
        run: crate::tools::python::run,
    }, Recipe {
        name: "sandbox-check",
        description: "print which isolation layers of the TIR sandbox are active here, and why a missing one is missing",
        run: crate::tools::sandbox_check::run,
    }, Recipe {
        name: "sft",
        description: "supervised fine-tuning on {\"messages\": [...]} JSONL (--model DIR --data FILE)",
        run: crate::train::sft::run,
    }, Recipe {
        name: "rm-retraining",
        description: "sample, label with the checker, train the RM with the listwise loss (--model DIR --data qa.jsonl [--rm DIR])",
        run: crate::train::rm_retraining::run,
    }, Recipe {
        name: "tiny-bootstrap",
        description: "reproduce the embedded default from scratch: tokenizer, SFT policy and RM on the procedural task",
        run: crate::train::tiny_bootstrap::run,
    }, Recipe {
        name: "eval",
        description: "accuracy on the Qwen2.5-Math evaluation sets: greedy CoT, TIR, Maj@N, RM@N ([--model DIR] --datasets gsm8k,math500 [--limit N])",
        run: crate::eval::recipe::run,
    }, Recipe {
        name: "generate",
        description: "sample completions for JSONL prompts: text, token ids, log-probs, finish reason (--model DIR --input IN.jsonl --output OUT.jsonl [--set n=4] [--set tir=true])",
        run: crate::tools::generate::run,
    }, Recipe {
        name: "sft-data-evolution",
        description: "rounds of: sample K per question, keep checked-correct, top m by RM, fine-tune (--model DIR --data qa.jsonl [--rm DIR])",
        run: crate::train::sft_data_evolution::run,
    }, Recipe {
        name: "tir-data-evolution",
        description: "TIR SFT data by online rejection fine-tuning: rounds of sample K tool-integrated trajectories (python in the sandbox), keep checked-correct (or majority), top m by RM, fine-tune with tool output masked (--model DIR --data qa.jsonl [--rm DIR])",
        run: crate::train::tir_data_evolution::run,
    }, Recipe {
        name: "synthesize",
        description: "an instruct model rephrases and extends seed problems, then evolves the kept ones over rounds; exact + MinHash dedup, answer/self-consistency filter, JSONL (--model DIR --data seeds.jsonl [--set rounds=N])",
        run: crate::tools::synthesize::run,
    }]
}

/// Finds a recipe by name; an unknown name is an error listing the known ones.
pub fn find_recipe(name: &str) -> Result<Recipe> {
    let all = recipes();
    let known: Vec<&str> = all.iter().map(|r| r.name).collect();
    match all.into_iter().find(|r| r.name == name) {
        Some(recipe) => Ok(recipe),
        None => bail!(
            "unknown recipe `{name}`; known recipes: {}",
            known.join(", ")
        ),
    }
}
