//! The `pipeline` recipe end to end: on a tiny random policy, every stage of the report's loop
//! runs, each feeding the next (policy and RM directories), and writes its outputs; on the
//! shipped tiny policy, two rounds of SFT-data evolution → RM retraining pool their candidates.

mod common;

use common::{jsonl, tiny_procedural_policy};

use std::process::Command;

use mathrl::data::jsonl::{write_messages_jsonl, write_question_answer_jsonl};
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

/// Every stage's settings, small enough for a test.
const CONFIG: &str = r#"
[sets]
sft = ["steps=2", "batch_size=4", "eval_examples=2"]
rm = ["samples_per_query=2", "max_new_tokens=6", "eval_queries=2", "queries_per_step=2", "max_queries=6"]
sft-data-evolution = ["rounds=1", "samples_per_question=2", "max_new_tokens=6", "eval_questions=1", "max_questions=4", "sft.steps=1", "sft.batch_size=2"]
rm-retraining = ["samples_per_query=2", "max_new_tokens=6", "eval_queries=2", "queries_per_step=2", "max_queries=6"]
qwen25-math-rl = ["trainer.prompts_per_step=2", "grpo.rollout.group_size=2", "grpo.rollout.max_new_tokens=6", "eval_questions=2", "eval_max_new_tokens=6"]
eval = ["max_new_tokens=6", "modes=[\"cot\"]"]
"#;

#[test]
fn every_stage_runs_and_hands_its_model_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    tiny_procedural_policy(&base, 1);
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(12).collect();
    let (sft, qa) = (tmp.path().join("sft.jsonl"), tmp.path().join("qa.jsonl"));
    write_messages_jsonl(&sft, &problems).unwrap();
    write_question_answer_jsonl(&qa, &problems).unwrap();
    let config = tmp.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!("qa_data = {:?}\n{CONFIG}", qa.display().to_string()),
    )
    .unwrap();

    let out = tmp.path().join("run");
    // `--output DIR`, or `--resume DIR` to continue the run there.
    let pipeline = |place: &str| {
        let mut cmd = mathrl();
        cmd.args(["--recipe", "pipeline", "--model"])
            .arg(&base)
            .arg("--data")
            .arg(&sft)
            .arg("--config")
            .arg(&config)
            .args(["--max-steps", "2", "--datasets", "gsm8k", "--limit", "2"])
            .arg(place)
            .arg(&out);
        cmd
    };
    let status = pipeline("--output").output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    for (dir, product) in [
        ("1-sft", "final/model.safetensors"),
        ("2-rm", "rm/model.safetensors"),
        ("3-sft-data-evolution", "final/model.safetensors"),
        ("4-rm-retraining", "rm/model.safetensors"),
        ("5-qwen25-math-rl", "final/model.safetensors"),
        ("6-eval", "eval.json"),
    ] {
        assert!(
            out.join(dir).join(product).is_file(),
            "{dir} did not write {product}"
        );
    }
    // Each stage started from the previous one's model, and RL used the retrained RM.
    let rl: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("5-qwen25-math-rl/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rl["reward"], "shaped", "{rl}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stages"].as_array().unwrap().len(), 6, "{summary}");
    assert!(
        summary["policy"]
            .as_str()
            .unwrap()
            .ends_with("5-qwen25-math-rl/final"),
        "{summary}"
    );
    assert!(
        summary["rm"]
            .as_str()
            .unwrap()
            .ends_with("4-rm-retraining/rm"),
        "{summary}"
    );

    // Killed during RL (its checkpoint written, its summary not): `--resume` skips the four
    // finished stages, resumes RL from its checkpoint and runs the evaluation.
    std::fs::remove_file(out.join("5-qwen25-math-rl/summary.json")).unwrap();
    std::fs::remove_dir_all(out.join("6-eval")).unwrap();
    let sft_final = out.join("1-sft/final/model.safetensors");
    let sft_written = std::fs::metadata(&sft_final).unwrap().modified().unwrap();
    let resumed = pipeline("--resume").output().unwrap();
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    assert_eq!(
        log.matches("pipeline stage already done").count(),
        4,
        "{log}"
    );
    assert!(log.contains("resumed from"), "{log}");
    assert!(out.join("6-eval/eval.json").is_file());
    let unchanged = std::fs::metadata(&sft_final).unwrap().modified().unwrap();
    assert_eq!(
        sft_written, unchanged,
        "the finished SFT stage was run again"
    );
}

#[test]
fn two_rounds_pool_their_candidates_and_each_samples_from_the_one_before() {
    // The shipped policy answers some procedural questions right, so each round keeps some.
    let tmp = tempfile::tempdir().unwrap();
    let base = mathrl_recipes::assets::default_policy_dir();
    let task = ProceduralTask::new(mathrl_recipes::assets::embedded_task()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(8).collect();
    let (sft, qa) = (tmp.path().join("sft.jsonl"), tmp.path().join("qa.jsonl"));
    write_messages_jsonl(&sft, &problems).unwrap();
    write_question_answer_jsonl(&qa, &problems).unwrap();
    let config = tmp.path().join("pipeline.toml");
    let evolution = r#"sft-data-evolution = ["rounds=1", "samples_per_question=4", "max_new_tokens=12", "eval_questions=1", "sft.steps=1", "sft.batch_size=2"]"#;
    let sets: String = CONFIG
        .lines()
        .map(|l| {
            if l.starts_with("sft-data-evolution") {
                evolution
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &config,
        format!(
            "qa_data = {:?}\nrounds = 2\n{sets}\n",
            qa.display().to_string()
        ),
    )
    .unwrap();
    let out = tmp.path().join("run");
    let run = mathrl()
        .args(["--recipe", "pipeline", "--model"])
        .arg(&base)
        .arg("--data")
        .arg(&sft)
        .arg("--config")
        .arg(&config)
        .args(["--max-steps", "1", "--datasets", "gsm8k", "--limit", "1"])
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}");

    for round in ["round-1", "round-2"] {
        for (dir, product) in [
            ("3-sft-data-evolution", "final/model.safetensors"),
            ("3-sft-data-evolution", "round-1/data.jsonl"),
            ("4-rm-retraining", "rm/model.safetensors"),
        ] {
            let path = out.join(round).join(dir).join(product);
            assert!(path.is_file(), "{} is missing", path.display());
        }
    }
    assert!(!out.join("3-sft-data-evolution").exists());
    // Round 1 kept candidates; round 2 fine-tuned on them and its own, and its pool has both.
    let kept_1 = jsonl(&out.join("round-1/3-sft-data-evolution/round-1/data.jsonl"));
    let kept_2 = jsonl(&out.join("round-2/3-sft-data-evolution/round-1/data.jsonl"));
    assert!(!kept_1.is_empty(), "round 1 kept nothing:\n{log}");
    assert_eq!(jsonl(&out.join("round-1/candidates.jsonl")), kept_1);
    let trained_2 = jsonl(&out.join("round-2/3-sft-data-evolution/round-1/sft-data.jsonl"));
    let pool_2 = jsonl(&out.join("round-2/candidates.jsonl"));
    assert_eq!(trained_2, pool_2);
    for line in kept_1.iter().chain(&kept_2) {
        assert!(pool_2.contains(line), "{line} is not in round 2's pool");
    }
    assert!(!out
        .join("round-1/3-sft-data-evolution/round-1/sft-data.jsonl")
        .exists());

    // Each stage's inputs, as the summary records them: round 2 sampled from round 1's SFT
    // model with round 1's RM, and RL ran after with round 2's.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let stages = summary["stages"].as_array().unwrap();
    let names: Vec<(&str, Option<u64>)> = stages
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["round"].as_u64()))
        .collect();
    assert_eq!(
        names,
        [
            ("sft", None),
            ("rm", None),
            ("sft-data-evolution", Some(1)),
            ("rm-retraining", Some(1)),
            ("sft-data-evolution", Some(2)),
            ("rm-retraining", Some(2)),
            ("qwen25-math-rl", None),
            ("eval", None)
        ]
    );
    let input = |i: usize, key: &str| stages[i][key].as_str().unwrap_or("-").to_string();
    assert!(input(4, "model").ends_with("round-1/3-sft-data-evolution/final"));
    assert!(input(4, "rm").ends_with("round-1/4-rm-retraining/rm"));
    assert!(input(5, "model").ends_with("round-2/3-sft-data-evolution/final"));
    assert!(input(6, "rm").ends_with("round-2/4-rm-retraining/rm"));
    assert!(out
        .join("5-qwen25-math-rl/final/model.safetensors")
        .is_file());
    assert!(out.join("6-eval/eval.json").is_file());

    // Killed during round 2's RM retraining: `--resume` skips the five finished stages (round
    // 2's evolution among them, its pool written again the same), then runs the rest.
    std::fs::remove_file(out.join("round-2/4-rm-retraining/summary.json")).unwrap();
    std::fs::remove_dir_all(out.join("5-qwen25-math-rl")).unwrap();
    std::fs::remove_dir_all(out.join("6-eval")).unwrap();
    std::fs::remove_file(out.join("round-2/candidates.jsonl")).unwrap();
    let evolved = out.join("round-2/3-sft-data-evolution/final/model.safetensors");
    let written = std::fs::metadata(&evolved).unwrap().modified().unwrap();
    let resumed = mathrl()
        .args(["--recipe", "pipeline", "--model"])
        .arg(&base)
        .arg("--data")
        .arg(&sft)
        .arg("--config")
        .arg(&config)
        .args(["--max-steps", "1", "--datasets", "gsm8k", "--limit", "1"])
        .arg("--resume")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    assert_eq!(
        log.matches("pipeline stage already done").count(),
        5,
        "{log}"
    );
    assert_eq!(jsonl(&out.join("round-2/candidates.jsonl")), pool_2);
    assert_eq!(
        std::fs::metadata(&evolved).unwrap().modified().unwrap(),
        written
    );
    assert!(out.join("6-eval/eval.json").is_file());
}

#[test]
fn unknown_stages_are_errors_naming_them() {
    let out = mathrl()
        .args([
            "--recipe",
            "pipeline",
            "--set",
            "stages=[\"sft\", \"rl\"]",
            "--model",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown stage `rl`"), "{stderr}");
}
