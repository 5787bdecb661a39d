//! `synthesize`: the report's data-synthesis step at small scale. An instruct model rephrases
//! seed problems (keeping their answer) and writes new problems from them (with their solutions);
//! the pairs are deduplicated, exactly and by MinHash near-duplicate detection (against each other
//! and the seeds), and filtered: a rephrased problem's answer must check against the seed's gold,
//! a new problem's answer must agree with the majority of fresh CoT solutions (self-consistency;
//! with `--set tir=true` the solutions are tool-integrated, their programs run in the sandbox);
//! problems that overlap the evaluation sets are dropped (decontamination). The survivors are
//! written as JSONL.
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
mod filter;
mod generation;
mod operators;

use std::io::Write;

use anyhow::{bail, Result};
use mathrl::data::{load_qa, GoldAnswers};
use mathrl::generation::{Engine, EngineConfig};
use mathrl::model::Trainable;
use mathrl::{Policy, Tokenizer};
use mathrl_sandbox::SandboxConfig;
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::decontamination::{decontaminate, eval_index};
use crate::driver::prepare;
use crate::output::OutputFile;
use crate::run::print_summary;
use crate::train::reasoning::Reasoning;
pub use dedup::{deduplicate, Deduplicator};
pub use generation::parse_problem;
pub use operators::{Operator, QueryEvolutionConfig};

use filter::filter;
use generation::{evolution_requests, generate, generate_candidates, sampling};

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
    /// Drop the problems that overlap the evaluation sets (`--data-dir`, default the shipped
    /// ones), after dedup, in every round.
    pub decontaminate: bool,
    /// Self-consistency by tool-integrated reasoning: the solutions get the TIR system prompt and
    /// their python blocks run in the sandbox. Default false (chain of thought).
    pub tir: bool,
    /// Wall-clock limit of one TIR program in milliseconds (the reference: 5 s); overrides
    /// `tool.timeout_ms`.
    pub tool_timeout_ms: u64,
    /// The TIR sandbox: limits and isolation layers (`tool.allow_weaker_isolation = true` runs
    /// with missing layers, with a warning).
    pub tool: SandboxConfig,
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
            decontaminate: true,
            tir: false,
            tool_timeout_ms: 5000,
            tool: SandboxConfig::default(),
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
    /// Dropped for overlapping an evaluation set.
    pub contaminated: usize,
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
        self.contaminated += other.contaminated;
        self.rejected += other.rejected;
        self.kept += other.kept;
    }
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
    if config.decontaminate {
        // Read the evaluation sets now: a missing one fails before the run directory exists.
        eval_index(cli.data_dir.as_deref())?;
    }
    // The sandbox before the run directory: one that cannot start fails at once.
    let reasoning = Reasoning::of_config(config.tir, &config.tool, config.tool_timeout_ms)?;
    let run = recipe.start()?;
    let tokenizer = Tokenizer::from_dir(model_dir)?;
    let policy = Policy::load(model_dir, &run.device, cli.compute_dtype(), Trainable::No)?;
    let mut engine =
        Engine::from_policy(&policy, EngineConfig::default()).with_tokenizer(tokenizer.clone());
    // With TIR the solutions of the self-consistency check run their programs; the instruct
    // model's problems never do.
    let mut tir_solver = config.tir.then(|| reasoning.engine(&policy, &tokenizer));
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
        let before = unique.len();
        let unique = decontaminate(
            unique,
            |c| c.question.as_str(),
            config.decontaminate,
            cli.data_dir.as_deref(),
            "synthesized problems",
        )?;
        round_funnel.contaminated = before - unique.len();
        let kept = filter(
            tir_solver.as_mut().unwrap_or(&mut engine),
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
                    "{} generated, {} parsed, -{} exact, -{} near, -{} contaminated, -{} rejected",
                    funnel.generated,
                    funnel.parsed,
                    funnel.exact_duplicates,
                    funnel.near_duplicates,
                    funnel.contaminated,
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
fn funnel_scalars(funnel: &Funnel) -> [(&'static str, usize); 7] {
    [
        ("synthesize/generated", funnel.generated),
        ("synthesize/parsed", funnel.parsed),
        ("synthesize/exact_duplicates", funnel.exact_duplicates),
        ("synthesize/near_duplicates", funnel.near_duplicates),
        ("synthesize/contaminated", funnel.contaminated),
        ("synthesize/rejected", funnel.rejected),
        ("synthesize/kept", funnel.kept),
    ]
}

/// A new problem of round 1 with answer 1 (for the tests of the parts).
#[cfg(test)]
pub(crate) fn test_candidate(question: &str) -> Candidate {
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
