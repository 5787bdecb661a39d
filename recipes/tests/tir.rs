//! Tool-integrated reasoning end to end: a scripted model writes a python block, the engine
//! pauses, the program runs in the real sandbox through `SandboxExecutor`, and the output block
//! is appended before generation resumes; then the eval runner in TIR mode over the same model,
//! and `qwen25-math-rl --set tir=true` training on such rollouts.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use mathrl::data::QaRecord;
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::types::FinishReason;
use mathrl::{Policy, Tokenizer};
use mathrl_recipes::eval::{evaluate, EvalMode, PromptFormat, Selection};
use mathrl_rewards::{Verdict, Verifier};
use mathrl_sandbox::{PythonSandbox, SandboxConfig, SandboxExecutor};

use common::{bigram_policy, id, save_python_script, script_tokenizer, SCRIPT_TOKENS};

/// A chat template rendering only the last message: a question "Q" is the whole prompt.
const LAST_MESSAGE: &str = "{{ messages[-1]['content'] }}";

/// The script: "Q" -> python block with `program` -> "```output"; after the tool's "\n```\n"
/// -> "\boxed{5}" -> `<eos>`.
fn script(tok: &Tokenizer, program: &str) -> Policy {
    let [py, _, _, close, trigger, out_close, boxed] = SCRIPT_TOKENS.map(|t| id(tok, t));
    let program = id(tok, program);
    bigram_policy(&[
        (id(tok, "Q"), py),
        (py, program),
        (program, close),
        (close, trigger),
        (out_close, boxed),
        (boxed, 0),
    ])
}

fn executor(timeout_ms: u64) -> Arc<SandboxExecutor> {
    let sandbox = PythonSandbox::new(SandboxConfig {
        timeout_ms,
        ..Default::default()
    })
    .unwrap();
    Arc::new(SandboxExecutor::new(Arc::new(sandbox)))
}

#[test]
fn a_python_block_gets_its_output_block_from_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let tok = script_tokenizer(dir.path(), LAST_MESSAGE);
    let params = SamplingParams {
        max_new_tokens: 64,
        ..Default::default()
    };
    for (program, output) in [
        ("print(2+3)\n", "5"),
        ("print(1/0)\n", "ZeroDivisionError: division by zero"),
    ] {
        let mut engine = Engine::from_policy(&script(&tok, program), EngineConfig::default())
            .with_tokenizer(tok.clone())
            .with_tool(executor(5000));
        let out = engine
            .generate(&[tok.encode("Q").unwrap()], &params)
            .unwrap();
        assert_eq!(out.stats.tool_calls, 1);
        let c = &out.groups[0].completions[0];
        assert_eq!(
            c.text.as_deref().unwrap(),
            format!("```python\n{program}```\n```output\n{output}\n```\n\\boxed{{5}}")
        );
        assert_eq!(
            (c.finish_reason, c.tool_calls),
            (FinishReason::StopToken, 1)
        );
        // A program that raised counts as a tool error; either way its time is measured.
        let failed = output.contains("Error");
        assert_eq!(c.tool_errors, usize::from(failed), "{output}");
        assert!(c.tool_ms > 0.0);
        // The output block's tokens are marked as tool tokens, without a log-prob.
        let tool_tokens = tok.encode(&format!("\n{output}\n```\n")).unwrap();
        assert_eq!(
            c.tool_mask.iter().filter(|&&t| t).count(),
            tool_tokens.len()
        );
        assert_eq!(
            &c.token_ids[4..4 + tool_tokens.len()],
            tool_tokens.as_slice()
        );
        assert!(c
            .logprobs
            .iter()
            .zip(&c.tool_mask)
            .all(|(lp, &tool)| lp.is_none() == tool));
    }
}

/// Stand-in answer check for this test only: the last `\boxed{...}` equals the gold.
struct LastBoxedEquals;

impl Verifier for LastBoxedEquals {
    fn verify(&self, response: &str, gold: &str, _dataset: Option<&str>) -> Verdict {
        match mathrl_recipes::eval::datasets::last_boxed(response) {
            Some(answer) if answer == gold => Verdict::correct(answer.to_string()),
            Some(answer) => Verdict::incorrect(answer.to_string()),
            None => Verdict::unparseable(None, "no boxed answer"),
        }
    }
}

#[test]
fn the_eval_runner_in_tir_mode_runs_the_programs_and_checks_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let tok = script_tokenizer(dir.path(), LAST_MESSAGE);
    let policy = script(&tok, "print(2+3)\n");
    let item = |line: usize, gold: &str| QaRecord {
        dataset: Some("gsm8k".into()),
        line,
        ..QaRecord::new("Q", gold)
    };
    let items = [item(1, "5"), item(2, "6"), item(3, "5")];
    let mut mode = EvalMode::greedy_cot(64);
    mode.format = PromptFormat::Tir;
    mode.tool = Some(executor(5000));
    let result = evaluate(&policy, &tok, &items, &mode, &LastBoxedEquals, None).unwrap();
    assert_eq!(
        (result.mode.as_str(), result.n, result.correct),
        ("tir", 3, 2)
    );
    assert!((result.accuracy - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(result.per_dataset.len(), 1);
    let correct: Vec<bool> = result.records.iter().map(|r| r.correct).collect();
    assert_eq!(correct, [true, false, true]);
    assert!(result.records[0].response.contains("```output\n5\n```"));
    assert_eq!(result.records[1].extracted.as_deref(), Some("5"));

    // Maj@3 over identical samples picks the same answer; TIR without a tool is an error.
    mode.selection = Selection::Majority(3);
    let maj = evaluate(&policy, &tok, &items, &mode, &LastBoxedEquals, None).unwrap();
    assert_eq!((maj.mode.as_str(), maj.correct), ("tir-maj@3", 2));
    assert_eq!(maj.records[0].correct_samples, 3);
    mode.tool = None;
    let err = evaluate(&policy, &tok, &items, &mode, &LastBoxedEquals, None).unwrap_err();
    assert!(err.to_string().contains("tool executor"), "{err}");
}

/// Every message's content in order: the TIR system prompt, then the question "Q" (the scripted
/// policy reads only the last token).
const ALL_MESSAGES: &str = "{% for m in messages %}{{ m['content'] }}{% endfor %}";

/// The values of the scalar `tag` in a run's `metrics.jsonl`, by step.
fn scalars(run: &Path, tag: &str) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["tag"] == tag)
        .map(|v| (v["step"].as_u64().unwrap(), v["value"].as_f64().unwrap()))
        .collect()
}

/// A temporary directory holding the python-writing script model, a `qa.jsonl` of the question
/// "Q" with each of `golds`, and the path of a run directory.
struct ScriptedRun {
    _tmp: tempfile::TempDir,
    model: std::path::PathBuf,
    data: std::path::PathBuf,
    run: std::path::PathBuf,
}

fn scripted_run(golds: &[&str]) -> ScriptedRun {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    save_python_script(&model, ALL_MESSAGES);
    let data = tmp.path().join("qa.jsonl");
    let lines: String = golds
        .iter()
        .map(|gold| format!("{{\"question\": \"Q\", \"answer\": \"{gold}\"}}\n"))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let run = tmp.path().join("run");
    ScriptedRun {
        _tmp: tmp,
        model,
        data,
        run,
    }
}

/// One TIR step of `qwen25-math-rl` on the scripted model: 2 prompts × 2 completions, sampled at a
/// temperature low enough to keep the script exact.
fn rl_tir_command(model: &Path, data: &Path, run: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mathrl"));
    command
        .args(["--recipe", "qwen25-math-rl", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(run)
        .args(["--max-steps", "1", "--set", "tir=true"])
        // Where the sandbox lacks an isolation layer (not root), run with a warning.
        .args(["--set", "tool.allow_weaker_isolation=true"])
        .args([
            "--set",
            "trainer.prompts_per_step=2",
            "--set",
            "grpo.rollout.group_size=2",
        ])
        // A low temperature keeps the sampled script exact (margin 10 / 0.1).
        .args(["--set", "grpo.rollout.temperature=0.1"])
        .args([
            "--set",
            "grpo.rollout.max_new_tokens=24",
            "--set",
            "grpo.mini_batch_size=0",
        ])
        .args([
            "--set",
            "grpo.gradient_checkpointing=false",
            "--set",
            "grpo.loss.beta=0",
        ])
        .args([
            "--set",
            "trainer.rollout_actors=1",
            "--set",
            "trainer.reward_actors=1",
        ])
        .args([
            "--set",
            "eval_questions=0",
            "--set",
            "trainer.sample_text_every=1",
        ]);
    command
}

#[test]
fn rl_with_tir_runs_the_programs_in_the_sandbox_and_trains_only_the_sampled_tokens() {
    let ScriptedRun {
        model, data, run, ..
    } = &scripted_run(&["5", "6"]);
    let out = rl_tir_command(model, data, run).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // Each of the 4 completions: "```python\n" "print(2+3)\n" "```\n" "```output" sampled, the
    // sandbox's "\n5\n```\n" appended (3 tool tokens), then "\boxed{5}" and <eos> sampled.
    let step = |tag: &str| {
        let values = scalars(run, tag);
        assert_eq!(values.len(), 1, "{tag}: {values:?}");
        assert_eq!(values[0].0, 1, "{tag}");
        values[0].1
    };
    assert_eq!(step("rollout/tool_calls_mean"), 1.0);
    assert_eq!(step("rollout/tool_errors"), 0.0);
    assert!(step("rollout/tool_seconds") > 0.0);
    assert_eq!(step("train/completion_length_mean"), 9.0);
    assert_eq!(step("rollout/sampled_tokens"), 24.0);
    // The learner's batch trains the sampled tokens only: the tool tokens are masked.
    assert_eq!(step("train/trained_tokens"), 24.0);
    // The program ran in the sandbox: its output block is in the sampled text (indented).
    let samples: Vec<String> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["tag"] == "samples/completions")
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(samples.len(), 1);
    assert!(
        samples[0].contains("```output\n    5\n    ```\n    \\boxed{5}"),
        "{}",
        samples[0]
    );
}

#[test]
fn rl_with_tir_and_a_sandbox_that_cannot_start_fails_before_the_run_directory() {
    let ScriptedRun {
        model, data, run, ..
    } = &scripted_run(&["5"]);
    let out = rl_tir_command(model, data, run)
        .args(["--set", "tool.python=/no/such/python"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the TIR sandbox could not start"),
        "{stderr}"
    );
    assert!(!run.exists(), "the run directory was created");
}

/// The query filter samples as the rollouts do: with TIR the program's output answers "5", so
/// the questions whose gold is 5 are answered 2 of 2 times and kept, the one with gold 6 never.
#[test]
fn rl_with_tir_filters_queries_with_tool_integrated_samples() {
    let ScriptedRun {
        model, data, run, ..
    } = &scripted_run(&["5", "6", "5"]);
    let out = rl_tir_command(model, data, run)
        .args(["--set", "query_filter.enabled=true"])
        .args([
            "--set",
            "query_filter.samples=2",
            "--set",
            "query_filter.min_correct=2",
        ])
        .args([
            "--set",
            "query_filter.max_correct=2",
            "--set",
            "query_filter.temperature=0.1",
        ])
        .args(["--set", "query_filter.max_new_tokens=24"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("query filter kept=2 examined=3"),
        "{stderr}"
    );
}

/// RM retraining with `tir = true` labels tool-integrated samples: their text holds the output
/// block the sandbox printed, and the checker judges the boxed answer after it.
#[test]
fn rm_retraining_with_tir_labels_tool_integrated_samples() {
    let ScriptedRun {
        model, data, run, ..
    } = &scripted_run(&["5", "6"]);
    let out = Command::new(env!("CARGO_BIN_EXE_mathrl"))
        .args(["--recipe", "rm-retraining", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(run)
        .args([
            "--set",
            "tir=true",
            "--set",
            "tool.allow_weaker_isolation=true",
        ])
        .args(["--set", "samples_per_query=2", "--set", "temperature=0.1"])
        .args(["--set", "max_new_tokens=24", "--set", "eval_queries=0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let samples: Vec<serde_json::Value> =
        std::fs::read_to_string(run.join("checkpoints/samples.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let labels: Vec<Vec<bool>> = samples
        .iter()
        .map(|q| {
            q["responses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let text = r[0].as_str().unwrap();
                    assert!(text.contains("```output\n5\n```\n\\boxed{5}"), "{text}");
                    r[1].as_bool().unwrap()
                })
                .collect()
        })
        .collect();
    assert_eq!(labels, [[true, true], [false, false]]);
}
