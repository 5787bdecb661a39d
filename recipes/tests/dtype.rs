//! `--dtype` and `save_dtype` on the training recipes: bf16 runs train on the CPU, keep f32
//! masters in their checkpoints, save in the loaded files' dtype unless `save_dtype` says
//! otherwise, and a bad dtype is refused with the accepted names.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use common::tiny_procedural_policy;
use mathrl::data::jsonl::{write_messages_jsonl, write_question_answer_jsonl};
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "failed: {stderr}");
    stderr
}

fn tensors(file: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(file, &Device::Cpu).unwrap()
}

fn config_dtype(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["torch_dtype"].as_str().unwrap().to_string()
}

/// A 3-step SFT run of the tiny policy with `args`; returns the run directory.
fn sft(model: &Path, data: &Path, out: &Path, args: &[&str]) {
    run_ok(
        mathrl()
            .args(["--recipe", "sft", "--model"])
            .arg(model)
            .arg("--data")
            .arg(data)
            .arg("--output")
            .arg(out)
            .args(["--set", "steps=3", "--set", "batch_size=4"])
            .args(["--set", "eval_examples=0", "--set", "checkpoint_every=3"])
            .args(["--set", "learner.train_step.schedule.peak_lr=1e-3"])
            .args(args),
    );
}

#[test]
fn sft_in_bf16_keeps_f32_masters_and_saves_in_the_chosen_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    assert_eq!(config_dtype(&model), "float32");
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(12).collect();
    let data = tmp.path().join("train.jsonl");
    write_messages_jsonl(&data, &problems).unwrap();

    let f32_run = tmp.path().join("f32");
    sft(&model, &data, &f32_run, &[]);
    let bf16_run = tmp.path().join("bf16");
    sft(&model, &data, &bf16_run, &["--dtype", "bf16"]);
    let bf16_saved = tmp.path().join("bf16-saved-bf16");
    sft(
        &model,
        &data,
        &bf16_saved,
        &["--set", "dtype=bf16", "--set", "save_dtype=bf16"],
    );

    // Saved in the loaded files' dtype (f32) by default, from the f32 masters: a bf16 run's
    // final weights are not all bf16-representable, and they differ from the f32 run's.
    let final_f32 = tensors(&f32_run.join("final/model.safetensors"));
    let final_bf16 = tensors(&bf16_run.join("final/model.safetensors"));
    assert_eq!(config_dtype(&bf16_run.join("final")), "float32");
    let name = "model.layers.0.mlp.down_proj.weight";
    let w = &final_bf16[name];
    assert_eq!(w.dtype(), DType::F32);
    let rounded = w
        .to_dtype(DType::BF16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let off_grid = (w - &rounded).unwrap().abs().unwrap().max_all().unwrap();
    assert!(
        off_grid.to_scalar::<f32>().unwrap() > 0.0,
        "the f32 save of a bf16 run holds the masters, not the bf16 weights"
    );
    let diff = (w - &final_f32[name]).unwrap().abs().unwrap();
    let max = diff.max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(max > 0.0, "the bf16 run computed in bf16");
    // Adam moves a weight by at most lr per step: 3 steps at 1e-3 bound the runs' distance.
    assert!(max <= 6e-3 + 1e-5, "bf16 and f32 runs stay close: {max}");

    // The checkpoint holds every master in f32.
    let optimizer = tensors(&bf16_run.join("checkpoints/step-000003/optimizer.safetensors"));
    let master = &optimizer[&format!("master.{name}")];
    assert_eq!(master.dtype(), DType::F32);
    assert_eq!(
        master.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        "final/ is the masters"
    );

    // save_dtype=bf16 writes bf16 files and says so in config.json.
    assert_eq!(config_dtype(&bf16_saved.join("final")), "bfloat16");
    let saved = tensors(&bf16_saved.join("final/model.safetensors"));
    assert_eq!(saved[name].dtype(), DType::BF16);
    assert_eq!(
        saved[name]
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        rounded.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        "the same run, saved in bf16"
    );
}

#[test]
fn grpo_runs_in_bf16_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(8).collect();
    let data = tmp.path().join("qa.jsonl");
    write_question_answer_jsonl(&data, &problems).unwrap();
    let out = tmp.path().join("run");
    let mut cmd = mathrl();
    cmd.args(["--recipe", "qwen25-math-rl", "--dtype", "bf16", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&out)
        .args(["--max-steps", "2"]);
    for set in [
        "trainer.prompts_per_step=2",
        "grpo.rollout.group_size=3",
        "grpo.rollout.max_new_tokens=8",
        "grpo.micro_batch_size=8",
        "trainer.checkpoint_every=2",
        "save_dtype=bf16",
    ] {
        cmd.args(["--set", set]);
    }
    run_ok(&mut cmd);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 2, "{summary}");
    assert_eq!(config_dtype(&out.join("final")), "bfloat16");
    let checkpoint = out.join("checkpoints/step-000002");
    let optimizer = tensors(&checkpoint.join("optimizer.safetensors"));
    let masters: Vec<&Tensor> = optimizer
        .iter()
        .filter(|(n, _)| n.starts_with("master."))
        .map(|(_, t)| t)
        .collect();
    assert!(!masters.is_empty());
    assert!(masters.iter().all(|t| t.dtype() == DType::F32));
}

#[test]
fn an_unknown_dtype_names_the_accepted_ones() {
    let out = run(mathrl().args(["--recipe", "sft", "--dtype", "bf32", "--print-config"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bf32") && err.contains("bf16") && err.contains("f32"),
        "{err}"
    );

    let out = run(mathrl().args(["--recipe", "sft", "--set", "dtype=bf32", "--print-config"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dtype") && err.contains("`bf16`"), "{err}");

    let help = run(mathrl().arg("--help"));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--dtype"));
    let config = run(mathrl().args(["--recipe", "qwen25-math-rl", "--print-config"]));
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(
        text.contains("dtype = \"auto\"") && text.contains("save_dtype = \"auto\""),
        "{text}"
    );
}
