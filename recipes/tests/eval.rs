//! The `eval` recipe end to end on the tiny fixture policy: 20 questions of the shipped gsm8k and
//! math500 sets, the printed table, `eval.json`, the responses and the event file.

use std::path::{Path, PathBuf};
use std::process::Command;

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// The tiny-qwen2 fixture (vocabulary 1024) with the procedural byte-level tokenizer (656 ids,
/// ChatML template), so that any question can be tokenised.
fn tiny_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-qwen2").join(file), dir.join(file)).unwrap();
    }
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("procedural-tokenizer").join(file), dir.join(file)).unwrap();
    }
}

fn jsonl_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn eval_on_twenty_questions_prints_the_table_and_writes_the_json() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model);
    let output = tmp.path().join("run");
    let out = mathrl()
        .args([
            "--recipe",
            "eval",
            "--datasets",
            "gsm8k,math500",
            "--limit",
            "20",
        ])
        .args(["--set", "max_new_tokens=12"])
        .arg("--model")
        .arg(&model)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "eval failed:\n{stderr}");

    // The table: a header and one row per (dataset, mode).
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["dataset", "n", "accuracy", "mode"], "{stdout}");
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, dataset) in rows[1..].iter().zip(["gsm8k", "math500"]) {
        assert_eq!((row[0], row[1], row[3]), (dataset, "20", "cot"), "{stdout}");
        assert!(row[2].ends_with('%'), "{stdout}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("eval.json")).unwrap()).unwrap();
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (r, dataset) in results.iter().zip(["gsm8k", "math500"]) {
        assert_eq!(r["dataset"], dataset);
        assert_eq!(r["mode"], "cot");
        assert_eq!(r["n"], 20);
        let accuracy = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{r}");
        // The printed accuracy is the JSON's.
        let printed = rows.iter().find(|row| row[0] == dataset).unwrap()[2];
        assert_eq!(printed, format!("{:.1}%", 100.0 * accuracy));
    }

    // The picked responses, one per question, with the gold answers of the data set's rule.
    let gsm8k = jsonl_lines(&output.join("responses/gsm8k.cot.jsonl"));
    assert_eq!(gsm8k.len(), 20);
    assert_eq!(gsm8k[0]["gold"], "18", "Janet's ducks: #### 18");
    assert_eq!(gsm8k[19]["line"], 20);
    let math500 = jsonl_lines(&output.join("responses/math500.cot.jsonl"));
    assert_eq!(math500[0]["gold"], "\\left( 3, \\frac{\\pi}{2} \\right)");
    for record in gsm8k.iter().chain(&math500) {
        // 12 tokens at most, so the response is short and stopped by length or the stop token.
        let reason = record["finish_reason"].as_str().unwrap();
        assert!(["length", "stop_token"].contains(&reason), "{record}");
    }

    assert!(std::fs::read_dir(&output).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("events.out.tfevents")));
}

#[test]
fn eval_config_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = mathrl()
            .args(["--recipe", "eval", "--output"])
            .arg(tmp.path().join("run"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&["--datasets", "gsm8k,math5000", "--model", "/nonexistent"]);
    assert!(
        err.contains("unknown dataset `math5000`") && err.contains("math500"),
        "{err}"
    );
    let err = run(&["--set", "modes=[\"maj@x\"]"]);
    assert!(err.contains("maj@x"), "{err}");
    let err = run(&["--model", "/nonexistent/model"]);
    assert!(
        err.contains("/nonexistent/model") && err.contains("does not exist"),
        "{err}"
    );
    let err = run(&["--set", "modes=[\"rm@4\"]", "--model", "/nonexistent"]);
    assert!(err.contains("--rm"), "{err}");
    let err = run(&["--set", "max_new_tokns=3"]);
    assert!(err.contains("did you mean `max_new_tokens`"), "{err}");
}

#[test]
fn sampled_modes_vote_and_rank_with_the_reward_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model);
    let output = tmp.path().join("run");
    let out = mathrl()
        .args(["--recipe", "eval", "--datasets", "gsm8k", "--limit", "3"])
        .args([
            "--set",
            "max_new_tokens=6",
            "--set",
            "modes=[\"maj@3\", \"rm@3\"]",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--rm")
        .arg(fixture("tiny-rm"))
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("eval.json")).unwrap()).unwrap();
    let modes: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["maj@3", "rm@3"]);
    let rm = jsonl_lines(&output.join("responses/gsm8k.rm@3.jsonl"));
    assert_eq!(rm.len(), 3);
    assert!(
        rm.iter()
            .all(|r| r["rm_score"].as_f64().is_some_and(f64::is_finite)),
        "{rm:?}"
    );
    let maj = jsonl_lines(&output.join("responses/gsm8k.maj@3.jsonl"));
    assert!(maj.iter().all(|r| r["rm_score"].is_null()));
}
