//! The training recipes end to end on a tiny random policy with the procedural tokenizer: each
//! produces its outputs (HF-layout checkpoints, summary, event files), and `sft` resumes.

mod common;

use common::tiny_procedural_policy;

use std::path::Path;
use std::process::Command;

use mathrl::data::jsonl::{write_messages_jsonl, write_question_answer_jsonl};
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "failed: {stderr}");
    stderr
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn has_event_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("events.out.tfevents")
    })
}

fn assert_hf_layout(dir: &Path, architecture: &str) {
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.join(file).is_file(), "{} lacks {file}", dir.display());
    }
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains(architecture), "{config}");
}

#[test]
fn sft_trains_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(24).collect();
    let data = tmp.path().join("train.jsonl");
    write_messages_jsonl(&data, &problems).unwrap();
    let out = tmp.path().join("run");
    let sft = |steps: u64| {
        let mut cmd = mathrl();
        cmd.args(["--recipe", "sft", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg("--output")
            .arg(&out)
            .args(["--set", &format!("steps={steps}"), "--set", "batch_size=4"])
            .args(["--set", "eval_examples=4", "--set", "checkpoint_every=2"])
            .args(["--set", "learner.train_step.schedule.peak_lr=1e-3"]);
        cmd
    };
    let log = run_ok(&mut sft(3));
    assert!(log.contains("sft step 3/3 | loss "), "{log}");
    assert_eq!(summary(&out)["steps"], 3);
    assert_hf_layout(&out.join("final"), "Qwen2ForCausalLM");
    assert!(out
        .join("checkpoints/step-000003/optimizer.safetensors")
        .is_file());
    assert!(has_event_file(&out));
    let first = summary(&out)["final_loss"].as_f64().unwrap();
    assert!(first.is_finite() && first > 0.0);

    // A second run with more steps finds its own checkpoint and continues from step 3.
    let log = run_ok(&mut sft(5));
    assert!(log.contains("resumed"), "{log}");
    assert_eq!(summary(&out)["steps"], 5);
    assert!(out.join("checkpoints/step-000005").is_dir());
    assert!(
        !out.join("checkpoints/step-000002").exists(),
        "keep_checkpoints=2 keeps only the last two"
    );

    // Another seed or learning rate is another run: refused, naming what changed, unless
    // resume.allow_changed; the step count may change.
    let refused = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = refused(sft(6).args(["--seed", "9"]));
    assert!(
        err.contains("seed: 0 → 9") && err.contains("step-000005"),
        "{err}"
    );
    let err = refused(sft(6).args(["--set", "learner.train_step.schedule.peak_lr=2e-3"]));
    assert!(
        err.contains("learner.train_step.schedule.peak_lr: 0.001 → 0.002"),
        "{err}"
    );
    assert_eq!(summary(&out)["steps"], 5);
    // `--log-level warn` keeps the warning about the change and silences the progress.
    let log = run_ok(
        sft(6)
            .args(["--seed", "9", "--set", "resume.allow_changed=true"])
            .args(["--log-level", "warn"]),
    );
    assert!(
        log.contains("resuming a changed run") && !log.contains("sft step"),
        "{log}"
    );
    assert_eq!(summary(&out)["steps"], 6);
}

#[test]
fn rm_retraining_writes_a_reward_model_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    // The shipped policy answers some procedural questions right: queries with both a right and
    // a wrong response, so every step trains the RM.
    let model = mathrl_recipes::assets::default_policy_dir();
    let task = ProceduralTask::new(mathrl_recipes::assets::embedded_task()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(16).collect();
    let data = tmp.path().join("qa.jsonl");
    write_question_answer_jsonl(&data, &problems).unwrap();
    // `--output DIR`, or `--resume DIR` to continue the run there.
    let rm = |place: &str, out: &Path| {
        let mut cmd = mathrl();
        cmd.args(["--recipe", "rm-retraining", "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg(place)
            .arg(out)
            .args([
                "--set",
                "samples_per_query=4",
                "--set",
                "max_new_tokens=160",
            ])
            .args(["--set", "temperature=1.0", "--set", "top_p=1.0"])
            .args(["--set", "eval_queries=2", "--set", "queries_per_step=2"])
            .args(["--set", "epochs=2", "--set", "checkpoint_every=1"])
            .args(["--set", "keep_checkpoints=0"]);
        cmd
    };
    let whole = tmp.path().join("whole");
    run_ok(&mut rm("--output", &whole));
    assert_hf_layout(&whole.join("rm"), "Qwen2ForRewardModel");
    let s = summary(&whole);
    assert_eq!(s["samples"], 64);
    // 14 training queries, 2 per step, 2 epochs.
    assert_eq!(s["steps"], 14, "{s}");
    let positives = s["positives"].as_u64().unwrap();
    assert!(
        positives > 0 && positives < 64,
        "some right and some wrong: {s}"
    );

    // Stopped after step 2, resumed by naming the run: the samples are read back, not drawn
    // again, and the RM ends where the uninterrupted run's did.
    let halves = tmp.path().join("halves");
    run_ok(rm("--output", &halves).args(["--max-steps", "2"]));
    assert_eq!(summary(&halves)["steps"], 2);
    let log = run_ok(&mut rm("--resume", &halves));
    assert!(
        log.contains("labelled samples read back") && log.contains("resumed"),
        "{log}"
    );
    assert_eq!(summary(&halves)["steps"], 14);
    let weights = |dir: &Path| std::fs::read(dir.join("rm/model.safetensors")).unwrap();
    assert!(
        weights(&whole) == weights(&halves),
        "the resumed RM differs"
    );
    let after_two = std::fs::read(halves.join("checkpoints/step-000002/model.safetensors"));
    assert!(
        after_two.unwrap() != weights(&whole),
        "steps 3 to 14 learned nothing"
    );
}

#[test]
fn tiny_bootstrap_produces_policy_and_reward_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run_ok(
        mathrl()
            .args(["--recipe", "tiny-bootstrap", "--output"])
            .arg(&out)
            .args([
                "--set",
                "tokenizer_problems=200",
                "--set",
                "sft_problems=32",
            ])
            .args([
                "--set",
                "model.hidden_size=32",
                "--set",
                "model.num_hidden_layers=1",
            ])
            .args([
                "--set",
                "model.num_attention_heads=2",
                "--set",
                "model.num_key_value_heads=1",
            ])
            .args([
                "--set",
                "model.intermediate_size=64",
                "--set",
                "sft.steps=2",
            ])
            .args(["--set", "sft.batch_size=4", "--set", "sft.eval_examples=4"])
            .args(["--set", "answer_only_sft.steps=3"])
            .args(["--set", "answer_only_sft.batch_size=4"])
            .args(["--set", "answer_only_sft.eval_examples=4"])
            .args(["--set", "rm_problems=6", "--set", "rm.samples_per_query=2"])
            .args(["--set", "rm.max_new_tokens=8", "--set", "rm.eval_queries=2"])
            .args(["--set", "eval_questions=4", "--set", "max_new_tokens=8"]),
    );
    assert_hf_layout(&out.join("assets/tiny-math-policy"), "Qwen2ForCausalLM");
    assert_hf_layout(&out.join("assets/tiny-math-rm"), "Qwen2ForRewardModel");
    let s = summary(&out);
    assert_eq!(s["policy"]["sft_steps"], 2);
    assert_eq!(s["policy"]["answer_only_sft_steps"], 3);
    // Each SFT stage kept its own checkpoints.
    assert!(out.join("checkpoints/step-000002").is_dir());
    assert!(out.join("answer-only-checkpoints/step-000003").is_dir());
    assert_eq!(s["policy"]["n"], 4);
    assert!(out.join("assets/bootstrap.json").is_file());
}

#[test]
fn tiny_bootstrap_resumes_only_in_its_own_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let header = mathrl_recipes::resume::config_header("tiny-bootstrap");
    std::fs::write(run.join("config.toml"), header).unwrap();
    let out = mathrl()
        .args(["--recipe", "tiny-bootstrap", "--resume"])
        .arg(&run)
        .arg("--output")
        .arg(tmp.path().join("elsewhere"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resumes in its own run directory") && stderr.contains("--output"),
        "{stderr}"
    );
    assert!(!tmp.path().join("elsewhere").exists(), "nothing is written");
    // A tool recipe refuses the flag.
    let out = mathrl()
        .args(["--recipe", "grade", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("grade does not resume"),
        "{stderr}"
    );
}
