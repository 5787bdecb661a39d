//! The `qwen25-math-rl` recipe end to end through the binary, on a tiny random policy with the
//! procedural tokenizer: 2 GRPO steps on the actor runtime, then its outputs.

mod common;

use common::{event_file_count, event_scalars, tiny_procedural_policy};

use std::path::Path;
use std::process::Command;

use mathrl::data::jsonl::write_question_answer_jsonl;
use mathrl::data::procedural::{ProceduralTask, Split, TaskConfig};

fn mathrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
}

/// Settings small enough for a test: 2 prompts × 3 completions of at most 8 tokens per step.
const SMALL: &[&str] = &[
    "trainer.prompts_per_step=2",
    "grpo.rollout.group_size=3",
    "grpo.rollout.max_new_tokens=8",
    "trainer.sample_text_every=1",
    "grpo.micro_batch_size=8",
    "eval_questions=3",
    "eval_max_new_tokens=8",
];

fn rl(model: &Path, out: &Path) -> Command {
    rl_steps(model, out, 2)
}

fn rl_steps(model: &Path, out: &Path, steps: u64) -> Command {
    rl_into("--output", model, out, steps)
}

/// The small run of `steps` steps with `place` (`--output` or `--resume`) `dir`.
fn rl_into(place: &str, model: &Path, dir: &Path, steps: u64) -> Command {
    let mut cmd = mathrl();
    cmd.args(["--recipe", "qwen25-math-rl", "--model"])
        .arg(model)
        .arg(place)
        .arg(dir)
        .args(["--max-steps", &steps.to_string()]);
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

fn assert_hf_layout(dir: &Path) {
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.join(file).is_file(), "{} lacks {file}", dir.display());
    }
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains("Qwen2ForCausalLM"), "{config}");
}

/// Text records of `tag` in the run's `metrics.jsonl`.
fn texts(dir: &Path, tag: &str) -> Vec<(u64, String)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["tag"] == tag)
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                v["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn two_grpo_steps_on_the_procedural_task_write_summary_checkpoint_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let out = tmp.path().join("run");
    let log = run_ok(&mut rl(&model, &out));
    // The memory plan came first, and fit.
    assert!(log.contains("Memory plan: float32 weights"), "{log}");
    assert!(
        log.contains("| **total** | cpu |") && log.contains("fits in"),
        "{log}"
    );
    // A line per step (stderr is not a terminal here), the last one always.
    let last = log
        .lines()
        .find(|l| l.starts_with("grpo step 2/2 | reward "))
        .unwrap_or_else(|| panic!("no line for step 2: {log}"));
    for field in ["| acc ", "| len ", "| tok/s ", "| step "] {
        assert!(last.contains(field), "{last}");
    }

    let s = summary(&out);
    assert_eq!(s["steps"], 2, "{s}");
    assert!(s["seconds"].as_f64().unwrap() > 0.0, "{s}");
    // Greedy held-out accuracy before and after, on the 3 held-out questions.
    for key in ["before", "after"] {
        assert_eq!(s[key]["n"], 3, "{s}");
        let accuracy = s[key]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{s}");
    }
    // 2 steps × 2 prompts, split over the two rollout actors.
    let groups: u64 = s["groups_by_worker"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(groups, 4, "{s}");
    assert_eq!(s["failures"], 0);
    assert_eq!(s["reward"], "checker");
    assert_eq!(s["unscored"], 0);
    assert_eq!(s["time_limit_reached"], false);
    let busy = s["rollout_busy_fraction"].as_f64().unwrap();
    assert!(busy > 0.0 && busy <= 1.0, "{s}");

    assert_hf_layout(&out.join("checkpoints/step-000002"));
    assert_hf_layout(&out.join("final"));
    let events = event_file_count(&out);
    assert_eq!(events, 1);
    // The loss's importance ratio ρ, read back from the event file: one value per step, near 1
    // on this on-policy run (the behaviour log-probs are the learner's up to numerical drift).
    let ratio_mean = event_scalars(&out, "train/ratio_mean");
    let ratio_max = event_scalars(&out, "train/ratio_max");
    assert_eq!(
        ratio_mean.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        ratio_max.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    for ((_, mean), (_, max)) in ratio_mean.iter().zip(&ratio_max) {
        assert!(
            (mean - 1.0).abs() < 0.05 && max >= mean,
            "{ratio_mean:?} {ratio_max:?}"
        );
    }
    // Sampled completions with their rewards, every step.
    let samples = texts(&out, "samples/completions");
    assert_eq!(samples.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!(samples
        .iter()
        .all(|(_, t)| t.matches("(reward").count() == 2));
}

/// `trainer.engine.bf16_weights` reaches the rollout actors: the sampler's log-probs are then
/// those of the bf16-rounded weights, which the learner's drift metric shows (far above the f32
/// sampler's float rounding), and the behaviour ratio stays near 1.
#[test]
fn bf16_rollout_weights_show_as_log_prob_drift_that_the_behaviour_ratio_absorbs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let run = |bf16: bool| {
        let out = tmp.path().join(format!("run-bf16-{bf16}"));
        run_ok(rl(&model, &out).args([
            "--set",
            &format!("trainer.engine.bf16_weights={bf16}"),
            "--set",
            "grpo.old_logprobs=\"behaviour\"",
        ]));
        let values =
            |tag: &str| -> Vec<f32> { event_scalars(&out, tag).iter().map(|s| s.1).collect() };
        (
            values("train/logprob_drift_max"),
            values("train/ratio_mean"),
        )
    };
    let (f32_drift, _) = run(false);
    let (bf16_drift, bf16_ratio) = run(true);
    assert_eq!((f32_drift.len(), bf16_drift.len()), (2, 2));
    for (f32_step, bf16_step) in f32_drift.iter().zip(&bf16_drift) {
        assert!(
            *bf16_step > 10.0 * f32_step && *bf16_step < 0.5,
            "drift: f32 sampler {f32_drift:?}, bf16 sampler {bf16_drift:?}"
        );
    }
    assert!(
        bf16_ratio.iter().all(|r| (r - 1.0).abs() < 0.05),
        "{bf16_ratio:?}"
    );
}

/// The rows of the memory plan table printed on stderr: (component, device, bytes).
fn plan_rows(stderr: &str) -> Vec<(String, String, u64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let bytes = cells.get(3)?.replace(',', "").parse().ok()?;
            Some((cells[1].to_string(), cells[2].to_string(), bytes))
        })
        .collect()
}

#[test]
fn a_plan_that_does_not_fit_is_refused_before_the_weights_load() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let out = tmp.path().join("run");
    let run = rl(&model, &out)
        .args(["--rollout-device", "cpu", "--rm-device", "cpu"])
        .env("MATHRL_MEMORY_AVAILABLE_BYTES", "1000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    // The plan was printed, every item on the CPU.
    let rows = plan_rows(&stderr);
    let (biggest, _, biggest_bytes) = rows
        .iter()
        .filter(|(name, _, _)| name != "**total**")
        .max_by_key(|row| row.2)
        .expect("the plan table is printed")
        .clone();
    assert!(
        rows.iter().all(|(_, device, _)| device == "cpu"),
        "{stderr}"
    );
    assert!(
        rows.iter().any(|(name, _, _)| name == "rollout KV cache"),
        "{stderr}"
    );
    let total = rows.iter().find(|r| r.0 == "**total**").unwrap().2;
    assert!(total > biggest_bytes, "{stderr}");
    // The refusal names the device, the biggest item and the shortfall.
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("does not fit on cpu"), "{stderr}");
    assert!(
        stderr.contains(&format!("the biggest item there is {biggest} (")),
        "{biggest}: {stderr}"
    );
    assert!(
        stderr.contains("1000 B is free") && stderr.contains("short"),
        "{stderr}"
    );
    // Refused before training: no held-out evaluation, no checkpoint.
    assert!(!stderr.contains("greedy held-out accuracy"), "{stderr}");
    assert!(!out.join("checkpoints").exists());

    // `memory_plan.check = false` starts anyway (here: only up to the config print).
    let printed = rl(&model, &out)
        .args(["--set", "memory_plan.check=false", "--print-config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(
        text.contains("[memory_plan]") && text.contains("check = false"),
        "{text}"
    );
}

#[test]
fn a_second_run_with_the_same_output_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let out = tmp.path().join("run");
    run_ok(&mut rl(&model, &out));
    let log = run_ok(&mut rl_steps(&model, &out, 3));
    assert!(log.contains("resumed"), "{log}");
    let s = summary(&out);
    assert_eq!(s["steps"], 3, "{s}");
    // This run trained one step: one group per prompt of step 3.
    let groups: u64 = s["groups_by_worker"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(groups, 2, "{s}");
    assert_hf_layout(&out.join("checkpoints/step-000003"));
}

/// A random reward model over `model`'s backbone, with its tokenizer, saved in `dir`: its
/// varied scores give non-zero advantages, so every step changes the weights.
fn random_reward_model(model: &Path, dir: &Path) {
    let policy = mathrl::Policy::load(
        model,
        &candle_core::Device::Cpu,
        Some(candle_core::DType::F32),
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
    rm.save(dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model.join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn a_run_resumed_with_resume_equals_an_uninterrupted_one_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let rm = tmp.path().join("rm");
    random_reward_model(&model, &rm);
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(6).collect();
    let data = tmp.path().join("qa.jsonl");
    write_question_answer_jsonl(&data, &problems).unwrap();
    let with_inputs = |cmd: &mut Command| {
        cmd.arg("--rm").arg(&rm).arg("--data").arg(&data);
    };
    let (whole, halves) = (tmp.path().join("whole"), tmp.path().join("halves"));
    let mut cmd = rl_steps(&model, &whole, 4);
    with_inputs(&mut cmd);
    run_ok(&mut cmd);
    let mut cmd = rl_steps(&model, &halves, 2);
    with_inputs(&mut cmd);
    run_ok(&mut cmd);
    // Resumed by naming the run directory only: the run continues there.
    let mut cmd = rl_into("--resume", &model, &halves, 4);
    with_inputs(&mut cmd);
    let log = run_ok(&mut cmd);
    assert!(log.contains("resumed from"), "{log}");
    assert_eq!(summary(&halves)["steps"], 4);
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    let trained = weights(&whole.join("final"));
    assert!(
        trained == weights(&halves.join("final")),
        "the resumed run differs"
    );
    let after_two = weights(&halves.join("checkpoints/step-000002"));
    assert!(trained != after_two, "steps 3 and 4 learned nothing");
}

/// `problems` as GSM8K lines (the worked solution ending in `#### N`) and as TRL lines (a
/// messages prompt and a `\boxed{}` solution).
fn gsm8k_and_trl_lines(problems: &[mathrl::data::procedural::Problem]) -> (String, String) {
    let (mut gsm8k, mut trl) = (String::new(), String::new());
    for p in problems {
        let worked = format!("{} so that is it.\n#### {}", p.question, p.answer);
        gsm8k
            .push_str(&serde_json::json!({ "question": p.question, "answer": worked }).to_string());
        gsm8k.push('\n');
        let solution = format!("Working it out gives $\\boxed{{{}}}$.", p.answer);
        let prompt = serde_json::json!([{ "role": "user", "content": p.question }]);
        trl.push_str(&serde_json::json!({ "prompt": prompt, "solution": solution }).to_string());
        trl.push('\n');
    }
    (gsm8k, trl)
}

#[test]
fn gsm8k_and_trl_lines_train_with_rewards() {
    // The shipped policy answers some procedural questions right, so a gold read correctly
    // gives non-zero rewards (a whole worked solution taken as the gold never would).
    let tmp = tempfile::tempdir().unwrap();
    let model = mathrl_recipes::assets::default_policy_dir();
    let task = ProceduralTask::new(mathrl_recipes::assets::embedded_task()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(8).collect();
    let (gsm8k, trl) = gsm8k_and_trl_lines(&problems);
    for (name, lines) in [("gsm8k", gsm8k), ("trl", trl)] {
        let data = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&data, format!("{lines}{{\"prompt\": \"no gold\"}}\n")).unwrap();
        let out = tmp.path().join(name);
        let log = run_ok(
            mathrl()
                .args(["--recipe", "qwen25-math-rl", "--model"])
                .arg(&model)
                .arg("--data")
                .arg(&data)
                .arg("--output")
                .arg(&out)
                .args(["--max-steps", "2", "--set", "trainer.prompts_per_step=4"])
                .args(["--set", "grpo.rollout.group_size=8"])
                .args(["--set", "grpo.rollout.max_new_tokens=160"]),
        );
        assert!(
            log.contains("read 9 lines: 8 prompts, 1 skipped (line 9: no gold answer), 0 golds"),
            "{log}"
        );
        let rewards = event_scalars(&out, "train/reward_mean");
        assert_eq!(rewards.len(), 2, "{name}");
        assert!(rewards.iter().any(|&(_, r)| r > 0.0), "{name}: {rewards:?}");
    }

    // Worked solutions without a marked final answer: refused before training.
    let data = tmp.path().join("prose.jsonl");
    let prose: String = problems
        .iter()
        .map(|p| {
            let answer = format!(
                "{} and after thinking hard the total comes to {}",
                p.question, p.answer
            );
            serde_json::json!({ "question": p.question, "answer": answer }).to_string() + "\n"
        })
        .collect();
    std::fs::write(&data, prose).unwrap();
    let out = mathrl()
        .args(["--recipe", "qwen25-math-rl", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(tmp.path().join("refused"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("8 golds without a final answer"),
        "{stderr}"
    );
    assert!(!tmp.path().join("refused").exists(), "nothing is written");
}

#[test]
fn a_data_file_gives_the_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 2);
    let task = ProceduralTask::new(TaskConfig::default()).unwrap();
    let problems: Vec<_> = task.problems(Split::Train).take(3).collect();
    let data = tmp.path().join("qa.jsonl");
    write_question_answer_jsonl(&data, &problems).unwrap();
    let out = tmp.path().join("run");
    run_ok(rl(&model, &out).arg("--data").arg(&data));
    let s = summary(&out);
    assert_eq!(s["steps"], 2, "{s}");
    // No held-out split of a data file: nothing to compare.
    assert!(s["before"].is_null() && s["after"].is_null(), "{s}");
    // Every sampled question came from the file.
    for (_, text) in texts(&out, "samples/completions") {
        assert!(
            problems
                .iter()
                .any(|p| text.contains(p.question.lines().next().unwrap())),
            "{text}"
        );
    }
}

#[test]
fn verl_parquet_data_trains_a_step() {
    // verl's layout as pyarrow writes it: 4 rows, one without a gold answer.
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/verl-parquet/train.parquet");
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    tiny_procedural_policy(&model, 1);
    let out = tmp.path().join("run");
    let stderr = run_ok(rl_steps(&model, &out, 1).arg("--data").arg(&data));
    assert!(
        stderr.contains("train.parquet: read 4 rows: 3 prompts, 1 skipped (row 4: no gold answer)"),
        "{stderr}"
    );
    assert_eq!(summary(&out)["steps"], 1);
}

#[test]
fn without_the_shipped_assets_the_error_names_the_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mathrl()
        .args(["--recipe", "qwen25-math-rl", "--output"])
        .arg(tmp.path().join("run"))
        .env("MATHRL_ASSETS", tmp.path().join("no-assets"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let missing = tmp.path().join("no-assets/tiny-math-policy");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains("tiny-bootstrap"), "{stderr}");
    // Nothing was started: no output directory.
    assert!(!tmp.path().join("run").exists());
}

#[test]
fn the_embedded_default_runs_with_bootstrapped_assets_and_the_reward_model() {
    // Tiny stand-ins for the shipped assets, made by the recipe that makes the real ones.
    let tmp = tempfile::tempdir().unwrap();
    let boot = tmp.path().join("boot");
    let mut cmd = mathrl();
    cmd.args(["--recipe", "tiny-bootstrap", "--output"])
        .arg(&boot);
    for set in [
        "tokenizer_problems=200",
        "sft_problems=32",
        "model.hidden_size=32",
        "model.num_hidden_layers=1",
        "model.num_attention_heads=2",
        "model.num_key_value_heads=1",
        "model.intermediate_size=64",
        "sft.steps=2",
        "sft.batch_size=4",
        "sft.eval_examples=4",
        "rm_problems=6",
        "rm.samples_per_query=2",
        "rm.max_new_tokens=8",
        "rm.eval_queries=2",
        "eval_questions=4",
        "max_new_tokens=8",
    ] {
        cmd.args(["--set", set]);
    }
    run_ok(&mut cmd);

    // No --model, no --data: the embedded default, with the RM in the shaped reward.
    let out = tmp.path().join("run");
    let mut cmd = mathrl();
    cmd.args(["--recipe", "qwen25-math-rl", "--output"])
        .arg(&out)
        .args(["--max-steps", "2"])
        .env("MATHRL_ASSETS", boot.join("assets"));
    for set in SMALL {
        cmd.args(["--set", set]);
    }
    run_ok(&mut cmd);
    let s = summary(&out);
    assert_eq!(s["steps"], 2, "{s}");
    assert_eq!(s["before"]["n"], 3, "{s}");
    assert_hf_layout(&out.join("final"));
    assert_eq!(s["reward"], "shaped", "{s}");
    // The shaped reward σ(α·r_m) + (r_v − 1) lies in (−1, 1); the checker-only reward is 0 or 1,
    // so its mean over a step's 6 completions would be a multiple of 1/6.
    let rewards: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["tag"] == "train/reward_mean")
        .map(|v| v["value"].as_f64().unwrap())
        .collect();
    assert_eq!(rewards.len(), 2);
    for r in rewards {
        assert!(r > -1.0 && r < 1.0, "{r}");
        assert!((6.0 * r - (6.0 * r).round()).abs() > 1e-6, "{r}");
    }
}

#[test]
fn the_readme_command_runs_every_stage_on_the_shipped_assets() {
    // `cargo run --release -- --recipe qwen25-math-rl`, bounded: the shipped policy and RM, the
    // procedural task, 2 steps, a few held-out questions. The gain is the benchmark's job.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut cmd = mathrl();
    cmd.args(["--recipe", "qwen25-math-rl", "--output"])
        .arg(&out)
        .args(["--max-steps", "2", "--seed", "1"])
        .env_remove("MATHRL_ASSETS");
    for set in [
        "trainer.prompts_per_step=2",
        "grpo.rollout.group_size=4",
        "grpo.rollout.max_new_tokens=48",
        "trainer.sample_text_every=1",
        "eval_questions=4",
        "eval_max_new_tokens=48",
    ] {
        cmd.args(["--set", set]);
    }
    let stderr = run_ok(&mut cmd);
    let s = summary(&out);
    assert_eq!(s["steps"], 2, "{s}");
    assert_eq!(s["reward"], "shaped", "{s}");
    for stage in ["before", "after"] {
        assert_eq!(s[stage]["n"], 4, "{s}");
        let a = s[stage]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{s}");
    }
    assert_hf_layout(&out.join("final"));
    assert!(
        out.join("checkpoints").is_dir(),
        "no checkpoints under {}",
        out.display()
    );
    assert_eq!(
        texts(&out, "samples/completions").len(),
        2,
        "one sample text per step"
    );
    let events = event_file_count(&out);
    assert_eq!(events, 1, "one TensorBoard event file");
    // The closing summary (stderr) names the accuracy change.
    assert!(stderr.contains("(greedy, held-out n=4)"), "{stderr}");
}
