//! Every row of the table in CHECKER.md: where profile `strict` departs from `qwen25-math`
//! (the reference grader), with the reference's verdict and the right one.

use mathrl_rewards::{Checker, CheckerProfile};

/// (what is graded: a bare answer or a full response, gold, dataset, reference verdict, strict verdict)
const ROWS: &[(&str, &str, &str, bool, bool)] = &[
    ("300", "3", "math", true, false),
    ("0.03", "3", "math", true, false),
    ("10001", "10000", "math", true, false),
    ("1,2", "12", "math", true, false),
    ("[1,2)", "(1,2]", "math", true, false),
    ("x+a", "x+c", "math", true, false),
    (
        "0,-1,-\\frac{3}{8}",
        "0,-1,-\\frac{3}{2}",
        "olympiadbench",
        true,
        false,
    ),
    ("10\\%", "0.1", "math", true, false),
    ("2,1", "1,2", "math", false, true),
    ("2y=4x+2", "y=2x+1", "math", false, true),
    ("\\frac{\\pi}{2}", "1.5708", "college_math", false, true),
    (
        "RESPONSE:The value is \\fbox{5} when n=2.",
        "5",
        "math",
        false,
        true,
    ),
    ("RESPONSE:We need \\boxed{7", "7", "math", true, false),
    ("x+C", "C", "math", true, false),
    ("\\frac{1999}{40}", "\\frac{1949}{39}", "math", true, false),
    ("0.3333", "\\frac{1}{3}", "math", true, false),
];

fn grade(profile: CheckerProfile, what: &str, gold: &str, dataset: &str) -> bool {
    let checker = Checker::new(profile);
    match what.strip_prefix("RESPONSE:") {
        Some(response) => checker
            .check_response(response, gold, Some(dataset))
            .is_correct(),
        None => checker.check_answer(what, gold, Some(dataset)).is_correct(),
    }
}

#[test]
fn every_row_of_the_checker_table_holds() {
    for &(what, gold, dataset, reference, strict) in ROWS {
        assert_eq!(
            grade(CheckerProfile::Qwen25Math, what, gold, dataset),
            reference,
            "qwen25-math: {what} vs {gold}"
        );
        assert_eq!(
            grade(CheckerProfile::Strict, what, gold, dataset),
            strict,
            "strict: {what} vs {gold}"
        );
    }
}

#[test]
fn the_profiles_agree_where_the_reference_is_right() {
    let same: &[(&str, &str, bool)] = &[
        ("\\dfrac{1}{2}", "\\frac{1}{2}", true),
        ("0.5", "\\frac{1}{2}", true),
        ("\\frac{6}{8}", "\\frac{3}{4}", true),
        (
            "(3,\\frac{\\pi}{2})",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
            true,
        ),
        ("(\\frac{\\pi}{2},3)", "(3,\\frac{\\pi}{2})", false),
        (
            "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
            "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}",
            true,
        ),
        (
            "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}",
            "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
            false,
        ),
        ("x = 3", "3", true),
        ("5\\sqrt2", "5\\sqrt{2}", true),
        ("2x+2", "2(x+1)", true),
        ("2x+3", "2(x+1)", false),
        ("59 meters", "59", true),
        ("-59", "59", false),
        ("\\text{Five}", "5", true),
    ];
    for &(pred, gold, want) in same {
        for profile in [CheckerProfile::Qwen25Math, CheckerProfile::Strict] {
            let v = Checker::new(profile).check_answer(pred, gold, Some("math"));
            assert_eq!(v.is_correct(), want, "{profile}: {pred} vs {gold} ({v:?})");
        }
    }
}
