//! `tir-data-evolution` end to end on a scripted policy whose python block prints 5 in the real
//! sandbox and then answers `\boxed{5}`: the rounds keep exactly the trajectories whose answer the
//! checker accepts (or the majority gives), with their output blocks, and the `sft` recipe reads
//! the kept data, training on the model's tokens and not on the tool output.

mod common;

use std::process::Command;

use common::{jsonl, save_python_script, CONCAT_TEMPLATE};

#[test]
fn rounds_keep_the_accepted_trajectories_with_their_output_blocks_and_sft_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    save_python_script(&model, CONCAT_TEMPLATE);
    let data = tmp.path().join("qa.jsonl");
    // Gold 5 (kept), gold 6 (the program prints 5: dropped), no gold (the majority answer 5,
    // given by all 4 samples: kept), and a held-out question.
    std::fs::write(
        &data,
        "{\"question\": \"Q\", \"answer\": \"5\"}\n{\"question\": \"Q\", \"answer\": \"6\"}\n\
         {\"question\": \"Q\"}\n{\"question\": \"Q\", \"answer\": 5}\n",
    )
    .unwrap();
    let output = tmp.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_mathrl"))
        .args(["--recipe", "tir-data-evolution", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&output)
        .args(["--set", "rounds=2", "--set", "samples_per_question=4"])
        .args(["--set", "eval_questions=1", "--set", "max_new_tokens=16"])
        .args(["--set", "sft.steps=1", "--set", "sft.batch_size=2"])
        .args(["--set", "tool.allow_weaker_isolation=true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("round 1: kept 2/12 responses (2 questions), accuracy 100.0% -> "),
        "{stderr}"
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap())
            .unwrap();
    let rounds = summary["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    let trajectory = "```python\nprint(2+3)\n```\n```output\n5\n```\n\\boxed{5}";
    for (r, round) in rounds.iter().enumerate() {
        assert_eq!(
            (round["kept"].as_u64(), round["total"].as_u64()),
            (Some(2), Some(12)),
            "round {}",
            r + 1
        );
        let conversations = jsonl(&output.join(format!("round-{}/data.jsonl", r + 1)));
        assert_eq!(conversations.len(), 2);
        for c in &conversations {
            let messages = c["messages"].as_array().unwrap();
            let roles: Vec<&str> = messages
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles, ["system", "user", "assistant"]);
            assert!(messages[0]["content"]
                .as_str()
                .unwrap()
                .starts_with("Please integrate natural language reasoning with programs"));
            // The tool turn stays in the assistant text: the program and its output block.
            assert_eq!(messages[2]["content"], trajectory);
        }
    }

    // The kept data is the `sft` recipe's input as it is; it trains the model's tokens only:
    // "```python\n", "print(2+3)\n", "```\n", "```output", "\boxed{5}" of each conversation, not
    // the 3 tokens of the output block "\n5\n```\n".
    let sft = tmp.path().join("sft");
    let out = Command::new(env!("CARGO_BIN_EXE_mathrl"))
        .args(["--recipe", "sft", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(output.join("round-2/data.jsonl"))
        .arg("--output")
        .arg(&sft)
        .args(["--set", "steps=1", "--set", "batch_size=2"])
        .args(["--set", "eval_examples=0", "--set", "eval_every=0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let trained: Vec<f64> = std::fs::read_to_string(sft.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["tag"] == "train/trained_tokens")
        .map(|v| v["value"].as_f64().unwrap())
        .collect();
    assert_eq!(trained, [10.0]);
}
