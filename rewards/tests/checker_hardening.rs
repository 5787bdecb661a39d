//! Issue 18, item 3: the strict checker (the RL reward) must not be gameable and must not mark
//! right answers wrong; no input may panic, overflow a 1 MiB stack or run past the budget.
//! Each test below is a case an attacker or an unlucky answer hit against the release binary.

use mathrl_rewards::{Checker, CheckerProfile, Outcome, Verdict};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn strict() -> Checker {
    Checker::new(CheckerProfile::Strict)
}

fn both() -> [Checker; 2] {
    [Checker::new(CheckerProfile::Qwen25Math), strict()]
}

/// Runs `f` on a thread with a 1 MiB stack (the smallest a worker of the trainer gets) and
/// returns its result; a stack overflow aborts the whole test binary, so it cannot pass silently.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(f)
        .expect("spawning a 1 MiB thread")
        .join()
        .expect("the check panicked")
}

#[test]
fn choice_letters_count_only_on_multiple_choice_sets() {
    for (pred, gold) in [("x+C", "C"), ("A+B+C", "C"), ("(B,C)", "C"), ("2E", "E")] {
        for dataset in [
            "math",
            "gsm8k",
            "olympiadbench",
            "minerva_math",
            "college_math",
        ] {
            let v = strict().check_answer(pred, gold, Some(dataset));
            assert!(!v.is_correct(), "{dataset}: {pred} vs {gold}: {v:?}");
        }
    }
    // On multiple-choice sets the letter is the answer, however it is written.
    for dataset in ["mmlu_stem", "sat_math", "aqua", "gaokao2023", "mmlu_pro"] {
        let v = strict().check_response("The answer is (C).", "C", Some(dataset));
        assert!(v.is_correct(), "{dataset}: {v:?}");
        let v = strict().check_response("The answer is (D).", "C", Some(dataset));
        assert!(!v.is_correct(), "{dataset}: {v:?}");
    }
    // A letter gold outside those sets is still an answer like any other.
    assert!(strict().check_answer("C", "C", Some("math")).is_correct());
    assert!(strict()
        .check_answer("\\text{(C)}", "C", Some("math"))
        .is_correct());
}

#[test]
fn the_reference_profile_keeps_its_choice_rule_everywhere() {
    // `math_equal` of the reference applies `choice_answer_clean` for any data set.
    let v = Checker::new(CheckerProfile::Qwen25Math).check_answer("x+C", "C", Some("math"));
    assert!(v.is_correct(), "{v:?}");
}

#[test]
fn exponents_at_the_i128_limit_are_not_one() {
    for c in both() {
        for (pred, gold) in [
            ("2^{-2^{126}-2^{126}}", "1"),
            ("2^{-2^{126}-2^{126}}", "0"),
            ("3^{-170141183460469231731687303715884105728}", "1"),
            (
                "(-2^{126}-2^{126})/(-1)",
                "-170141183460469231731687303715884105728",
            ),
            ("\\frac{-2^{126}-2^{126}}{-2^{126}-2^{126}}", "2"),
        ] {
            let v = c.check_answer(pred, gold, Some("math"));
            assert!(!v.is_correct(), "{}: {pred} vs {gold}: {v:?}", c.profile());
        }
    }
    // The same sums well inside i128 are still exact.
    let v = strict().check_answer("\\frac{-2^{100}-2^{100}}{-2^{101}}", "1", Some("math"));
    assert!(v.is_correct(), "{v:?}");
}

#[test]
fn integer_golds_accept_irrational_forms_of_the_same_value() {
    for (pred, gold) in [
        ("\\log_{10}1000", "3"),
        ("\\log_{2}8", "3"),
        ("(\\sqrt2)^2", "2"),
        ("(\\sqrt{3})^{2}", "3"),
        ("2\\cos(\\pi/3)", "1"),
        ("4\\sin^2(\\pi/4)", "2"),
        ("\\sqrt{2}\\cdot\\sqrt{8}", "4"),
        ("\\ln(e^5)", "5"),
        ("\\sin(\\pi)", "0"),
    ] {
        let v = strict().check_answer(pred, gold, Some("math"));
        assert!(v.is_correct(), "{pred} vs {gold}: {v:?}");
    }
}

#[test]
fn integer_golds_reject_values_that_really_differ() {
    for (pred, gold) in [
        ("\\log_{10}1001", "3"),
        ("(\\sqrt2)^2+10^{-6}", "2"),
        ("2\\cos(\\pi/3.0001)", "1"),
        ("\\sin(10^{-7})", "0"),
        ("\\sqrt{8.99999}", "3"),
        ("\\pi", "3"),
        ("e^{\\pi\\sqrt{163}}", "262537412640768744"),
        ("e^{\\pi\\sqrt{67}}", "147197952744"),
    ] {
        let v = strict().check_answer(pred, gold, Some("math"));
        assert!(!v.is_correct(), "{pred} vs {gold}: {v:?}");
    }
}

#[test]
fn tiny_shifts_are_not_hidden_by_floating_point_tolerances() {
    for (pred, gold) in [
        ("x+10^{-10}", "x"),
        ("x+\\frac{1}{10^{10}}", "x"),
        ("3+10^{-10}i", "3"),
        ("\\cos(10^{-5})", "1"),
        ("2\\cos(1.0471975512)", "1"),
        ("\\frac{1999}{40}", "\\frac{1949}{39}"),
        ("\\sqrt{2}+10^{-12}", "\\sqrt{2}"),
        ("y=2x+1+10^{-10}", "y=2x+1"),
    ] {
        let v = strict().check_answer(pred, gold, Some("math"));
        assert!(!v.is_correct(), "{pred} vs {gold}: {v:?}");
    }
    // The same forms without the shift are equal.
    for (pred, gold) in [
        ("\\frac{x^2-1}{x-1}", "x+1"),
        ("2.5x", "\\frac{5x}{2}"),
        ("\\frac{3}{2\\sqrt{3}}", "\\frac{\\sqrt{3}}{2}"),
        ("i^2", "-1"),
        ("2y=4x+2", "y=2x+1"),
    ] {
        let v = strict().check_answer(pred, gold, Some("math"));
        assert!(v.is_correct(), "{pred} vs {gold}: {v:?}");
    }
}

#[test]
fn rounded_decimals_count_only_where_no_decimal_is_exact() {
    let c = strict();
    // A gold no decimal can write: a correct rounding to six or more significant digits.
    assert!(c
        .check_answer("0.7407407407", "\\frac{20}{27}", Some("math"))
        .is_correct());
    assert!(c
        .check_answer("2.2360679775", "\\sqrt{5}", Some("math"))
        .is_correct());
    assert!(!c
        .check_answer("0.740740", "\\frac{20}{27}", Some("math"))
        .is_correct());
    assert!(!c
        .check_answer("0.7407", "\\frac{20}{27}", Some("math"))
        .is_correct());
    // A gold a decimal can write must be written exactly.
    assert!(!c
        .check_answer("0.375001", "\\frac{3}{8}", Some("math"))
        .is_correct());
    assert!(c
        .check_answer("0.375", "\\frac{3}{8}", Some("math"))
        .is_correct());
    // A gold written as a decimal may be rounded: irrational answers within 1e-4 relative.
    assert!(c
        .check_answer("\\frac{\\pi}{2}", "1.5708", Some("college_math"))
        .is_correct());
    assert!(!c
        .check_answer("\\frac{\\pi}{2}", "1.571", Some("college_math"))
        .is_correct());
}

#[test]
fn four_thousand_minus_signs_do_not_overflow_a_small_stack() {
    let cases: Vec<String> = vec![
        format!("2^{}1", "-".repeat(4_000)),
        format!("2^{{{}1}}", "-".repeat(4_000)),
        format!("{}1", "-".repeat(4_000)),
        format!("x{}", "_x".repeat(2_000)),
        format!("{}1", "\\sqrt".repeat(800)),
        format!("{}1{}", "(".repeat(2_000), ")".repeat(2_000)),
        format!("{}1{}", "\\frac{".repeat(600), "}{2}".repeat(600)),
        format!("{}x", "\\sin ".repeat(800)),
        format!("{}1", "-(".repeat(1_500)) + &")".repeat(1_500),
        format!(
            "{}1{}",
            "((".repeat(20),
            format!("{})", "!".repeat(190)).repeat(40)
        ),
        format!("2{}", "^2".repeat(2_000)),
        format!("{}1", "1/".repeat(2_000)),
        format!("{}1", "1**".repeat(1_300)),
        format!("{}1", "(-".repeat(1_300)) + &")".repeat(1_300),
        "{".repeat(4_000) + "1" + &"}".repeat(4_000),
    ];
    let verdicts = on_small_stack(move || {
        let mut out = Vec::new();
        for case in &cases {
            if std::env::var_os("HARDENING_TRACE").is_some() {
                eprintln!("case {}", case.chars().take(24).collect::<String>());
            }
            for c in both() {
                for dataset in ["math", "olympiadbench"] {
                    out.push((
                        case.chars().take(24).collect::<String>(),
                        c.check_answer(case, "1", Some(dataset)),
                        c.check_answer("1", case, Some(dataset)),
                    ));
                }
            }
        }
        out
    });
    for (head, as_pred, as_gold) in verdicts {
        // Any outcome but a crash is acceptable; a refusal must say why.
        for v in [as_pred, as_gold] {
            if v.outcome == Outcome::Unparseable {
                assert!(v.reason.is_some(), "{head}: {v:?}");
            }
        }
    }
}

#[test]
fn an_even_count_of_minus_signs_is_still_read_when_shallow() {
    let v = strict().check_answer("2^{--2}", "4", Some("math"));
    assert!(v.is_correct(), "{v:?}");
    let v = strict().check_answer("2^-1", "\\frac{1}{2}", Some("math"));
    assert!(v.is_correct(), "{v:?}");
}

fn timed(c: &Checker, pred: &str, gold: &str, dataset: &str) -> (Verdict, Duration) {
    let t = Instant::now();
    let v = c.check_answer(pred, gold, Some(dataset));
    (v, t.elapsed())
}

#[test]
fn a_megabyte_gold_is_answered_quickly_by_every_profile() {
    let big_number = "7".repeat(1 << 20);
    let big_text = "the answer is x and a meter ".repeat((1 << 20) / 28);
    let big_solution = format!("{} so \\boxed{{3}}", "We compute. ".repeat((1 << 20) / 12));
    // Just under the 64 KiB gold cap: read, but neither normalised nor parsed past 4 KiB.
    let under_cap = "the answer is x and a meter ".repeat(60 * 1024 / 28);
    for c in both() {
        for dataset in [
            "math",
            "gsm8k",
            "olympiadbench",
            "minerva_math",
            "mmlu_stem",
            "other",
        ] {
            for gold in [&big_number, &big_text, &under_cap] {
                let (v, dt) = timed(&c, "7", gold, dataset);
                assert!(!v.is_correct(), "{}/{dataset}: {v:?}", c.profile());
                assert!(
                    dt < Duration::from_millis(200),
                    "{}/{dataset}: {dt:?}",
                    c.profile()
                );
            }
            let (_, dt) = timed(&c, "3", &big_solution, dataset);
            assert!(
                dt < Duration::from_millis(200),
                "{}/{dataset}: {dt:?}",
                c.profile()
            );
        }
    }
}

#[test]
fn a_long_gold_under_the_cap_still_grades() {
    // A MATH gold may be a whole solution: its box is what counts.
    let solution = format!(
        "{} Hence \\boxed{{\\frac{{3}}{{4}}}}.",
        "We compute. ".repeat(2_000)
    );
    for c in both() {
        let v = c.check_answer("0.75", &solution, Some("math"));
        assert!(v.is_correct(), "{}: {v:?}", c.profile());
    }
}

/// A `Correct` verdict proves the comparison ended inside the default 50 ms budget: an overrun
/// ends `Unparseable` ("over the time budget"). The old pairwise search overran on reversed sets.
#[test]
fn equal_sets_of_three_hundred_elements_fit_the_budget() {
    let items: Vec<String> = (1..=300).map(|k| format!("\\frac{{{k}}}{{7}}")).collect();
    let forward = format!("\\{{{}\\}}", items.join(","));
    let reversed: Vec<String> = items.iter().rev().cloned().collect();
    let backward = format!("\\{{{}\\}}", reversed.join(","));
    // Another rendering of each element: the decimal form of k/4 against \frac{k}{4}.
    let quarters: Vec<String> = (1..=300).map(|k| format!("\\frac{{{k}}}{{4}}")).collect();
    let decimals: Vec<String> = (1..=300)
        .rev()
        .map(|k| format!("{}", k as f64 / 4.0))
        .collect();
    let (q, d) = (
        format!("\\{{{}\\}}", quarters.join(",")),
        format!("\\{{{}\\}}", decimals.join(",")),
    );
    let c = strict();
    for (pred, gold) in [(&forward, &backward), (&backward, &forward), (&d, &q)] {
        let (v, dt) = timed(&c, pred, gold, "math");
        assert!(v.is_correct(), "{v:?} in {dt:?}");
    }
    // One element off is still found.
    let mut off = reversed.clone();
    off[150] = "\\frac{1000}{7}".into();
    let off = format!("\\{{{}\\}}", off.join(","));
    let (v, _) = timed(&c, &off, &forward, "math");
    assert!(!v.is_correct(), "{v:?}");
    // The reference profile ends within the budget too (its verdict on sets is its own).
    for (pred, gold) in [(&forward, &backward), (&d, &q)] {
        let reference = Checker::new(CheckerProfile::Qwen25Math);
        let (v, dt) = timed(&reference, pred, gold, "math");
        assert!(
            !v.reason.as_deref().is_some_and(|r| r.contains("budget")),
            "{v:?} in {dt:?}"
        );
    }
    // Python-syntax sets (the reference reads them with `parse_expr`) in reverse order.
    let ints: Vec<String> = (1..=300).map(|k| k.to_string()).collect();
    let ints_reversed: Vec<String> = ints.iter().rev().cloned().collect();
    let (a, b) = (
        format!("{{{}}}", ints.join(", ")),
        format!("{{{}}}", ints_reversed.join(", ")),
    );
    for c in both() {
        let (v, dt) = timed(&c, &a, &b, "math");
        assert!(v.is_correct(), "{}: {v:?} in {dt:?}", c.profile());
    }
    // Repeats count: {1,1,2} is not {1,2,2}.
    assert!(!c
        .check_answer("\\{1,1,2\\}", "\\{1,2,2\\}", Some("math"))
        .is_correct());
}

/// Renderings of the rational `n/d` (d > 0) that mean exactly that value.
fn renderings(n: i64, d: i64) -> Vec<String> {
    let mut out = vec![
        format!("\\frac{{{n}}}{{{d}}}"),
        format!("{n}/{d}"),
        format!("\\dfrac{{{}}}{{{}}}", 3 * n, 3 * d),
        format!("\\frac{{{}}}{{{}}}", -n, -d),
    ];
    if n < 0 {
        out.push(format!("-\\frac{{{}}}{{{d}}}", -n));
    }
    if d == 1 {
        out.push(n.to_string());
        out.push(format!("{n}.0"));
    }
    // Terminating decimals: d of the form 2^a 5^b.
    let (mut r, mut twos, mut fives) = (d, 0u32, 0u32);
    while r % 2 == 0 {
        r /= 2;
        twos += 1;
    }
    while r % 5 == 0 {
        r /= 5;
        fives += 1;
    }
    if r == 1 {
        let digits = twos.max(fives);
        let scaled = n * 10i64.pow(digits) / d;
        let sign = if scaled < 0 { "-" } else { "" };
        let a = scaled.unsigned_abs();
        let p = 10u64.pow(digits);
        out.push(if digits == 0 {
            format!("{sign}{a}")
        } else {
            format!("{sign}{}.{:0width$}", a / p, a % p, width = digits as usize)
        });
    }
    out
}

/// Whether `pred` is a decimal of at least six significant digits within half a unit of its
/// last place of `num/den`, where `den` has a prime factor other than 2 and 5.
fn is_documented_rounding(pred: &str, (num, den): (i64, i64)) -> bool {
    let Some((int, frac)) = pred.trim_start_matches('-').split_once('.') else {
        return false;
    };
    let significant = format!("{int}{frac}").trim_start_matches('0').len();
    let mut rest = den.abs();
    for p in [2, 5] {
        while rest % p == 0 {
            rest /= p;
        }
    }
    if significant < 6 || rest == 1 {
        return false;
    }
    let scale = 10i128.pow(frac.len() as u32);
    let digits: i128 = format!("{int}{frac}").parse().expect("a decimal");
    let value = if pred.starts_with('-') {
        -digits
    } else {
        digits
    };
    // |value/scale - num/den| <= 1/(2 scale)  <=>  2 |value den - num scale| <= |den|
    let gap = (value * den as i128 - num as i128 * scale).abs();
    2 * gap <= (den as i128).abs()
}

/// Wrappers a gamed answer might put around a value: none of them equals the bare value.
fn wrappers(v: &str) -> Vec<String> {
    vec![
        format!("x+{v}"),
        format!("{v}x"),
        format!("{v}+C"),
        format!("({v},{v})"),
        format!("{v}\\pi"),
        format!("\\sqrt{{{v}}}+1"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The strict profile never accepts an answer whose value differs from the gold's, however
    /// either is written.
    #[test]
    fn strict_never_accepts_a_different_value(
        (n1, d1, n2, d2) in (-2_000i64..2_000, 1i64..41, -2_000i64..2_000, 1i64..41)
            .prop_filter("different values", |(a, b, c, d)| a * d != c * b),
        pick in any::<prop::sample::Index>(),
        pick_gold in any::<prop::sample::Index>(),
        dataset in prop::sample::select(vec!["math", "gsm8k", "olympiadbench", "college_math"]),
    ) {
        let c = strict();
        let preds = renderings(n1, d1);
        let golds = renderings(n2, d2);
        let (pred, gold) = (pick.get(&preds), pick_gold.get(&golds));
        let v = c.check_answer(pred, gold, Some(dataset));
        prop_assert!(!v.is_correct(), "{pred} accepted for {gold}: {v:?}");
    }

    /// Nor one that misses the gold by a hair (relative 1e-10 to 1e-3), which a relative
    /// tolerance on rationals would accept.
    #[test]
    fn strict_never_accepts_a_near_miss(
        n in -2_000i64..2_000,
        d in 1i64..41,
        m in 1_000i64..10_000_000,
        pick in any::<prop::sample::Index>(),
        pick_gold in any::<prop::sample::Index>(),
        swap in any::<bool>(),
    ) {
        let c = strict();
        // n/d + 1/(d m), exactly.
        let near = renderings(n * m + 1, d * m);
        let exact = renderings(n, d);
        let (a, b) = (pick.get(&near), pick_gold.get(&exact));
        let (pred, gold) = if swap { (b, a) } else { (a, b) };
        let gold_value = if swap { (n * m + 1, d * m) } else { (n, d) };
        // The one documented exception (CHECKER.md): a decimal of six or more significant
        // digits that is the correct rounding of a gold no decimal can write exactly.
        prop_assume!(!is_documented_rounding(pred, gold_value));
        let v = c.check_answer(pred, gold, Some("math"));
        prop_assert!(!v.is_correct(), "{pred} accepted for {gold}: {v:?}");
    }

    /// Every rendering of a value equals every other rendering of it, and no wrapper of it
    /// (`x+v`, `v+C`, a tuple) equals it.
    #[test]
    fn strict_accepts_renderings_of_the_same_value_only(
        n in -2_000i64..2_000,
        d in 1i64..41,
        pick in any::<prop::sample::Index>(),
        pick_gold in any::<prop::sample::Index>(),
        pick_wrapper in any::<prop::sample::Index>(),
    ) {
        let c = strict();
        let forms = renderings(n, d);
        let (pred, gold) = (pick.get(&forms), pick_gold.get(&forms));
        let v = c.check_answer(pred, gold, Some("math"));
        prop_assert!(v.is_correct(), "{pred} rejected for {gold}: {v:?}");
        // 0·x and 0·π are 0: the multiplying wrappers only differ from a non-zero value.
        let wrapped: Vec<String> = wrappers(pred)
            .into_iter()
            .filter(|w| n != 0 || !(w.ends_with('x') || w.ends_with("\\pi")))
            .collect();
        let w = pick_wrapper.get(&wrapped);
        let v = c.check_answer(w, gold, Some("math"));
        prop_assert!(!v.is_correct(), "{w} accepted for {gold}: {v:?}");
    }

    /// A letter gold on a data set that is not multiple choice is never matched by an answer
    /// that merely contains the letter.
    #[test]
    fn letters_are_not_choices_outside_multiple_choice_sets(
        letter in prop::sample::select(vec!["A", "B", "C", "D", "E"]),
        prefix in "[1-9][0-9]{0,2}[a-z]{0,2}",
    ) {
        let pred = format!("{prefix}+{letter}");
        let v = strict().check_answer(&pred, letter, Some("math"));
        prop_assert!(!v.is_correct(), "{pred} accepted for {letter}: {v:?}");
    }
}
