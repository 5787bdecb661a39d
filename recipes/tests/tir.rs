//! Tool-integrated reasoning end to end: a scripted model writes a python block, the engine
//! pauses, the program runs in the real sandbox through `SandboxExecutor`, and the output block
//! is appended before generation resumes; then the eval runner in TIR mode over the same model.

mod common;

use std::sync::Arc;

use mathrl::data::QaRecord;
use mathrl::generation::{Engine, EngineConfig, SamplingParams};
use mathrl::types::FinishReason;
use mathrl::{Policy, Tokenizer};
use mathrl_recipes::eval::{evaluate, EvalMode, PromptFormat, Selection};
use mathrl_rewards::{Verdict, Verifier};
use mathrl_sandbox::{PythonSandbox, SandboxConfig, SandboxExecutor};

use common::{bigram_policy, id, script_tokenizer, SCRIPT_TOKENS};

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
