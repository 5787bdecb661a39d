//! The answer filter of synthesized problems: a rephrasing keeps its seed's gold answer, any
//! other problem's answer must agree with the majority of fresh CoT (or, with `tir`, TIR)
//! solutions (self-consistency).

use anyhow::Result;
use mathrl::generation::{Engine, SamplingParams};
use mathrl::tokenizer::ChatMessage;
use mathrl::Tokenizer;
use mathrl_rewards::Verifier;

use super::{Candidate, Funnel, Kind, SynthesizeConfig};
use crate::eval::prompts::PromptFormat;
use crate::eval::voting::majority_vote;

/// Keeps the candidates whose answer checks against the seed's gold (rephrasings of seeds with
/// one) or agrees with the majority of `consistency_samples` fresh solutions by `solver` (the
/// rest), with the check used (`gold` / `self-consistency`) and the agreement.
pub(super) fn filter(
    solver: &mut Engine,
    tokenizer: &Tokenizer,
    candidates: Vec<Candidate>,
    config: &SynthesizeConfig,
    seed: u64,
    checker: &dyn Verifier,
    funnel: &mut Funnel,
) -> Result<Vec<(Candidate, &'static str, f64)>> {
    let (with_gold, without): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|c| c.seed_gold.is_some());
    let mut kept = Vec::new();
    for c in with_gold {
        let gold = c.seed_gold.as_deref().expect("partitioned on it");
        if checker.verify(&c.solution, gold, None).is_correct() {
            kept.push((c, "gold", 1.0));
        } else {
            funnel.rejected += 1;
        }
    }
    if !without.is_empty() {
        let params = SamplingParams {
            n: config.consistency_samples.max(1),
            temperature: 0.7,
            top_p: 0.8,
            max_new_tokens: config.max_new_tokens,
            seed: seed.wrapping_add(0x5EED),
            ..SamplingParams::default()
        };
        let format = PromptFormat::of_tir(config.tir);
        let prompts = without
            .iter()
            .map(|c| {
                let messages = [
                    ChatMessage::new("system", format.system_prompt()),
                    ChatMessage::new("user", &c.question),
                ];
                Ok(tokenizer.encode(&tokenizer.apply_chat_template(&messages, true)?)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let out = solver.generate(&prompts, &params)?;
        for (group, c) in out.groups.iter().zip(without) {
            let texts = group.texts(tokenizer)?;
            let answer = c.answer.clone().expect("parsed candidates have an answer");
            let verdicts: Vec<_> = texts
                .iter()
                .map(|t| checker.verify(t, &answer, None))
                .collect();
            let answers: Vec<Option<String>> =
                verdicts.iter().map(|v| v.extracted.clone()).collect();
            let agreement = verdicts.iter().filter(|v| v.is_correct()).count() as f64
                / texts.len().max(1) as f64;
            let majority_agrees = majority_vote(&answers).is_some_and(|i| verdicts[i].is_correct());
            if majority_agrees && agreement >= config.min_agreement {
                kept.push((c, "self-consistency", agreement));
            } else {
                funnel.rejected += 1;
            }
        }
    }
    kept.sort_by_key(|(c, _, _)| (c.seed_line, c.kind == Kind::NewProblem));
    funnel.kept = kept.len();
    Ok(kept)
}
