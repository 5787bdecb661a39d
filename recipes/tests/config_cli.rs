//! The config through the binary: `--print-config` documents every key and parses back, unknown
//! keys name the nearest key across sections, a bad setting fails before the run starts, and
//! flags a recipe does not read are named.

use std::process::{Command, Output};

use mathrl_recipes::recipe_flags::flags_read;

fn mathrl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mathrl"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Keys printed without a comment above them (a doc, or another key's commented-out line).
fn undocumented_keys(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(" = ") && !l.starts_with(['#', ' ']))
        .filter(|(i, _)| *i == 0 || !lines[i - 1].starts_with('#'))
        .map(|(_, l)| l.to_string())
        .collect()
}

#[test]
fn print_config_documents_every_key_of_every_recipe_and_parses_back() {
    let dir = tempfile::tempdir().unwrap();
    for recipe in mathrl_recipes::recipes() {
        if !flags_read(recipe.name).unwrap().contains(&"print_config") {
            continue;
        }
        let printed = stdout(&mathrl(&["--recipe", recipe.name, "--print-config"]));
        let missing = undocumented_keys(&printed);
        assert!(
            missing.is_empty(),
            "{}: keys without a doc comment: {missing:?}",
            recipe.name
        );
        let file = dir.path().join(format!("{}.toml", recipe.name));
        std::fs::write(&file, &printed).unwrap();
        let again = stdout(&mathrl(&[
            "--recipe",
            recipe.name,
            "--config",
            file.to_str().unwrap(),
            "--print-config",
        ]));
        assert_eq!(
            again, printed,
            "{}: --config of --print-config",
            recipe.name
        );
    }
}

#[test]
fn print_config_comments_out_the_keys_the_rl_recipe_sets() {
    let printed = stdout(&mathrl(&["--recipe", "qwen25-math-rl", "--print-config"]));
    for (key, by) in [
        ("max_steps", "`steps` and --max-steps"),
        ("seed", "--seed"),
        ("lr", "`grpo.train_step.schedule`"),
    ] {
        let at = printed
            .lines()
            .position(|l| l.starts_with(&format!("# {key} = ")))
            .unwrap_or_else(|| panic!("{key} not commented out:\n{printed}"));
        let note = printed.lines().nth(at - 1).unwrap();
        assert_eq!(
            note,
            format!("# Set by the recipe ({by}): a value here is ignored.")
        );
    }
    assert!(printed.contains("# Prompts (groups) per learner step"));

    let out = mathrl(&[
        "--recipe",
        "qwen25-math-rl",
        "--set",
        "trainer.seed=3",
        "--print-config",
    ]);
    assert!(
        stderr(&out).contains("--set trainer.seed=3: qwen25-math-rl sets `trainer.seed` itself"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_keys_name_the_nearest_key_in_any_section() {
    for (set, near) in [
        ("grpo.beta=0.0", "grpo.loss.beta"),
        ("trainer.group_size_x=4", "grpo.rollout.group_size"),
        ("grpo.peak_lr=1e-5", "grpo.train_step.schedule.peak_lr"),
    ] {
        let out = mathrl(&["--recipe", "qwen25-math-rl", "--set", set, "--print-config"]);
        assert!(!out.status.success(), "{set}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("did you mean `{near}`?")),
            "{set}: {err}"
        );
    }
}

#[test]
fn a_bad_trainer_setting_fails_before_the_run_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    for (sets, named) in [
        (&["trainer.prompts_per_step=0"][..], "prompts_per_step"),
        (&["grpo.micro_batch_size=0"], "micro_batch_size"),
        // 32 prompts × 8 completions: 12 is not whole groups, 24 does not divide the step.
        (&["grpo.mini_batch_size=12"], "mini_batch_size"),
        (&["grpo.mini_batch_size=24"], "mini_batch_size"),
        (&["reward.rm_batch_size=0"], "rm_batch_size"),
        (
            &["query_filter.enabled=true", "query_filter.min_correct=9"],
            "min_correct",
        ),
    ] {
        let mut args = vec![
            "--recipe",
            "qwen25-math-rl",
            "--output",
            output.to_str().unwrap(),
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = mathrl(&args);
        let set = sets.join(" ");
        assert!(!out.status.success(), "{set}");
        let err = stderr(&out);
        assert!(err.contains(named), "{set}: {err}");
        assert!(!output.exists(), "{set}: the run directory was created");
        assert!(!err.contains("held-out accuracy"), "{set}: {err}");
    }
}

#[test]
fn a_bad_learner_setting_of_sft_and_rm_retraining_fails_before_the_model_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("run");
    // The model directory does not exist: an error about it would mean the model came first.
    let missing = dir.path().join("no-model");
    for (recipe, set, section) in [
        (
            "sft",
            "learner.micro_batch_size=0",
            "config section `learner`",
        ),
        (
            "rm-retraining",
            "learner.micro_batch_queries=0",
            "config section `learner`",
        ),
        (
            "sft-data-evolution",
            "sft.learner.train_step.max_grad_norm=-1.0",
            "config section `sft.learner`",
        ),
    ] {
        let out = mathrl(&[
            "--recipe",
            recipe,
            "--model",
            missing.to_str().unwrap(),
            "--data",
            "data.jsonl",
            "--output",
            output.to_str().unwrap(),
            "--set",
            set,
        ]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{recipe}: {err}");
        assert!(
            err.contains(section) && !err.contains("no-model"),
            "{recipe}: {err}"
        );
        assert!(!output.exists(), "{recipe}: the run directory was created");
    }
}

#[test]
fn flags_a_recipe_does_not_read_are_named_with_the_recipe() {
    let out = mathrl(&[
        "--recipe",
        "sft",
        "--checker",
        "strict",
        "--datasets",
        "gsm8k",
        "--seed",
        "3",
        "--print-config",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("--checker is not read by recipe sft")
            && err.contains("--datasets is not read by recipe sft"),
        "{err}"
    );
    assert!(!err.contains("--seed is not read"), "{err}");
    // A default value is not a flag given.
    let out = mathrl(&["--recipe", "sft", "--print-config"]);
    assert!(!stderr(&out).contains("not read by"), "{}", stderr(&out));
}
