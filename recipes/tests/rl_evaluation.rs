//! Evaluation during `qwen25-math-rl` through the binary, on a tiny random policy with the
//! procedural tokenizer: `--eval-data` and `--datasets` sets evaluated before the first step,
//! every `eval_every` steps and at the end, without changing what the run trains.

mod common;

use common::{event_scalars, tiny_procedural_policy};

use std::path::Path;
use std::process::Command;

use mathrl::data::jsonl::write_question_answer_jsonl;
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};

/// 2 prompts × 3 completions of at most 8 tokens per step, greedy answers of 8 tokens.
const SMALL: &[&str] = &[
    "trainer.prompts_per_step=2",
    "grpo.rollout.group_size=3",
    "grpo.rollout.max_new_tokens=8",
    "grpo.micro_batch_size=8",
    "eval_max_new_tokens=8",
];

/// Two steps of the recipe on `data`, into `out`.
fn rl(model: &Path, data: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mathrl"));
    cmd.args(["--recipe", "qwen25-math-rl", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(out)
        .args(["--max-steps", "2", "--seed", "3"]);
    for set in SMALL {
        cmd.args(["--set", set]);
    }
    cmd
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

/// A tiny policy, a random reward model over it (its varied scores make every step change the
/// weights) and `n` procedural problems as a QA file, in `dir`.
fn inputs(dir: &Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let model = dir.join("model");
    tiny_procedural_policy(&model, 2);
    let rm = dir.join("rm");
    let policy = mathrl::Policy::load(
        &model,
        &candle_core::Device::Cpu,
        Some(candle_core::DType::F32),
        mathrl::model::Trainable::No,
    )
    .unwrap();
    mathrl_rewards::RewardModel::from_policy(
        &policy,
        mathrl_rewards::RewardHeadKind::Qwen25MathRm,
        1,
        mathrl::model::Trainable::No,
    )
    .unwrap()
    .save(&rm)
    .unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model.join(f), rm.join(f)).unwrap();
    }
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(n).collect();
    let data = dir.join("qa.jsonl");
    write_question_answer_jsonl(&data, &problems).unwrap();
    (model, rm, data)
}

/// The bytes of the run's TensorBoard event files.
fn event_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("events.out.tfevents")
        {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn steps_of(scalars: &[(u64, f32)]) -> Vec<u64> {
    scalars.iter().map(|s| s.0).collect()
}

#[test]
fn eval_data_is_evaluated_every_step_without_changing_the_trained_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, rm, data) = inputs(tmp.path(), 6);
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let held: Vec<_> = task.problems(Split::HeldOut).take(3).collect();
    let eval_file = tmp.path().join("heldout-qa.jsonl");
    write_question_answer_jsonl(&eval_file, &held).unwrap();

    let plain = tmp.path().join("plain");
    run_ok(rl(&model, &data, &plain).arg("--rm").arg(&rm));
    let evaluated = tmp.path().join("evaluated");
    let log = run_ok(
        rl(&model, &data, &evaluated)
            .arg("--rm")
            .arg(&rm)
            .arg("--eval-data")
            .arg(&eval_file)
            .args(["--set", "eval_every=1"]),
    );
    assert!(log.contains("evaluation sets: heldout-qa (n=3)"), "{log}");

    // Before the first step, after each step; the last one is not repeated at the end.
    let accuracy = event_scalars(&evaluated, "eval/heldout-qa/accuracy");
    assert_eq!(steps_of(&accuracy), vec![0, 1, 2], "{accuracy:?}");
    assert!(accuracy.iter().all(|&(_, a)| (0.0..=1.0).contains(&a)));
    let s = summary(&evaluated);
    let set = &s["eval"]["sets"]["heldout-qa"];
    assert_eq!(set["n"], 3, "{s}");
    let by_step: Vec<u64> = set["by_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(by_step, vec![0, 1, 2], "{s}");
    let last = set["by_step"][2]["accuracy"].as_f64().unwrap();
    assert_eq!(set["accuracy"].as_f64(), Some(last), "{s}");
    assert_eq!(
        s["eval"]["failures"].as_array().map(Vec::len),
        Some(0),
        "{s}"
    );
    // The run without evaluation logged none.
    assert!(event_scalars(&plain, "eval/heldout-qa/accuracy").is_empty());
    // The event file also holds the settings for the HParams tab and the per-step reward and
    // advantage histograms (their encoding is read back by TensorBoard in
    // tests/tensorboard_readback.rs).
    let events = event_bytes(&evaluated);
    for needle in [
        "_hparams_/session_start_info",
        "grpo.loss.beta",
        "train/rewards",
        "train/advantages",
    ] {
        assert!(
            contains(&events, needle.as_bytes()),
            "no {needle} in the event file"
        );
    }

    // Evaluating read the published weights only: the trained weights are the same bits.
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    let trained = weights(&evaluated.join("final"));
    assert!(
        trained == weights(&plain.join("final")),
        "evaluation changed the trained weights"
    );
    assert!(trained != weights(&model), "the run learned nothing");
}

#[test]
fn shipped_evaluation_sets_are_evaluated_before_and_after() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, data) = inputs(tmp.path(), 3);
    let out = tmp.path().join("run");
    run_ok(
        rl(&model, &data, &out)
            .args(["--datasets", "gsm8k", "--limit", "2"])
            .args(["--set", "grpo.rollout.max_new_tokens=4"]),
    );
    // eval_every = 0: before the first step and at the end only.
    let accuracy = event_scalars(&out, "eval/gsm8k/accuracy");
    assert_eq!(steps_of(&accuracy), vec![0, 2], "{accuracy:?}");
    let s = summary(&out);
    assert_eq!(s["eval"]["sets"]["gsm8k"]["n"], 2, "{s}");
    assert_eq!(
        s["eval"]["failures"].as_array().map(Vec::len),
        Some(0),
        "{s}"
    );
}

#[test]
fn eval_every_without_an_evaluation_set_is_refused_before_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, data) = inputs(tmp.path(), 3);
    let out = tmp.path().join("run");
    let result = rl(&model, &data, &out)
        .args(["--set", "eval_every=5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{stderr}");
    assert!(
        stderr.contains("--eval-data FILE or --datasets"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");

    // An unknown evaluation set is refused the same way, naming the nearest one.
    let result = rl(&model, &data, &out)
        .args(["--datasets", "gsm8"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success() && stderr.contains("did you mean `gsm8k`"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");
}
