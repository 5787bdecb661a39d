//! `tir-data-evolution`: the report's tool-integrated-reasoning SFT data by online rejection
//! fine-tuning. Each round samples K TIR trajectories per question with the sandboxed Python
//! executor, keeps those whose final answer the checker accepts against the gold answer (or, for
//! a question without one, that give the majority answer of the K, when at least
//! `min_agreement` of them give it), optionally keeps the top m by RM score (`--rm`), writes them
//! as `{"messages": [...]}` JSONL with their output blocks inside the assistant turn, and
//! fine-tunes on them with the tool output masked out of the loss; the next round samples from
//! the fine-tuned model.
//!
//! `mathrl --recipe tir-data-evolution --model DIR --data qa.jsonl [--rm DIR] [--output DIR]`
//!
//! It is `sft-data-evolution`'s loop ([`run_rounds`]) with `tir = true` and `min_agreement =
//! 0.5` by default; the kept data of round r is `round-<r>/data.jsonl`, which the `sft` recipe
//! reads as it is.

use anyhow::Result;

use crate::cli::Cli;
use crate::driver::prepare_with;
use crate::train::sft_data_evolution::{run_rounds, EvolutionConfig};

/// The settings of `tir-data-evolution`: those of `sft-data-evolution` with TIR on and a
/// majority answer trusted only when half the samples give it (a program's output makes the
/// samples agree more often than free text does, so a plurality alone is weak evidence).
pub fn tir_defaults() -> EvolutionConfig {
    EvolutionConfig {
        tir: true,
        min_agreement: 0.5,
        ..EvolutionConfig::default()
    }
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare_with(cli, "tir-data-evolution", tir_defaults(), |_| {})? else {
        return Ok(());
    };
    run_rounds(recipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_sft_data_evolution_with_tir_on() {
        let tir = tir_defaults();
        assert!(tir.tir && tir.min_agreement == 0.5);
        let sft = EvolutionConfig::default();
        assert!(!sft.tir && sft.min_agreement == 0.0);
        assert_eq!(
            EvolutionConfig {
                tir: false,
                min_agreement: 0.0,
                ..tir
            },
            sft
        );
    }
}
