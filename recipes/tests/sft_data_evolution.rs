//! `sft-data-evolution` end to end on a scripted policy that always answers `\boxed{5}`: the
//! rounds keep exactly the responses the checker (or the majority vote) accepts, write them as
//! messages JSONL, fine-tune, and report kept/total and accuracy before/after.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bigram_policy, id, jsonl, script_tokenizer, CONCAT_TEMPLATE};

/// "Q" -> "\boxed{5}" -> `<eos>`, saved with its tokenizer in `dir`.
fn always_five(dir: &Path) {
    let tokenizer_dir = dir.with_extension("tokenizer");
    std::fs::create_dir_all(&tokenizer_dir).unwrap();
    let tok = script_tokenizer(&tokenizer_dir, CONCAT_TEMPLATE);
    let boxed = id(&tok, "\\boxed{5}");
    bigram_policy(&[(id(&tok, "Q"), boxed), (boxed, 0)])
        .with_side_files_from(&tokenizer_dir)
        .save(dir)
        .unwrap();
}

#[test]
fn rounds_keep_the_accepted_responses_and_fine_tune_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    always_five(&model);
    let data = tmp.path().join("qa.jsonl");
    // Gold 5 (kept), gold 6 (rejected), no gold (majority answer 5: kept), and a held-out question.
    std::fs::write(
        &data,
        "{\"question\": \"Q\", \"answer\": \"5\"}\n{\"question\": \"Q\", \"answer\": \"6\"}\n\
         {\"question\": \"Q\"}\n{\"question\": \"Q\", \"answer\": 5}\n",
    )
    .unwrap();
    let output = tmp.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_mathrl"))
        .args(["--recipe", "sft-data-evolution", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&output)
        .args(["--set", "rounds=2", "--set", "samples_per_question=4"])
        .args(["--set", "eval_questions=1", "--set", "max_new_tokens=4"])
        .args(["--set", "sft.steps=2", "--set", "sft.batch_size=2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("round 1: kept 2/12 responses (2 questions), accuracy 100.0% -> 100.0%"),
        "{stderr}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap())
            .unwrap();
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for (r, round) in rounds.iter().enumerate() {
        assert_eq!(round["round"], r + 1);
        // Four identical samples per question: one unique response kept per accepted question.
        assert_eq!(
            (round["kept"].as_u64(), round["total"].as_u64()),
            (Some(2), Some(12))
        );
        assert_eq!(round["sft_steps"], 2);
        assert_eq!(round["accuracy_before"], 1.0);
        assert_eq!(
            round["accuracy_after"], 1.0,
            "a few small steps keep the script"
        );
        let conversations = jsonl(&output.join(format!("round-{}/data.jsonl", r + 1)));
        assert_eq!(conversations.len(), 2);
        for c in &conversations {
            let roles: Vec<&str> = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles, ["system", "user", "assistant"]);
            assert_eq!(c["messages"][2]["content"], "\\boxed{5}");
        }
    }
    assert_eq!(summary["eval_questions"], 1);
    assert_eq!(summary["train_questions"], 3);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(output.join("final").join(file).is_file(), "final/{file}");
    }
}
