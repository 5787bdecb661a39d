//! The `grade` recipe through the built binary.

use std::process::Command;

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

fn grade(input: &str, profile: &str) -> (std::process::Output, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&inp, input).unwrap();
    let o = mathrl()
        .args(["--recipe", "grade", "--checker", profile, "--input"])
        .arg(&inp)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let rows = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (o, rows)
}

const INPUT: &str = r#"{"pred": "\\dfrac{1}{2}", "gold": "\\frac{1}{2}", "dataset": "math"}
{"response": "So we get 300 apples. The answer is 300.", "gold": "3", "dataset": "gsm8k"}
{"response": "Thus \\boxed{[1,2)}.", "gold": "(1,2]"}
{"response": "no number here", "gold": "7", "dataset": "math"}
"#;

#[test]
fn grades_each_line_and_prints_a_summary() {
    let (o, rows) = grade(INPUT, "qwen25-math");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let correct: Vec<bool> = rows
        .iter()
        .map(|r| r["correct"].as_bool().unwrap())
        .collect();
    // The reference accepts ×100 and ignores interval brackets.
    assert_eq!(correct, vec![true, true, true, false]);
    assert_eq!(rows[0]["extracted"], "\\frac{1}{2}");
    assert_eq!(rows[3]["reason"], "no answer found");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("graded 4")
            && err.contains("accuracy 0.7500")
            && err.contains("unparseable 1")
            && err.contains("checks/s"),
        "{err}"
    );

    let (o, rows) = grade(INPUT, "strict");
    assert!(o.status.success());
    let correct: Vec<bool> = rows
        .iter()
        .map(|r| r["correct"].as_bool().unwrap())
        .collect();
    assert_eq!(correct, vec![true, false, false, false]);
}

#[test]
fn a_malformed_line_names_the_file_and_line() {
    let (o, _) = grade(
        "{\"pred\": \"1\", \"gold\": \"1\"}\n{\"gold\": \"2\"}\n",
        "strict",
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in.jsonl:2") && err.contains("pred"), "{err}");
    let (o, _) = grade("{\"pred\": \"1\", \"gold\": \"1\"}\n", "lenient");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown checker profile"));
}

#[test]
fn a_bad_line_leaves_the_previous_output_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&out, "the previous output\n").unwrap();
    // Two good rows, then a bad third line: the old file used to be truncated to two rows.
    std::fs::write(
        &inp,
        "{\"pred\": \"1\", \"gold\": \"1\"}\n{\"pred\": \"2\", \"gold\": \"2\"}\n{\"gold\": \"3\"}\n",
    )
    .unwrap();
    let o = mathrl()
        .args(["--recipe", "grade", "--checker", "strict", "--input"])
        .arg(&inp)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("in.jsonl:3"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "the previous output\n"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}
