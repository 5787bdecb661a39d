//! `--model` / `--rm` given as Hub ids, resolved offline from a Hugging Face cache laid out as the
//! Hub client lays it out (`models--org--name/refs/main`, `snapshots/<commit>/` whose files are
//! symlinks into `blobs/`), with the tiny Qwen2.5-Math-layout fixtures of
//! `tests/fixtures/qwen2.5-math-hub`.
#![cfg(unix)]

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INSTRUCT: &str = "Qwen/Qwen2.5-Math-1.5B-Instruct";
const RM: &str = "Qwen/Qwen2.5-Math-RM-72B";
const COMMIT: &str = "aafeb0fc6f22cbf0eaeed126eff8be45b0360a35";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Puts fixture model `repo` (its name after `org/`), with the Qwen2.5 tokenizer.json, into the
/// Hub cache `cache` at commit [`COMMIT`], `refs/main` pointing at it.
fn cache_model(cache: &Path, repo: &str) {
    let name = repo.split_once('/').unwrap().1;
    let model = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = model.join("snapshots").join(COMMIT);
    for dir in [model.join("blobs"), model.join("refs"), snapshot.clone()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(model.join("refs/main"), COMMIT).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("qwen2.5-math-hub").join(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(fixtures().join("qwen2.5-tokenizer/tokenizer.json"));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        let blob = format!("{:016x}", hasher.finish());
        std::fs::write(model.join("blobs").join(&blob), bytes).unwrap();
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(&blob),
            snapshot.join(file.file_name().unwrap()),
        )
        .unwrap();
    }
}

/// The binary with no Hugging Face variable of the caller's environment.
fn mathrl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mathrl"));
    for var in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "XDG_CACHE_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `sft` for `steps` steps of two conversations on `data`, from `model` (Hub id or directory).
fn sft(model: impl AsRef<OsStr>, data: &Path, output: &Path, steps: u64) -> Command {
    let mut cmd = mathrl();
    cmd.args(["--recipe", "sft", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(output)
        .args(["--set", &format!("steps={steps}"), "--set", "batch_size=2"])
        .args(["--set", "eval_examples=2"]);
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The line of stderr that carries the error.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let text = stderr(out);
    text.lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_else(|| panic!("no error line in {text}"))
        .to_string()
}

#[test]
fn sft_runs_on_a_hub_id_in_hf_hub_cache_and_keeps_the_chat_template() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    cache_model(&cache, INSTRUCT);
    let data = tmp.path().join("sft.jsonl");
    let lines: Vec<String> = (1..=6)
        .map(|n| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("What is {n} + {n}?")},
                {"role": "assistant", "content": format!("{n} + {n} = \\boxed{{{}}}", 2 * n)},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = tmp.path().join("run");
    let run = sft(INSTRUCT, &data, &out, 2)
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["steps"], 2);
    assert!(summary["final_loss"].as_f64().unwrap().is_finite());
    let source = fixtures().join("qwen2.5-math-hub/Qwen2.5-Math-1.5B-Instruct");
    for file in ["chat_template.jinja", "generation_config.json"] {
        assert_eq!(
            std::fs::read(out.join("final").join(file)).unwrap(),
            std::fs::read(source.join(file)).unwrap(),
            "{file} is saved with the trained model"
        );
    }
    // The trained model is itself a model directory that `--model` accepts.
    let again = sft(out.join("final"), &data, &tmp.path().join("again"), 1)
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn rm_score_reads_a_hub_id_from_hf_home_and_matches_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");
    cache_model(&home.join("hub"), RM);
    let expected =
        read_json(&fixtures().join("qwen2.5-math-hub/Qwen2.5-Math-RM-72B/expected.json"));
    let input = tmp.path().join("in.json");
    let rows = serde_json::json!({"input_ids": expected["input_ids"], "attention_mask": expected["attention_mask"]});
    std::fs::write(&input, rows.to_string()).unwrap();
    let output = tmp.path().join("out.json");
    for revision in ["", "@main", &format!("@{COMMIT}")] {
        let run = mathrl()
            .env("HF_HOME", &home)
            .args([
                "--recipe",
                "rm-score",
                "--rm",
                &format!("{RM}{revision}"),
                "--input",
            ])
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        assert!(run.status.success(), "{revision}: {}", stderr(&run));
        let rewards = read_json(&output)["rewards"].clone();
        for (got, want) in rewards
            .as_array()
            .unwrap()
            .iter()
            .zip(expected["scores_f32"].as_array().unwrap())
        {
            let (got, want) = (got.as_f64().unwrap(), want.as_f64().unwrap());
            assert!((got - want).abs() < 1e-4, "{revision}: {got} vs {want}");
        }
    }
}

#[test]
fn what_is_not_in_the_cache_is_named_with_the_command_that_downloads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    cache_model(&cache, INSTRUCT);
    cache_model(&cache, RM);
    let logprobs = |model: &str| {
        mathrl()
            .env("HF_HUB_CACHE", &cache)
            .args([
                "--recipe", "logprobs", "--model", model, "--input", "in.json", "--output",
                "out.json",
            ])
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };

    let err = error_line(&logprobs("Qwen/Qwen2.5-Math-7B-Instruct"));
    assert!(
        err.contains("models--Qwen--Qwen2.5-Math-7B-Instruct")
            && err.contains("`huggingface-cli download Qwen/Qwen2.5-Math-7B-Instruct`")
            && err.contains("`hf download Qwen/Qwen2.5-Math-7B-Instruct`"),
        "{err}"
    );

    let err = error_line(&logprobs(&format!("{INSTRUCT}@v9")));
    assert!(
        err.contains("no revision `v9`")
            && err.contains("cached refs: main")
            && err.contains(&format!(
                "`huggingface-cli download {INSTRUCT} --revision v9`"
            )),
        "{err}"
    );

    // A shard the index names but the snapshot lacks (an interrupted download).
    let snapshot = cache
        .join("models--Qwen--Qwen2.5-Math-RM-72B/snapshots")
        .join(COMMIT);
    std::fs::remove_file(snapshot.join("model-00002-of-00002.safetensors")).unwrap();
    let run = mathrl()
        .env("HF_HUB_CACHE", &cache)
        .args([
            "--recipe", "rm-score", "--rm", RM, "--input", "in.json", "--output", "out.json",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = error_line(&run);
    assert!(
        err.contains("model-00002-of-00002.safetensors")
            && err.contains(&format!(
                "`huggingface-cli download {RM} --revision {COMMIT}`"
            )),
        "{err}"
    );
}
