//! The `generate` recipe end to end on the tiny fixture policy.

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

/// The tiny-qwen2 fixture, with the procedural tokenizer when `tokenizer` is true.
fn tiny_model(dir: &Path, tokenizer: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-qwen2").join(file), dir.join(file)).unwrap();
    }
    if tokenizer {
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(fixture("procedural-tokenizer").join(file), dir.join(file)).unwrap();
        }
    }
}

fn generate(model: &Path, input: &Path, output: &Path, sets: &[&str]) -> std::process::Output {
    let mut cmd = mathrl();
    cmd.args(["--recipe", "generate", "--seed", "7", "--model"])
        .arg(model)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output);
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd.output().unwrap()
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn greedy_prompt_ids_reproduce_the_reference_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, false);
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-qwen2/expected.json")).unwrap(),
    )
    .unwrap();
    let greedy = &expected["greedy"];
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        format!("{{\"prompt_ids\": {}, \"id\": \"a\"}}\n", greedy["prompt"]),
    )
    .unwrap();
    let output = tmp.path().join("out.jsonl");
    let out = generate(
        &model,
        &input,
        &output,
        &["temperature=0", "max_new_tokens=12"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = read_lines(&output);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "a", "the input line is repeated");
    let c = &lines[0]["completions"][0];
    let want: Vec<u64> = greedy["output_ids"].as_array().unwrap()[4..]
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let got: Vec<u64> = c["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(got, want);
    // Greedy log-probs are those of temperature 1 (the reference's chosen-token log-probs).
    for (g, e) in c["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(greedy["chosen_token_logprobs"].as_array().unwrap())
    {
        assert!(
            (g.as_f64().unwrap() - e.as_f64().unwrap()).abs() < 1e-4,
            "{g} vs {e}"
        );
    }
    assert_eq!(c["finish_reason"], "length");
    assert!(c["text"].is_null(), "no tokenizer, no text");

    // Without a tokenizer a text prompt is a clear error naming the line.
    std::fs::write(
        &input,
        "{\"prompt_ids\": [1, 2]}\n{\"prompt\": \"What is 2+3?\"}\n",
    )
    .unwrap();
    let out = generate(&model, &input, &output, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in.jsonl:2") && err.contains("tokenizer"),
        "{err}"
    );
}

#[test]
fn sampling_n_completions_per_prompt_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_model(&model, true);
    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"prompt\": \"What is 2+3?\"}\n{\"question\": \"Tom has 3 apples.\", \"system\": \"Be brief.\"}\n{\"prompt_ids\": [5, 17, 42]}\n",
    )
    .unwrap();
    let sets = ["n=3", "temperature=1.0", "max_new_tokens=8"];
    let first = tmp.path().join("a.jsonl");
    let out = generate(&model, &input, &first, &sets);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = read_lines(&first);
    assert_eq!(lines.len(), 3);
    for line in &lines {
        let completions = line["completions"].as_array().unwrap();
        assert_eq!(completions.len(), 3);
        for c in completions {
            let ids = c["token_ids"].as_array().unwrap();
            assert!(!ids.is_empty() && ids.len() <= 8);
            assert_eq!(c["logprobs"].as_array().unwrap().len(), ids.len());
            assert!(c["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|lp| lp.as_f64().unwrap() <= 0.0));
            assert!(c["text"].is_string());
            let reason = c["finish_reason"].as_str().unwrap();
            assert!(["length", "stop_token"].contains(&reason), "{reason}");
        }
        let distinct: std::collections::HashSet<String> = completions
            .iter()
            .map(|c| c["token_ids"].to_string())
            .collect();
        assert!(
            distinct.len() > 1,
            "samples at temperature 1 differ: {line}"
        );
    }
    let second = tmp.path().join("b.jsonl");
    assert!(generate(&model, &input, &second, &sets).status.success());
    assert_eq!(
        read_lines(&second),
        lines,
        "the same seed gives the same completions"
    );
}
