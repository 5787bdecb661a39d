//! The `mathrl` binary end to end: recipe registry, and the `logprobs` tool on the fixture.

use std::path::PathBuf;
use std::process::Command;

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

#[test]
fn list_recipes_names_each_recipe_with_a_description() {
    let out = mathrl().arg("--list-recipes").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for recipe in mathrl_recipes::recipes() {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(recipe.name));
        let line = line.unwrap_or_else(|| panic!("{} not listed in:\n{text}", recipe.name));
        assert!(
            line.len() > recipe.name.len() + 10,
            "no description: {line}"
        );
    }
}

#[test]
fn unknown_recipe_is_an_error_listing_the_known_ones() {
    let out = mathrl()
        .args(["--recipe", "qwen-math-rl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown recipe `qwen-math-rl`") && err.contains("logprobs"),
        "{err}"
    );
}

#[test]
fn logprobs_recipe_reproduces_the_reference_logprobs() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-qwen2/expected.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.json");
    let output = dir.path().join("out.json");
    let payload = serde_json::json!({"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]});
    std::fs::write(&input, payload.to_string()).unwrap();
    let status = mathrl()
        .args(["--recipe", "logprobs", "--model"])
        .arg(fixture("tiny-qwen2"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let mask = &expected["next_token_logprobs_mask"];
    let mut compared = 0;
    for (r, row) in expected["next_token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for (t, e) in row.as_array().unwrap().iter().enumerate() {
            if mask[r][t] == 1 {
                let g = got["logprobs"][r][t].as_f64().unwrap();
                assert!(
                    (g - e.as_f64().unwrap()).abs() < 1e-4,
                    "[{r}][{t}]: {g} vs {e}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 22);
}

#[test]
fn logprobs_recipe_reports_a_missing_model_directory() {
    let out = mathrl()
        .args([
            "--recipe",
            "logprobs",
            "--model",
            "/nonexistent/model",
            "--input",
            "x",
            "--output",
            "y",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/model"), "{err}");
}
