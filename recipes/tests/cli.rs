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

#[test]
fn rm_score_recipe_reproduces_the_reference_rewards() {
    for name in ["tiny-rm", "tiny-rm-seqcls"] {
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in.json"), dir.path().join("out.json"));
        let payload = serde_json::json!({"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]});
        std::fs::write(&input, payload.to_string()).unwrap();
        let status = mathrl()
            .args(["--recipe", "rm-score", "--rm"])
            .arg(fixture(name))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .status()
            .unwrap();
        assert!(status.success());
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
        for (g, e) in got["rewards"]
            .as_array()
            .unwrap()
            .iter()
            .zip(expected["rewards"].as_array().unwrap())
        {
            assert!(
                (g.as_f64().unwrap() - e.as_f64().unwrap()).abs() < 1e-4,
                "{name}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn rm_score_recipe_scores_question_response_pairs_through_the_chat_template() {
    // A reward model with the real Qwen2.5 tokenizer: tiny-rm's weights cover ids < 1024 only, so
    // build one whose vocabulary fits, from a random policy with the Qwen tokenizer's vocabulary.
    let dir = tempfile::tempdir().unwrap();
    let rm_dir = dir.path().join("rm");
    let mut config =
        mathrl::model::Qwen2Config::from_file(fixture("tiny-qwen2").join("config.json")).unwrap();
    config.vocab_size = 151_665;
    let policy = mathrl::Policy::random(
        &config,
        0,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
        mathrl::model::Trainable::No,
    )
    .unwrap();
    let rm = mathrl_rewards::RewardModel::from_policy(
        &policy,
        mathrl_rewards::RewardHeadKind::Qwen25MathRm,
        1,
        mathrl::model::Trainable::No,
    )
    .unwrap();
    rm.save(&rm_dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("qwen2.5-tokenizer").join(f), rm_dir.join(f)).unwrap();
    }
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, "{\"question\": \"1+1?\", \"response\": \"\\\\boxed{2}\", \"id\": 7}\n{\"question\": \"2+2?\", \"response\": \"4\"}\n").unwrap();
    let status = mathrl()
        .args(["--recipe", "rm-score", "--rm"])
        .arg(&rm_dir)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 7);
    let tok = mathrl::Tokenizer::from_dir(&rm_dir).unwrap();
    let want = rm.score_pairs(&tok, &[("1+1?", "\\boxed{2}")], 1).unwrap()[0];
    assert!((lines[0]["reward"].as_f64().unwrap() as f32 - want).abs() < 1e-5);

    std::fs::write(&input, "{\"question\": \"1+1?\"}\n").unwrap();
    let out = mathrl()
        .args(["--recipe", "rm-score", "--rm"])
        .arg(&rm_dir)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("in.jsonl:1: missing string field `response`"));
}
