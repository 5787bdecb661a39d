//! Bounded cost: pathological inputs end with a verdict (never a panic or a hang), and property
//! tests over arbitrary text. Timing figures live in `benches/checker.rs`, not here.

use mathrl_rewards::{Checker, CheckerProfile, Outcome};
use proptest::prelude::*;
use std::time::Duration;

fn both() -> [Checker; 2] {
    [
        Checker::new(CheckerProfile::Qwen25Math),
        Checker::new(CheckerProfile::Strict),
    ]
}

#[test]
fn huge_numbers_are_not_expanded() {
    for c in both() {
        for (pred, gold) in [
            ("10^{10^{10}}", "10^{10^{10}}+1"),
            ("1000!", "1001!"),
            ("2^{2^{2^{2^{2^{2}}}}}", "3"),
        ] {
            let v = c.check_answer(pred, gold, Some("math"));
            assert_ne!(
                v.outcome,
                Outcome::Correct,
                "{:?} {pred} vs {gold}: {v:?}",
                c.profile()
            );
        }
        assert!(c.check_answer("1000!", "1000!", Some("math")).is_correct());
    }
}

#[test]
fn deep_nesting_is_refused_with_a_reason() {
    let deep = format!("{}1{}", "{".repeat(10_000), "}".repeat(10_000));
    let parens = format!("{}1{}", "(".repeat(1_000), ")".repeat(1_000));
    let powers = format!("2{}", "^2".repeat(1_500));
    for c in both() {
        for pred in [&deep, &parens, &powers] {
            let v = c.check_answer(pred, "2", Some("math"));
            assert_ne!(v.outcome, Outcome::Correct, "{:?}: {v:?}", c.profile());
        }
        let v = c.check_answer(&parens, "1", Some("math"));
        if v.outcome == Outcome::Unparseable {
            assert!(
                v.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("deeper") || r.contains("budget")),
                "{v:?}"
            );
        }
    }
}

#[test]
fn a_megabyte_response_and_invalid_utf8_are_read() {
    let mut response = "blah 12 ".repeat(130_000);
    response.push_str("So the answer is \\boxed{42}.");
    assert!(response.len() > 1_000_000);
    for c in both() {
        assert!(c.check_response(&response, "42", Some("math")).is_correct());
        let mut bytes = vec![0xff, 0xfe, b'x'];
        bytes.extend_from_slice("\\boxed{7}".as_bytes());
        bytes.extend_from_slice(&[0xe2, 0x82]); // a cut multi-byte character
        assert!(c
            .check_response_bytes(&bytes, "7", Some("math"))
            .is_correct());
        let cut = "\\boxed{π}".as_bytes();
        let _ = c.check_response_bytes(&cut[..cut.len() - 3], "3", Some("math"));
    }
}

#[test]
fn a_tiny_budget_gives_unparseable_not_a_wrong_verdict() {
    let c = Checker::new(CheckerProfile::Strict).with_budget(Duration::ZERO);
    let v = c.check_answer("\\frac{x^2-1}{x-1}", "x+1", Some("math"));
    assert!(
        v.outcome == Outcome::Unparseable || v.outcome == Outcome::Correct,
        "{v:?}"
    );
    if v.outcome == Outcome::Unparseable {
        assert!(v.reason.unwrap().contains("budget"));
    }
}

const LATEXISH: &str = "[0-9a-zA-Z\\\\{}()\\[\\]^_+\\-*/=,.!|&$% \\n]{0,80}";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(response in "\\PC{0,200}", gold in LATEXISH, dataset in prop::sample::select(vec!["math", "gsm8k", "minerva_math", "mmlu_stem", "olympiadbench", "other"])) {
        for c in both() {
            let _ = c.check_response(&response, &gold, Some(dataset));
            let _ = c.check_answer(&gold, &response, Some(dataset));
        }
    }

    #[test]
    fn latex_like_answers_never_panic(pred in LATEXISH, gold in LATEXISH, bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for c in both() {
            let _ = c.check_answer(&pred, &gold, Some("math"));
            let _ = c.check_response_bytes(&bytes, &gold, None);
        }
    }

    #[test]
    fn an_answer_equals_itself(a in -100_000i64..100_000, b in 1i64..1000) {
        let frac = format!("\\frac{{{a}}}{{{b}}}");
        for c in both() {
            prop_assert!(c.check_answer(&a.to_string(), &a.to_string(), Some("math")).is_correct());
            prop_assert!(c.check_answer(&frac, &frac, Some("math")).is_correct());
        }
    }

    #[test]
    fn equal_fractions_are_equal_and_other_integers_are_not(a in -10_000i64..10_000, b in 1i64..100, k in 2i64..50, d in 1i64..5000) {
        let strict = Checker::new(CheckerProfile::Strict);
        let reduced = format!("\\frac{{{a}}}{{{b}}}");
        let scaled = format!("\\frac{{{}}}{{{}}}", a * k, b * k);
        prop_assert!(strict.check_answer(&scaled, &reduced, Some("math")).is_correct());
        prop_assert!(!strict.check_answer(&(a + d).to_string(), &a.to_string(), Some("math")).is_correct());
    }
}
