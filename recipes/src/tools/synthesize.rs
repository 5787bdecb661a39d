//! `synthesize`: the report's data-synthesis step at small scale. An instruct model rephrases
//! seed problems (keeping their answer) and writes new problems from them (with their solutions);
//! the pairs are deduplicated, exactly and by MinHash near-duplicate detection (against each other
//! and the seeds), and filtered: a rephrased problem's answer must check against the seed's gold,
//! a new problem's answer must agree with the majority of fresh CoT solutions
//! (self-consistency). The survivors are written as JSONL.
//!
//! `mathrl --recipe synthesize --model INSTRUCT_DIR --data seeds.jsonl [--output DIR]`
//! (`seeds.jsonl` lines: `{"question": .., "answer": ..}`, `answer` optional; a seed without one
//! has its rephrasings filtered by self-consistency too). Writes `<output>/synthesized.jsonl`:
//! `{"question", "solution", "answer", "kind", "seed_line", "check", "agreement"}`.

use std::collections::HashSet;
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
use crate::tools::minhash::MinHashIndex;

/// Settings of the `synthesize` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthesizeConfig {
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
    /// Rephrasing or new problem.
    pub kind: Kind,
    /// 1-based line of its seed.
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

    let candidates = generate_candidates(
        &mut engine,
        &tokenizer,
        &seeds,
        config,
        run.seed,
        checker.as_ref(),
        &mut funnel,
    )?;
    let seed_texts: Vec<&str> = seeds.iter().map(|s| s.question.as_str()).collect();
    let unique = deduplicate(candidates, &seed_texts, config, &mut funnel);
    let kept = filter(
        &mut engine,
        &tokenizer,
        unique,
        config,
        run.seed,
        checker.as_ref(),
        &mut funnel,
    )?;

    let path = run.path("synthesized.jsonl");
    let mut out = OutputFile::create(&path)?;
    for (candidate, check, agreement) in &kept {
        let mut line = serde_json::to_value(candidate)?;
        line["check"] = (*check).into();
        line["agreement"] = (*agreement).into();
        writeln!(out, "{line}")?;
    }
    out.commit()?;
    for (tag, value) in [
        ("synthesize/generated", funnel.generated),
        ("synthesize/parsed", funnel.parsed),
        ("synthesize/exact_duplicates", funnel.exact_duplicates),
        ("synthesize/near_duplicates", funnel.near_duplicates),
        ("synthesize/rejected", funnel.rejected),
        ("synthesize/kept", funnel.kept),
    ] {
        run.metrics.scalar(tag, 0, value as f64);
    }
    run.write_summary(&serde_json::json!({ "funnel": funnel, "seeds": seeds.len(), "seconds": run.elapsed().as_secs_f64() }))?;
    print_summary(
        &run,
        &[
            ("seeds", seeds.len().to_string()),
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
        let params = SamplingParams {
            n,
            temperature: config.temperature,
            top_p: config.top_p,
            max_new_tokens: config.max_new_tokens,
            seed: seed.wrapping_mul(31).wrapping_add(task as u64),
            ..SamplingParams::default()
        };
        let bar = crate::run::progress_bar(seeds.len() as u64, "synthesize");
        for (chunk_index, chunk) in seeds.chunks(config.seeds_per_batch.max(1)).enumerate() {
            let prompts = chunk
                .iter()
                .map(|s| {
                    let instruction = template.replace("{question}", &s.question);
                    let text = tokenizer
                        .apply_chat_template(&[ChatMessage::new("user", instruction)], true)?;
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
            for (group, (offset, s)) in out.groups.iter().zip(chunk.iter().enumerate()) {
                let seed_line = chunk_index * config.seeds_per_batch.max(1) + offset + 1;
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
                        kind,
                        seed_line,
                        seed_gold: (kind == Kind::Rephrase).then(|| s.gold.clone()).flatten(),
                    });
                }
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
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
    let normalise = |t: &str| {
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let mut exact: HashSet<String> = seeds.iter().map(|s| normalise(s)).collect();
    let mut near = MinHashIndex::new(
        config.minhash_ngram,
        config.minhash_bands,
        config.minhash_rows,
        config.near_duplicate_threshold,
    );
    for s in seeds {
        near.insert(s);
    }
    let mut unique = Vec::new();
    for c in candidates {
        if !exact.insert(normalise(&c.question)) {
            funnel.exact_duplicates += 1;
        } else if near.insert(&c.question).is_some() {
            funnel.near_duplicates += 1;
        } else {
            unique.push(c);
        }
    }
    unique
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
}
