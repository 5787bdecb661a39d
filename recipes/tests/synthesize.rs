//! `synthesize` end to end on a scripted "instruct model" that always writes the same problem:
//! the copies are deduplicated, the survivor is checked against its seed's gold answer (a
//! rephrasing) or by self-consistency (a new problem), and written as JSONL; over rounds, the
//! kept problems are evolved (the operator recorded) and deduplicated against earlier rounds.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bigram_policy, id, script_tokenizer_with, CONCAT_TEMPLATE};

const REPLY: &str = "Problem: What is 2+3?\nSolution: ";
/// The evolved problem: what the model writes after "%" (the end of the test's evolution
/// instructions).
const EVOLVED: &str = "Problem: What is 4+1?\nSolution: ";

/// After "#" or "$" (the ends of the test's instructions) the model writes REPLY then
/// "\boxed{5}", after "%" EVOLVED then "\boxed{5}"; after "?" (the end of a CoT prompt for a new
/// problem) it answers "\boxed{5}".
fn scripted_instruct_model(dir: &Path) {
    let tokenizer_dir = dir.with_extension("tokenizer");
    std::fs::create_dir_all(&tokenizer_dir).unwrap();
    let tok = script_tokenizer_with(&tokenizer_dir, CONCAT_TEMPLATE, &[REPLY, EVOLVED]);
    let (reply, evolved, boxed) = (id(&tok, REPLY), id(&tok, EVOLVED), id(&tok, "\\boxed{5}"));
    bigram_policy(&[
        (id(&tok, "#"), reply),
        (id(&tok, "$"), reply),
        (id(&tok, "%"), evolved),
        (reply, boxed),
        (evolved, boxed),
        (id(&tok, "?"), boxed),
        (boxed, 0),
    ])
    .with_side_files_from(&tokenizer_dir)
    .save(dir)
    .unwrap();
}

fn synthesize(model: &Path, seeds: &Path, output: &Path, sets: &[&str]) -> Vec<serde_json::Value> {
    synthesize_against(model, seeds, output, None, sets)
}

/// [`synthesize`], decontaminating against the evaluation sets of `data_dir` when given.
fn synthesize_against(
    model: &Path,
    seeds: &Path,
    output: &Path,
    data_dir: Option<&Path>,
    sets: &[&str],
) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mathrl"));
    cmd.args(["--recipe", "synthesize", "--model"])
        .arg(model)
        .arg("--data")
        .arg(seeds)
        .arg("--output")
        .arg(output)
        .args([
            "--set",
            "rephrase_prompt={question}#",
            "--set",
            "new_problem_prompt={question}$",
        ])
        .args(["--set", "max_new_tokens=4"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    if let Some(dir) = data_dir {
        cmd.arg("--data-dir").arg(dir);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(output.join("synthesized.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn funnel(output: &Path) -> serde_json::Value {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap())
            .unwrap();
    summary["funnel"].clone()
}

#[test]
fn copies_are_deduplicated_and_the_survivor_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    scripted_instruct_model(&model);
    let seeds = tmp.path().join("seeds.jsonl");
    std::fs::write(
        &seeds,
        "{\"question\": \"Add two and three.\", \"answer\": \"5\"}\n\
         {\"question\": \"Add three and four.\", \"answer\": \"7\"}\n{\"question\": \"Add one and four.\"}\n",
    )
    .unwrap();

    // Rephrasings first: nine identical replies, one survives, its seed's gold (5) checks it.
    let output = tmp.path().join("a");
    let lines = synthesize(
        &model,
        &seeds,
        &output,
        &["rephrasings_per_seed=2", "new_problems_per_seed=1"],
    );
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["question"], "What is 2+3?");
    assert_eq!(line["solution"], "\\boxed{5}");
    assert_eq!(line["answer"], "5");
    assert_eq!(
        (line["kind"].as_str(), line["seed_line"].as_u64()),
        (Some("rephrase"), Some(1))
    );
    assert_eq!(line["check"], "gold");
    let f = funnel(&output);
    assert_eq!(
        [
            &f["generated"],
            &f["parsed"],
            &f["exact_duplicates"],
            &f["near_duplicates"],
            &f["rejected"],
            &f["kept"]
        ],
        [9, 9, 8, 0, 0, 1]
    );

    // New problems only: the survivor has no gold and passes self-consistency (4 of 4 agree).
    let output = tmp.path().join("b");
    let lines = synthesize(
        &model,
        &seeds,
        &output,
        &["rephrasings_per_seed=0", "new_problems_per_seed=2"],
    );
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0]["kind"].as_str(), lines[0]["check"].as_str()),
        (Some("new-problem"), Some("self-consistency"))
    );
    assert_eq!(lines[0]["agreement"], 1.0);
}

/// Every evolution instruction ends with "%", so the model writes the evolved problem.
const EVOLUTION_PROMPTS: [&str; 4] = [
    "evolution.add_constraint_prompt={question}%",
    "evolution.change_numbers_prompt={question}%",
    "evolution.combine_prompt={question}{other}%",
    "evolution.harder_prompt={question}%",
];

#[test]
fn rounds_evolve_the_kept_problems_and_drop_copies_of_earlier_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    scripted_instruct_model(&model);
    let seeds = tmp.path().join("seeds.jsonl");
    std::fs::write(
        &seeds,
        "{\"question\": \"Add two and three.\", \"answer\": \"5\"}\n{\"question\": \"Add one and four.\"}\n",
    )
    .unwrap();
    let run = |name: &str, extra: &[&str]| {
        let output = tmp.path().join(name);
        let mut sets = vec![
            "rounds=3",
            "rephrasings_per_seed=1",
            "new_problems_per_seed=0",
            "evolution.per_problem=2",
        ];
        sets.extend(EVOLUTION_PROMPTS);
        sets.extend(extra);
        let lines = synthesize(&model, &seeds, &output, &sets);
        (lines, output)
    };

    // Round 1 keeps "What is 2+3?" (a rephrasing, checked against seed 1's gold); round 2
    // evolves it into "What is 4+1?" (kept by self-consistency, once); round 3's evolutions are
    // copies of round 2's problem and are all dropped.
    let (lines, output) = run("harder", &["evolution.operators=[\"harder\"]"]);
    let summary = |output: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(output.join("summary.json")).unwrap())
            .unwrap()
    };
    let fields = |l: &serde_json::Value| {
        (
            l["question"].as_str().unwrap().to_string(),
            l["kind"].as_str().unwrap().to_string(),
            l["operator"].as_str().map(str::to_string),
            l["round"].as_u64().unwrap(),
            l["seed_line"].as_u64().unwrap(),
            l["check"].as_str().unwrap().to_string(),
        )
    };
    let got: Vec<_> = lines.iter().map(fields).collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        [
            (s("What is 2+3?"), s("rephrase"), None, 1, 1, s("gold")),
            (
                s("What is 4+1?"),
                s("evolved"),
                Some(s("harder")),
                2,
                1,
                s("self-consistency")
            ),
        ]
    );
    let rounds = summary(&output)["rounds"].clone();
    let counts = |r: usize| {
        let f = &rounds[r]["funnel"];
        [
            &f["generated"],
            &f["exact_duplicates"],
            &f["near_duplicates"],
            &f["rejected"],
            &f["kept"],
        ]
        .map(|v| v.as_u64().unwrap())
    };
    assert_eq!(rounds.as_array().unwrap().len(), 3, "{rounds}");
    // [generated, exact, near, rejected, kept] per round.
    assert_eq!(counts(0), [2, 1, 0, 0, 1]);
    assert_eq!(counts(1), [2, 1, 0, 0, 1]);
    assert_eq!(counts(2), [2, 2, 0, 0, 0]);
    assert_eq!(funnel(&output)["kept"], 2);

    // With every operator the choice is seeded: the same run twice records the same one (a lone
    // problem is never combined).
    let (first, _) = run("all-1", &[]);
    let (again, _) = run("all-2", &[]);
    assert_eq!(first, again);
    let operator = first[1]["operator"].as_str().unwrap();
    assert!(
        ["add-constraint", "change-numbers", "harder"].contains(&operator),
        "{operator}"
    );
}

#[test]
fn problems_that_overlap_an_evaluation_set_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    scripted_instruct_model(&model);
    let seeds = tmp.path().join("seeds.jsonl");
    std::fs::write(
        &seeds,
        "{\"question\": \"Add two and three.\", \"answer\": \"5\"}\n",
    )
    .unwrap();
    // An evaluation set holding the problem round 2 evolves: "What is 4+1?", other punctuation.
    let data_dir = tmp.path().join("eval");
    std::fs::create_dir_all(data_dir.join("held-out")).unwrap();
    std::fs::write(
        data_dir.join("held-out/test.jsonl"),
        "{\"question\": \"what is 4 + 1\", \"answer\": \"5\"}\n",
    )
    .unwrap();
    let run = |name: &str, decontaminate: &str| {
        let output = tmp.path().join(name);
        let mut sets = vec![
            "rounds=2",
            "rephrasings_per_seed=1",
            "new_problems_per_seed=0",
            "evolution.per_problem=1",
            "evolution.operators=[\"harder\"]",
            decontaminate,
        ];
        sets.extend(EVOLUTION_PROMPTS);
        let questions: Vec<String> =
            synthesize_against(&model, &seeds, &output, Some(&data_dir), &sets)
                .iter()
                .map(|l| l["question"].to_string())
                .collect();
        (questions, funnel(&output)["contaminated"].as_u64().unwrap())
    };
    let (kept, contaminated) = run("on", "decontaminate=true");
    assert_eq!(
        (kept, contaminated),
        (vec!["\"What is 2+3?\"".to_string()], 1)
    );
    let (kept, contaminated) = run("off", "decontaminate=false");
    assert_eq!(kept.len(), 2);
    assert_eq!(contaminated, 0);
}

/// With `tir = true` the self-consistency solutions run their programs: the solver writes a
/// python block after a problem's "?", and only the sandbox's output block leads it to
/// "\boxed{5}" (without a tool the script ends after "```output").
#[test]
fn with_tir_the_self_consistency_solutions_run_their_programs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    let tokenizer_dir = model.with_extension("tokenizer");
    std::fs::create_dir_all(&tokenizer_dir).unwrap();
    let tok = script_tokenizer_with(&tokenizer_dir, CONCAT_TEMPLATE, &[REPLY]);
    let [py, program, _, close, trigger, out_close, boxed] =
        common::SCRIPT_TOKENS.map(|t| id(&tok, t));
    let reply = id(&tok, REPLY);
    bigram_policy(&[
        (id(&tok, "$"), reply),
        (reply, boxed),
        (id(&tok, "?"), py),
        (py, program),
        (program, close),
        (close, trigger),
        // Without a tool nothing follows the trigger: the solution ends unanswered.
        (trigger, 0),
        (out_close, boxed),
        (boxed, 0),
    ])
    .with_side_files_from(&tokenizer_dir)
    .save(&model)
    .unwrap();
    let seeds = tmp.path().join("seeds.jsonl");
    std::fs::write(&seeds, "{\"question\": \"Add one and four.\"}\n").unwrap();
    let kept = |name: &str, tir: &str| {
        let output = tmp.path().join(name);
        let lines = synthesize(
            &model,
            &seeds,
            &output,
            &[
                "rephrasings_per_seed=0",
                "new_problems_per_seed=1",
                "max_new_tokens=24",
                tir,
                "tool.allow_weaker_isolation=true",
            ],
        );
        (lines, funnel(&output)["rejected"].as_u64().unwrap())
    };
    let (lines, rejected) = kept("tir", "tir=true");
    assert_eq!(rejected, 0);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0]["check"].as_str(), lines[0]["agreement"].as_f64()),
        (Some("self-consistency"), Some(1.0))
    );
    let (lines, rejected) = kept("cot", "tir=false");
    assert_eq!((lines.len(), rejected), (0, 1), "{lines:?}");
}
