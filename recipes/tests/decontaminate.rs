//! Decontamination end to end: the `decontaminate` recipe removes planted near-copies of MATH and
//! GSM8K test questions (changed punctuation and case, a word dropped) and keeps fresh problems
//! byte for byte; the training recipes refuse data that is all contaminated; an evaluation set
//! that cannot be read is an error, never a silent pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

fn shipped_eval_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/eval")
}

/// The question of line `line` (1-based) of a shipped set's test file.
fn eval_question(set: &str, field: &str, pick: impl Fn(&str) -> bool) -> (usize, String) {
    let text = std::fs::read_to_string(shipped_eval_dir().join(set).join("test.jsonl")).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let row: Value = serde_json::from_str(l).unwrap();
            (i + 1, row[field].as_str().unwrap().to_string())
        })
        .find(|(_, q)| pick(q))
        .unwrap()
}

/// A light edit: other case and punctuation, and the word at `drop` removed.
fn edit(question: &str, drop: usize) -> String {
    let words: Vec<&str> = question.split_whitespace().collect();
    let kept: Vec<String> = words
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != drop)
        .map(|(_, w)| {
            w.replace(['.', ','], " ;")
                .replace('?', "!!")
                .to_uppercase()
        })
        .collect();
    kept.join("  ")
}

fn decontaminate(input: &Path, output: &Path, data_dir: Option<&Path>) -> Output {
    let mut cmd = mathrl();
    cmd.args(["--recipe", "decontaminate", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output);
    if let Some(dir) = data_dir {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.output().unwrap()
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Fresh problems in each form a line may take; none is near any evaluation question.
fn fresh_lines() -> Vec<String> {
    [
        json!({"question": "A beekeeper keeps 37 hives and moves 9 of them to the orchard; how many hives stay at the farm by the river?", "answer": "28"}),
        json!({"problem": "Zorblat owns 41 glass marbles and trades 13 marbles for a kite.", "answer": "28"}),
        json!({"prompt": [{"role": "system", "content": "Solve."}, {"role": "user", "content": "Quillon the heron catches 6 fish at dawn and 5 at dusk."}], "answer": "11"}),
        json!({"messages": [{"role": "user", "content": "Mirabel paints 14 fences in a week of rain."}, {"role": "assistant", "content": "\\boxed{14}"}]}),
    ]
    .iter()
    .map(Value::to_string)
    .collect()
}

#[test]
fn near_copies_of_math_and_gsm8k_questions_are_removed_and_fresh_problems_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (gsm8k_line, gsm8k) = eval_question("gsm8k", "question", |_| true);
    let (long_line, long) = eval_question("math", "problem", |q| {
        q.contains('$') && q.split_whitespace().count() > 20
    });
    // A MATH question under 13 words: no 13-gram, so the LCS must catch it.
    let (short_line, short) = eval_question("math", "problem", |q| {
        let n = q.split_whitespace().count();
        (9..=12).contains(&n) && !q.contains(['$', '\\'])
    });
    let fresh = fresh_lines();
    let planted = [
        json!({"question": edit(&gsm8k, 5), "answer": "18"}),
        json!({"problem": edit(&long, 3).replace('$', "")}),
        json!({"messages": [{"role": "user", "content": edit(&short, 2)}, {"role": "assistant", "content": "x"}]}),
    ];
    let mut input = vec![fresh[0].clone(), planted[0].to_string(), fresh[1].clone()];
    input.extend([
        planted[1].to_string(),
        fresh[2].clone(),
        planted[2].to_string(),
    ]);
    input.push(fresh[3].clone());
    let (inp, out) = (tmp.path().join("in.jsonl"), tmp.path().join("clean.jsonl"));
    std::fs::write(&inp, input.join("\n") + "\n").unwrap();

    let o = decontaminate(&inp, &out, None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(
        read_lines(&out),
        fresh,
        "the fresh lines, unchanged and in order"
    );
    assert!(stderr.contains("kept 4 of 7 lines, removed 3"), "{stderr}");

    let removed: Vec<Value> = read_lines(&tmp.path().join("clean.removed.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: Vec<(u64, &str, u64)> = removed
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["dataset"].as_str().unwrap(),
                r["eval_line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (2, "gsm8k", gsm8k_line as u64),
            (4, "math", long_line as u64),
            (6, "math", short_line as u64)
        ]
    );
    assert_eq!(
        removed[0]["record"], planted[0],
        "the removed line is kept whole"
    );
    // The long questions share a 13-gram, which is reported; the short one is a near-copy.
    for r in &removed[..2] {
        assert_eq!(r["ngram"].as_str().unwrap().split(' ').count(), 13, "{r}");
    }
    let lcs = removed[2]["lcs"].as_f64().unwrap();
    assert!((0.8..1.0).contains(&lcs), "{lcs}");
    assert_eq!(removed[2]["eval_question"], short.as_str());
}

#[test]
fn an_evaluation_set_that_cannot_be_read_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in.jsonl");
    std::fs::write(&inp, fresh_lines().join("\n")).unwrap();
    let out = tmp.path().join("out.jsonl");

    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(broken.join("gsm8k")).unwrap();
    std::fs::write(
        broken.join("gsm8k/test.jsonl"),
        "{\"question\": \"What is one plus one?\", \"answer\": \"#### 2\"}\n{\"question\": \n",
    )
    .unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (dir, says) in [
        (broken.clone(), "gsm8k/test.jsonl:2".to_string()),
        (empty.clone(), "no evaluation set".to_string()),
        (tmp.path().join("missing"), "missing".to_string()),
    ] {
        let o = decontaminate(&inp, &out, Some(&dir));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{}", dir.display());
        assert!(stderr.contains(&says), "{stderr}");
        assert!(!out.exists(), "nothing is written on an error");
    }

    // A custom directory of sets is read whole: its one question is removed, by any set name.
    std::fs::write(
        broken.join("gsm8k/test.jsonl"),
        "{\"question\": \"Zorblat owns 41 glass marbles and trades 13 marbles for a kite.\"}\n",
    )
    .unwrap();
    std::fs::rename(broken.join("gsm8k"), broken.join("my-set")).unwrap();
    let o = decontaminate(&inp, &out, Some(&broken));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_lines(&out).len(), 3);
    let removed = read_lines(&tmp.path().join("out.removed.jsonl"));
    assert!(removed[0].contains("\"dataset\":\"my-set\""), "{removed:?}");
}

#[test]
fn a_line_without_a_question_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in.jsonl");
    std::fs::write(
        &inp,
        format!("{}\n{{\"answer\": \"3\"}}\n", fresh_lines()[0]),
    )
    .unwrap();
    let out = tmp.path().join("out.jsonl");
    let o = decontaminate(&inp, &out, None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("in.jsonl:2") && stderr.contains("no question"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// The training recipes filter their data by default: data that is all near-copies of
/// evaluation questions is refused before a run directory or a model exists.
#[test]
fn training_recipes_refuse_data_that_is_all_contaminated() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, gsm8k) = eval_question("gsm8k", "question", |_| true);
    let (_, math) = eval_question("math", "problem", |q| q.split_whitespace().count() > 20);
    let data = tmp.path().join("qa.jsonl");
    std::fs::write(
        &data,
        format!(
            "{}\n{}\n",
            json!({"question": edit(&gsm8k, 4), "answer": "18"}),
            json!({"question": math.to_lowercase(), "answer": "2"})
        ),
    )
    .unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-math-policy");
    for (recipe, what) in [
        ("qwen25-math-rl", "prompts"),
        ("sft-data-evolution", "questions"),
        ("tir-data-evolution", "questions"),
        ("rm-retraining", "queries"),
    ] {
        let output = tmp.path().join(recipe);
        let o = mathrl()
            .args(["--recipe", recipe, "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{recipe}: {stderr}");
        assert!(
            stderr.contains(&format!("all 2 {what} overlap the evaluation sets")),
            "{recipe}: {stderr}"
        );
        assert!(!output.exists(), "{recipe} made its run directory");
    }
}
