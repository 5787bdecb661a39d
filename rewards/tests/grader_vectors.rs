//! Conformance of profile `qwen25-math` with the reference grader of the Qwen2.5-Math evaluation
//! on the 6,342 labelled vectors of `tests/fixtures/grader/` (see its README).
//!
//! Counted: every record with a `pipeline_expected` label (6,177; the 165 `swapped:` records have
//! none). Records the reference took over 3 s on (`pipeline_slow`) keep their label: it is the
//! verdict the grader reaches, and our check has no reason to time out on them. Unparseable
//! counts as "not correct", as it scores in training.

use mathrl_rewards::{extract_answer, parse_gold, Checker, CheckerProfile};
use serde_json::Value;
use std::path::PathBuf;

struct Case {
    line: usize,
    response: String,
    gold: String,
    dataset: String,
    pipeline_pred: String,
    pipeline_gold: String,
    expected: bool,
}

fn vectors() -> Vec<Case> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/grader/vectors.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), k + 1));
        let Some(expected) = v.get("pipeline_expected").and_then(Value::as_bool) else {
            continue;
        };
        let s = |key: &str| match v.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let response = if s("kind") == "extract" {
            s("response")
        } else {
            format!("The final answer is $\\boxed{{{}}}$.", s("pred"))
        };
        out.push(Case {
            line: k + 1,
            response,
            gold: s("gold"),
            dataset: s("dataset"),
            pipeline_pred: s("pipeline_pred"),
            pipeline_gold: s("pipeline_gold"),
            expected,
        });
    }
    out
}

#[test]
fn extraction_and_gold_parsing_match_the_reference() {
    let cases = vectors();
    let mut bad = 0;
    for c in &cases {
        let pred = extract_answer(&c.response, Some(&c.dataset)).unwrap_or_default();
        let gold = parse_gold(&c.gold, Some(&c.dataset));
        if pred != c.pipeline_pred || gold != c.pipeline_gold {
            bad += 1;
            println!(
                "line {}: pred {:?} vs {:?}; gold {:?} vs {:?}",
                c.line, pred, c.pipeline_pred, gold, c.pipeline_gold
            );
        }
    }
    let rate = 1.0 - bad as f64 / cases.len() as f64;
    println!(
        "extraction+normalisation agreement: {:.4} ({} of {})",
        rate,
        cases.len() - bad,
        cases.len()
    );
    assert!(rate >= 0.995, "extraction agreement {rate:.4} < 0.995");
}

#[test]
fn qwen25_math_profile_agrees_with_the_reference_verdicts() {
    let checker = Checker::new(CheckerProfile::Qwen25Math);
    let cases = vectors();
    assert_eq!(cases.len(), 6177, "labelled records in the fixture");
    // Checked on all cores (the checker is Send + Sync); reported in file order.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = cases.len().div_ceil(threads);
    let verdicts: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(chunk)
            .map(|part| {
                let checker = checker.clone();
                s.spawn(move || {
                    part.iter()
                        .map(|c| checker.check_response(&c.response, &c.gold, Some(&c.dataset)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("checker thread panicked"))
            .collect()
    });
    let mut disagree = 0;
    for (c, v) in cases.iter().zip(&verdicts) {
        if v.is_correct() != c.expected {
            disagree += 1;
            println!(
                "line {} [{}]: ours {:?} ({:?}), reference {}; pred {:?} gold {:?}",
                c.line,
                c.dataset,
                v.outcome,
                v.reason,
                c.expected,
                c.pipeline_pred,
                c.pipeline_gold
            );
        }
    }
    let rate = 1.0 - disagree as f64 / cases.len() as f64;
    println!(
        "verdict agreement: {:.4} ({} disagreements of {})",
        rate,
        disagree,
        cases.len()
    );
    assert!(rate >= 0.995, "verdict agreement {rate:.4} < 0.995");
}

#[test]
fn qwen25_math_profile_agrees_on_the_extra_cases() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checker_extra.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let checker = Checker::new(CheckerProfile::Qwen25Math);
    let (mut total, mut disagree) = (0, 0);
    for (k, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), k + 1));
        let s = |key: &str| v[key].as_str().unwrap_or_default().to_string();
        let verdict = checker.check_answer(&s("pred"), &s("gold"), Some(&s("dataset")));
        total += 1;
        assert_eq!(
            verdict.extracted.as_deref().unwrap_or(""),
            s("pipeline_pred"),
            "line {}",
            k + 1
        );
        assert_eq!(
            parse_gold(&s("gold"), Some(&s("dataset"))),
            s("pipeline_gold"),
            "line {}",
            k + 1
        );
        if verdict.is_correct() != v["pipeline_expected"].as_bool().expect("label") {
            disagree += 1;
            println!(
                "extra line {}: ours {:?}, reference {}; {} vs {}",
                k + 1,
                verdict.outcome,
                v["pipeline_expected"],
                s("pipeline_pred"),
                s("pipeline_gold")
            );
        }
    }
    println!("extra cases: {disagree} disagreements of {total}");
    assert!(
        disagree * 20 <= total,
        "{disagree} of {total} extra cases disagree"
    );
}
