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
        name: "logprobs",
        description:
            "per-token log-probs of given token ids (--model DIR --input IN.json --output OUT.json)",
        run: crate::logprobs::run,
    }, Recipe {
        name: "rm-score",
        description: "reward-model scores of token ids or (question, response) pairs (--rm DIR --input IN --output OUT)",
        run: crate::rm_score::run,
    }, Recipe {
        name: "grade",
        description: "check answers against gold answers (--input IN.jsonl --output OUT.jsonl [--checker qwen25-math|strict])",
        run: crate::grade::run,
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
