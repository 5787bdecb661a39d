//! Generation of candidates: the instructions of a round (round 1's rephrasings and new problems
//! of the seeds, a later round's evolutions of the problems the round before kept), the instruct
//! model's sampling, and the parsing of its `Problem: … Solution: …` replies.

use anyhow::Result;
use mathrl::data::QaRecord;
use mathrl::generation::{Engine, SamplingParams};
use mathrl::tokenizer::ChatMessage;
use mathrl::Tokenizer;
use mathrl_rewards::Verifier;

use super::operators::{self, Operator};
use super::{Candidate, Funnel, Kind, SynthesizeConfig};

/// One instruction to the instruct model and what its replies descend from.
pub(super) struct Request {
    /// The instruction (the user turn).
    instruction: String,
    kind: Kind,
    operator: Option<Operator>,
    seed_line: usize,
    /// The gold answer a reply must keep (rephrasings of seeds with one).
    seed_gold: Option<String>,
}

/// The instructions of round `round` (> 1): each problem the round before kept, evolved by its
/// operator (chosen from `seed`, the round and its place).
pub(super) fn evolution_requests(
    previous: &[Candidate],
    config: &SynthesizeConfig,
    seed: u64,
    round: usize,
) -> Vec<Request> {
    let evolution = &config.evolution;
    previous
        .iter()
        .enumerate()
        .filter_map(|(index, problem)| {
            let (operator, partner) =
                operators::choose(&evolution.operators, seed, round, index, previous.len())?;
            let other = partner.map_or("", |p| previous[p].question.as_str());
            Some(Request {
                instruction: evolution.instruction(operator, &problem.question, other),
                kind: Kind::Evolved,
                operator: Some(operator),
                seed_line: problem.seed_line,
                seed_gold: None,
            })
        })
        .collect()
}

/// The instruct model's sampling for `n` replies per instruction; `task` picks the seed of the
/// stream (0 and 1: round 1's rephrasings and new problems, r: round r's evolutions).
pub(super) fn sampling(
    config: &SynthesizeConfig,
    n: usize,
    seed: u64,
    task: usize,
) -> SamplingParams {
    SamplingParams {
        n,
        temperature: config.temperature,
        top_p: config.top_p,
        max_new_tokens: config.max_new_tokens,
        seed: seed.wrapping_mul(31).wrapping_add(task as u64),
        ..SamplingParams::default()
    }
}

/// Samples rephrasings and new problems of every seed and parses them.
pub(super) fn generate_candidates(
    engine: &mut Engine,
    tokenizer: &Tokenizer,
    seeds: &[QaRecord],
    config: &SynthesizeConfig,
    seed: u64,
    checker: &dyn Verifier,
    funnel: &mut Funnel,
) -> Result<Vec<Candidate>> {
    let mut candidates = Vec::new();
    let tasks = [
        (
            Kind::Rephrase,
            &config.rephrase_prompt,
            config.rephrasings_per_seed,
        ),
        (
            Kind::NewProblem,
            &config.new_problem_prompt,
            config.new_problems_per_seed,
        ),
    ];
    for (task, (kind, template, n)) in tasks.into_iter().enumerate() {
        if n == 0 {
            continue;
        }
        let requests: Vec<Request> = seeds
            .iter()
            .enumerate()
            .map(|(i, s)| Request {
                instruction: template.replace("{question}", &s.question),
                kind,
                operator: None,
                seed_line: i + 1,
                seed_gold: (kind == Kind::Rephrase).then(|| s.gold.clone()).flatten(),
            })
            .collect();
        let params = sampling(config, n, seed, task);
        candidates.extend(generate(
            engine, tokenizer, &requests, &params, config, 1, checker, funnel,
        )?);
    }
    Ok(candidates)
}

/// Samples `params.n` replies per request, in batches of `seeds_per_batch`, and parses them
/// into the candidates of `round`.
#[allow(clippy::too_many_arguments)]
pub(super) fn generate(
    engine: &mut Engine,
    tokenizer: &Tokenizer,
    requests: &[Request],
    params: &SamplingParams,
    config: &SynthesizeConfig,
    round: usize,
    checker: &dyn Verifier,
    funnel: &mut Funnel,
) -> Result<Vec<Candidate>> {
    let mut candidates = Vec::new();
    let bar = crate::run::progress_bar(requests.len() as u64, "synthesize");
    for (chunk_index, chunk) in requests.chunks(config.seeds_per_batch.max(1)).enumerate() {
        let prompts = chunk
            .iter()
            .map(|r| {
                let text = tokenizer
                    .apply_chat_template(&[ChatMessage::new("user", &r.instruction)], true)?;
                Ok(tokenizer.encode(&text)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let chunk_params = crate::chunk_seed::chunk_sampling_params(params, chunk_index);
        let out = engine.generate(&prompts, &chunk_params)?;
        for (group, r) in out.groups.iter().zip(chunk) {
            for c in &group.completions {
                funnel.generated += 1;
                let text = match &c.text {
                    Some(text) => text.clone(),
                    None => tokenizer.decode(&c.token_ids, true)?,
                };
                let Some((question, solution)) = parse_problem(&text) else {
                    continue;
                };
                let answer = checker.verify(&solution, "", None).extracted;
                if answer.is_none() {
                    continue;
                }
                funnel.parsed += 1;
                candidates.push(Candidate {
                    question,
                    solution,
                    answer,
                    kind: r.kind,
                    operator: r.operator,
                    round,
                    seed_line: r.seed_line,
                    seed_gold: r.seed_gold.clone(),
                });
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(candidates)
}

/// The problem and solution of a `Problem: … Solution: …` reply.
pub fn parse_problem(text: &str) -> Option<(String, String)> {
    let start = text.find("Problem:")? + "Problem:".len();
    let rest = &text[start..];
    let split = rest.find("Solution:")?;
    let question = rest[..split].trim();
    let solution = rest[split + "Solution:".len()..].trim();
    (!question.is_empty() && !solution.is_empty())
        .then(|| (question.to_string(), solution.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::synthesize::test_candidate as candidate;

    #[test]
    fn replies_parse_into_problem_and_solution() {
        assert_eq!(
            parse_problem("Sure!\nProblem: What is 2+3?\nSolution: 2+3=5, so \\boxed{5}."),
            Some(("What is 2+3?".into(), "2+3=5, so \\boxed{5}.".into()))
        );
        assert_eq!(parse_problem("Problem: x\n"), None);
        assert_eq!(parse_problem("Problem: \nSolution: y"), None);
        assert_eq!(parse_problem("no format"), None);
    }

    #[test]
    fn evolution_requests_use_the_chosen_operator_and_keep_the_lineage() {
        let config = SynthesizeConfig::default();
        let kept: Vec<Candidate> = ["What is 2+3?", "What is 7*8?", "Solve x+1=4."]
            .iter()
            .enumerate()
            .map(|(i, q)| Candidate {
                seed_line: 10 + i,
                ..candidate(q)
            })
            .collect();
        let requests = evolution_requests(&kept, &config, 5, 2);
        assert_eq!(requests.len(), 3);
        for (i, r) in requests.iter().enumerate() {
            let (op, partner) = operators::choose(&config.evolution.operators, 5, 2, i, 3).unwrap();
            assert_eq!(
                (r.kind, r.operator, r.seed_line),
                (Kind::Evolved, Some(op), 10 + i)
            );
            assert_eq!(
                r.instruction,
                config.evolution.instruction(
                    op,
                    &kept[i].question,
                    partner.map_or("", |p| kept[p].question.as_str())
                )
            );
            assert!(r.seed_gold.is_none());
        }
        assert_eq!(
            requests.iter().map(|r| &r.instruction).collect::<Vec<_>>(),
            evolution_requests(&kept, &config, 5, 2)
                .iter()
                .map(|r| &r.instruction)
                .collect::<Vec<_>>()
        );
    }
}
