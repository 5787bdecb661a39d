//! Checker throughput on one core over the conformance set (`tests/fixtures/grader/`), and the
//! worst single check time, per profile; plus criterion timings of representative checks.
//!
//! `cargo bench -p mathrl-rewards --bench checker`. To time the reference grader on the same
//! pairs in the same run, see `reference_grader.py` beside this file.

use criterion::{criterion_group, Criterion};
use mathrl_rewards::{Checker, CheckerProfile};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn cases() -> Vec<(String, String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/grader/vectors.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("the conformance vectors");
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v.get("pipeline_expected")?;
            let s = |k: &str| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let response = if s("kind") == "extract" {
                s("response")
            } else {
                format!("The final answer is $\\boxed{{{}}}$.", s("pred"))
            };
            Some((response, s("gold"), s("dataset")))
        })
        .collect()
}

/// One pass per profile: checks/s and the slowest check, printed.
fn conformance_pass() {
    let cases = cases();
    for profile in [CheckerProfile::Qwen25Math, CheckerProfile::Strict] {
        let checker = Checker::new(profile);
        let mut worst = (Duration::ZERO, 0);
        let start = Instant::now();
        for _ in 0..3 {
            for (k, (response, gold, dataset)) in cases.iter().enumerate() {
                let t = Instant::now();
                black_box(checker.check_response(response, gold, Some(dataset)));
                let dt = t.elapsed();
                if dt > worst.0 {
                    worst = (dt, k);
                }
            }
        }
        let total = start.elapsed().as_secs_f64();
        println!(
            "checker/{profile}: {} checks in {:.3} s = {:.0} checks/s on one core; worst single check {:.3} ms (case {})",
            3 * cases.len(),
            total,
            3.0 * cases.len() as f64 / total,
            worst.0.as_secs_f64() * 1e3,
            worst.1
        );
    }
}

fn single_checks(c: &mut Criterion) {
    let q = Checker::new(CheckerProfile::Qwen25Math);
    let s = Checker::new(CheckerProfile::Strict);
    let cases = [
        ("integer", "The answer is \\boxed{42}.", "42"),
        ("fraction", "So $\\boxed{\\dfrac{6}{8}}$.", "\\frac{3}{4}"),
        ("expression", "Thus \\boxed{2x^2+4x+2}.", "2(x+1)^2"),
        (
            "tuple",
            "Hence \\boxed{\\left(3, \\frac{\\pi}{2}\\right)}.",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
    ];
    for (name, response, gold) in cases {
        c.bench_function(&format!("qwen25-math/{name}"), |b| {
            b.iter(|| q.check_response(black_box(response), gold, Some("math")))
        });
        c.bench_function(&format!("strict/{name}"), |b| {
            b.iter(|| s.check_response(black_box(response), gold, Some("math")))
        });
    }
}

criterion_group!(benches, single_checks);

fn main() {
    conformance_pass();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
