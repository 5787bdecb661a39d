//! `synthesize`: the report's data-synthesis step at small scale. An instruct model rephrases
//! seed problems (keeping their answer) and writes new problems from them (with their solutions);
//! the pairs are deduplicated, exactly and by MinHash near-duplicate detection (against each other
//! and the seeds), and filtered: a rephrased problem's answer must check against the seed's gold,
//! a new problem's answer must agree with the majority of fresh CoT solutions
//! (self-consistency). The survivors are written as JSONL.
//!
//! With `--set rounds=N`, each later round evolves the problems the round before kept (query
//! evolution, as the report's data synthesis does): one operator per problem, chosen from the
//! run's seed — add a constraint, change the numbers, combine with another kept problem, make it
//! harder — and the same dedup (against the seeds and every earlier round too) and
//! self-consistency filter.
//!
//! `mathrl --recipe synthesize --model INSTRUCT_DIR --data seeds.jsonl [--set rounds=N]
//! [--output DIR]` (`seeds.jsonl` lines: `{"question": .., "answer": ..}`, `answer` optional; a
//! seed without one has its rephrasings filtered by self-consistency too). Writes
//! `<output>/synthesized.jsonl`: `{"question", "solution", "answer", "kind", "operator", "round",
//! "seed_line", "check", "agreement"}`.

mod dedup;
mod operators;

use std::io::Write;

use anyhow::{bail, Result};
use mathrl::data::{load_qa, GoldAnswers, QaRecord};
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::model::Trainable;
use mathrl::tokenizer::ChatMessage;
use mathrl::{Policy, Tokenizer};
use mathrl_rewards::Verifier;
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::driver::prepare;
use crate::eval::prompts::COT_SYSTEM;
use crate::eval::voting::majority_vote;
use crate::output::OutputFile;
use crate::run::print_summary;
pub use dedup::Deduplicator;
pub use operators::{Operator, QueryEvolutionConfig};

/// Settings of the `synthesize` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthesizeConfig {
    /// Rounds of synthesis (default 1). Round 1 rephrases and extends the seeds; each later round
    /// evolves the problems the round before kept (see `evolution`).
    pub rounds: usize,
    /// Query evolution in rounds after the first: its operators, their instructions, and the
    /// evolved problems sampled per kept problem.
    pub evolution: QueryEvolutionConfig,
    /// Rephrasings per seed (they keep the seed's answer).
    pub rephrasings_per_seed: usize,
    /// New problems per seed.
    pub new_problems_per_seed: usize,
    /// The rephrasing instruction; `{question}` is replaced by the seed.
    pub rephrase_prompt: String,
    /// The new-problem instruction; `{question}` is replaced by the seed.
    pub new_problem_prompt: String,
    /// Sampling temperature of the instruct model.
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Longest generated problem + solution, in tokens.
    pub max_new_tokens: usize,
    /// Word n-gram length of the MinHash shingles.
    pub minhash_ngram: usize,
    /// MinHash bands × rows = hash functions.
    pub minhash_bands: usize,
    /// Rows per band.
    pub minhash_rows: usize,
    /// Estimated Jaccard similarity at or above which a problem is a near duplicate.
    pub near_duplicate_threshold: f64,
    /// Fresh CoT solutions sampled per problem without a gold answer.
    pub consistency_samples: usize,
    /// Share of those solutions that must give the problem's answer.
    pub min_agreement: f64,
    /// Seeds per generation call.
    pub seeds_per_batch: usize,
    /// Checker profile: `qwen25-math`.
    pub checker: String,
}

impl Default for SynthesizeConfig {
    fn default() -> Self {
        Self {
            rounds: 1,
            evolution: QueryEvolutionConfig::default(),
            rephrasings_per_seed: 2,
            new_problems_per_seed: 2,
            rephrase_prompt: "Rephrase the following math problem without changing its meaning or its answer, then solve it step by step and put the final answer within \\boxed{}.\n\nProblem: {question}\n\nReply as:\nProblem: <the rephrased problem>\nSolution: <the solution>\n".into(),
            new_problem_prompt: "Write a new math problem inspired by the following one, with different numbers or a different setting and a single final answer, then solve it step by step and put the final answer within \\boxed{}.\n\nProblem: {question}\n\nReply as:\nProblem: <the new problem>\nSolution: <the solution>\n".into(),
            temperature: 0.8,
            top_p: 0.95,
            max_new_tokens: 1024,
            minhash_ngram: 3,
            minhash_bands: 16,
            minhash_rows: 8,
            near_duplicate_threshold: 0.7,
            consistency_samples: 4,
            min_agreement: 0.5,
            seeds_per_batch: 16,
            checker: "qwen25-math".into(),
        }
    }
}

/// How a synthesized problem came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A rephrasing of its seed, with the seed's answer.
    Rephrase,
    /// A new problem written from its seed.
    NewProblem,
    /// A problem of the round before, evolved by an operator.
    Evolved,
}

/// One generated problem with its solution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The problem.
    pub question: String,
    /// Its generated solution.
    pub solution: String,
    /// The solution's extracted final answer.
    pub answer: Option<String>,
    /// Rephrasing, new problem or evolved problem.
    pub kind: Kind,
    /// The operator of an evolved problem.
    pub operator: Option<Operator>,
    /// The round that wrote it (1-based).
    pub round: usize,
    /// 1-based line of its seed (an evolved problem's: that of the seed it descends from).
    pub seed_line: usize,
    /// The seed's gold answer (rephrasings only).
    #[serde(skip)]
    pub seed_gold: Option<String>,
}

/// Counts of each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Funnel {
    /// Completions generated.
    pub generated: usize,
    /// Completions in the `Problem: … Solution: …` form with an answer.
    pub parsed: usize,
    /// Dropped as exact duplicates (of each other or of a seed).
    pub exact_duplicates: usize,
    /// Dropped as near duplicates.
    pub near_duplicates: usize,
    /// Dropped by the answer check or self-consistency.
    pub rejected: usize,
    /// Written.
    pub kept: usize,
}

impl Funnel {
    /// Adds another round's counts.
    pub fn add(&mut self, other: &Funnel) {
        self.generated += other.generated;
        self.parsed += other.parsed;
        self.exact_duplicates += other.exact_duplicates;
        self.near_duplicates += other.near_duplicates;
        self.rejected += other.rejected;
        self.kept += other.kept;
    }
}

/// One instruction to the instruct model and what its replies descend from.
struct Request {
    /// The instruction (the user turn).
    instruction: String,
    kind: Kind,
    operator: Option<Operator>,
    seed_line: usize,
    /// The gold answer a reply must keep (rephrasings of seeds with one).
    seed_gold: Option<String>,
}

/// Runs the recipe.
pub fn run(cli: &Cli) -> Result<()> {
    let Some(recipe) = prepare::<SynthesizeConfig>(cli, "synthesize")? else {
        return Ok(());
    };
    let config = &recipe.config;
    for (key, prompt) in [
        ("rephrase_prompt", &config.rephrase_prompt),
        ("new_problem_prompt", &config.new_problem_prompt),
    ] {
        if !prompt.contains("{question}") {
            bail!("config key `{key}` must contain `{{question}}`");
        }
    }
    if config.rounds == 0 {
        bail!("config key `rounds`: give at least 1 round");
    }
    if config.rounds > 1 {
        config.evolution.validate()?;
    }
    let model_dir = recipe.model_dir()?;
    let data = recipe.data_file("seeds.jsonl")?;
    let checker = crate::eval::recipe::checker(&config.checker)?;
    let seeds = load_qa(data, GoldAnswers::Optional)?;
    let run = recipe.start()?;
    let tokenizer = Tokenizer::from_dir(model_dir)?;
    let policy = Policy::load(model_dir, &run.device, cli.compute_dtype(), Trainable::No)?;
    let mut engine =
        Engine::from_policy(&policy, EngineConfig::default()).with_tokenizer(tokenizer.clone());
    let mut funnel = Funnel::default();
    let seed_texts: Vec<&str> = seeds.iter().map(|s| s.question.as_str()).collect();
    // One dedup state for every round: a round's problem must be new against all before it.
    let mut seen = Deduplicator::new(&seed_texts, config);
    let mut rounds = Vec::new();
    let mut all_kept = Vec::new();
    let mut previous: Vec<Candidate> = Vec::new();
    for round in 1..=config.rounds {
        let requests = if round == 1 {
            Vec::new()
        } else {
            evolution_requests(&previous, config, run.seed, round)
        };
        if round > 1 && requests.is_empty() {
            tracing::warn!(
                round,
                "the round before kept no problem: nothing left to evolve"
            );
            break;
        }
        let mut round_funnel = Funnel::default();
        let candidates = if round == 1 {
            generate_candidates(
                &mut engine,
                &tokenizer,
                &seeds,
                config,
                run.seed,
                checker.as_ref(),
                &mut round_funnel,
            )?
        } else {
            let params = sampling(config, config.evolution.per_problem, run.seed, round);
            generate(
                &mut engine,
                &tokenizer,
                &requests,
                &params,
                config,
                round,
                checker.as_ref(),
                &mut round_funnel,
            )?
        };
        let unique = seen.keep(candidates, &mut round_funnel);
        let kept = filter(
            &mut engine,
            &tokenizer,
            unique,
            config,
            run.seed.wrapping_add(round as u64 - 1),
            checker.as_ref(),
            &mut round_funnel,
        )?;
        tracing::info!(
            round,
            kept = round_funnel.kept,
            generated = round_funnel.generated,
            "synthesis round done"
        );
        for (tag, value) in funnel_scalars(&round_funnel) {
            run.metrics.scalar(tag, round as u64, value as f64);
        }
        funnel.add(&round_funnel);
        rounds.push(serde_json::json!({ "round": round, "funnel": round_funnel }));
        previous = kept.iter().map(|(c, _, _)| c.clone()).collect();
        all_kept.extend(kept);
    }

    let path = run.path("synthesized.jsonl");
    let mut out = OutputFile::create(&path)?;
    for (candidate, check, agreement) in &all_kept {
        let mut line = serde_json::to_value(candidate)?;
        line["check"] = (*check).into();
        line["agreement"] = (*agreement).into();
        writeln!(out, "{line}")?;
    }
    out.commit()?;
    run.write_summary(&serde_json::json!({ "funnel": funnel, "rounds": rounds, "seeds": seeds.len(), "seconds": run.elapsed().as_secs_f64() }))?;
    print_summary(
        &run,
        &[
            ("seeds", seeds.len().to_string()),
            ("rounds", rounds.len().to_string()),
            (
                "funnel",
                format!(
                    "{} generated, {} parsed, -{} exact, -{} near, -{} rejected",
                    funnel.generated,
                    funnel.parsed,
                    funnel.exact_duplicates,
                    funnel.near_duplicates,
                    funnel.rejected
                ),
            ),
            ("kept", funnel.kept.to_string()),
            ("data", path.display().to_string()),
        ],
    );
    Ok(())
}

/// The metrics of a funnel, by tag.
fn funnel_scalars(funnel: &Funnel) -> [(&'static str, usize); 6] {
    [
        ("synthesize/generated", funnel.generated),
        ("synthesize/parsed", funnel.parsed),
        ("synthesize/exact_duplicates", funnel.exact_duplicates),
        ("synthesize/near_duplicates", funnel.near_duplicates),
        ("synthesize/rejected", funnel.rejected),
        ("synthesize/kept", funnel.kept),
    ]
}

/// The instructions of round `round` (> 1): each problem the round before kept, evolved by its
/// operator (chosen from `seed`, the round and its place).
fn evolution_requests(
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
fn sampling(config: &SynthesizeConfig, n: usize, seed: u64, task: usize) -> SamplingParams {
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
fn generate_candidates(
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
fn generate(
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
        let chunk_params = SamplingParams {
            seed: params
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(chunk_index as u64),
            ..params.clone()
        };
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

/// Drops exact duplicates (whitespace- and case-normalised) and MinHash near duplicates, of each
/// other and of the seeds; the first occurrence stays.
pub fn deduplicate(
    candidates: Vec<Candidate>,
    seeds: &[&str],
    config: &SynthesizeConfig,
    funnel: &mut Funnel,
) -> Vec<Candidate> {
    Deduplicator::new(seeds, config).keep(candidates, funnel)
}

/// Keeps the candidates whose answer checks against the seed's gold (rephrasings of seeds with
/// one) or agrees with the majority of `consistency_samples` fresh CoT solutions (the rest), with
/// the check used (`gold` / `self-consistency`) and the agreement.
fn filter(
    engine: &mut Engine,
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
        let prompts = without
            .iter()
            .map(|c| {
                let messages = [
                    ChatMessage::new("system", COT_SYSTEM),
                    ChatMessage::new("user", &c.question),
                ];
                Ok(tokenizer.encode(&tokenizer.apply_chat_template(&messages, true)?)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let out = engine.generate(&prompts, &params)?;
        for (group, c) in out.groups.iter().zip(without) {
            let texts = group
                .completions
                .iter()
                .map(|x| match &x.text {
                    Some(t) => Ok(t.clone()),
                    None => Ok(tokenizer.decode(&x.token_ids, true)?),
                })
                .collect::<Result<Vec<String>>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(question: &str) -> Candidate {
        Candidate {
            question: question.into(),
            solution: "\\boxed{1}".into(),
            answer: Some("1".into()),
            kind: Kind::NewProblem,
            operator: None,
            round: 1,
            seed_line: 1,
            seed_gold: None,
        }
    }

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
    fn exact_and_near_duplicates_of_each_other_and_the_seeds_are_dropped() {
        let seed = "Tom has 3 apples and buys 5 more at the market on Monday. Then he gives 2 apples to his sister. How many apples does Tom have now?";
        let fresh =
            "A train leaves at 9 am at 60 km per hour. When does it reach a town 150 km away?";
        let candidates = vec![
            candidate(&seed.to_uppercase()), // exact copy of the seed
            candidate(&seed.replace("Monday", "Tuesday")), // near copy of the seed
            candidate(fresh),
            candidate(&format!("  {fresh} ")), // exact copy
            candidate(&fresh.replace("away?", "away, exactly?")), // near copy
            candidate("Find the area of a circle of radius 2."),
        ];
        let mut funnel = Funnel::default();
        let unique = deduplicate(
            candidates,
            &[seed],
            &SynthesizeConfig::default(),
            &mut funnel,
        );
        let questions: Vec<&str> = unique.iter().map(|c| c.question.as_str()).collect();
        assert_eq!(questions, [fresh, "Find the area of a circle of radius 2."]);
        assert_eq!((funnel.exact_duplicates, funnel.near_duplicates), (2, 2));
    }

    #[test]
    fn a_later_round_drops_near_copies_of_every_earlier_round() {
        let first = "Tom has 3 apples and buys 5 more at the market on Monday. Then he gives 2 apples to his sister. How many apples does Tom have now?";
        let second =
            "A train leaves at 9 am at 60 km per hour. When does it reach a town 150 km away?";
        let seed = "Find the area of a circle of radius 2.";
        let config = SynthesizeConfig::default();
        let mut seen = Deduplicator::new(&[seed], &config);
        let mut funnel = Funnel::default();
        let round_1 = seen.keep(vec![candidate(first), candidate(second)], &mut funnel);
        assert_eq!(round_1.len(), 2);
        // Round 2: a near copy of round 1's first problem, an exact copy of its second, a near
        // copy of the seed, and one new problem; only the new one survives.
        let evolved = |q: &str| Candidate {
            kind: Kind::Evolved,
            operator: Some(Operator::ChangeNumbers),
            round: 2,
            ..candidate(q)
        };
        let fresh = "How many ways can 5 people sit around a round table?";
        let round_2 = seen.keep(
            vec![
                evolved(&first.replace("Monday", "Friday")),
                evolved(&second.to_lowercase()),
                evolved(&seed.replace("2.", "2 exactly.")),
                evolved(fresh),
            ],
            &mut funnel,
        );
        let questions: Vec<&str> = round_2.iter().map(|c| c.question.as_str()).collect();
        assert_eq!(questions, [fresh]);
        assert_eq!((funnel.exact_duplicates, funnel.near_duplicates), (1, 2));
        // Each round on its own would have kept the near copies.
        let alone = deduplicate(
            vec![evolved(&first.replace("Monday", "Friday"))],
            &[seed],
            &config,
            &mut Funnel::default(),
        );
        assert_eq!(alone.len(), 1);
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
