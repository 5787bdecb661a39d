//! An installed `mathrl`: the binary away from its source tree (the compiled-in fallback turned
//! off by `MATHRL_NO_SOURCE_ASSETS`, the working directory elsewhere) finds the embedded default's
//! models and the evaluation sets where the README's install steps put them, and without them
//! its error names every place it looked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root (the `recipes` crate's parent).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Hard-links `from` to `to` (the binary is ~150 MB), copying when they are on two file systems.
fn link_or_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

fn link_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            link_tree(&entry.path(), &target);
        } else {
            link_or_copy(&entry.path(), &target);
        }
    }
}

/// `<root>/bin/mathrl`, as `cargo install --root <root>` lays it out.
fn install_binary(root: &Path) -> PathBuf {
    let exe = root.join("bin/mathrl");
    link_or_copy(Path::new(env!("CARGO_BIN_EXE_mathrl")), &exe);
    exe
}

/// Runs the installed binary from `cwd`, with no `$MATHRL_ASSETS` and the source tree off.
fn run_installed(exe: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .current_dir(cwd)
        .env_remove("MATHRL_ASSETS")
        .env("MATHRL_NO_SOURCE_ASSETS", "1")
        .output()
        .unwrap()
}

/// One GRPO step of the embedded default, sized for a test.
const ONE_STEP: &[&str] = &[
    "--recipe",
    "qwen25-math-rl",
    "--output",
    "run",
    "--max-steps",
    "1",
    "--set",
    "trainer.prompts_per_step=2",
    "--set",
    "grpo.rollout.group_size=2",
    "--set",
    "grpo.rollout.max_new_tokens=8",
    "--set",
    "eval_questions=2",
    "--set",
    "eval_max_new_tokens=8",
];

#[test]
fn an_installed_binary_finds_its_assets_in_share_mathrl() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prefix");
    let exe = install_binary(&root);
    // The README's install step: recipes/assets/* and data/eval into <prefix>/share/mathrl/.
    let share = root.join("share/mathrl");
    for name in ["tiny-math-policy", "tiny-math-rm"] {
        link_tree(&repo().join("recipes/assets").join(name), &share.join(name));
    }
    link_or_copy(
        &repo().join("data/eval/gsm8k/test.jsonl"),
        &share.join("eval/gsm8k/test.jsonl"),
    );
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let out = run_installed(&exe, &work, ONE_STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("run/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["steps"], 1, "{summary}");
    // The shipped RM was found too: the reward is shaped with it.
    assert_eq!(summary["reward"], "shaped", "{summary}");

    // The evaluation sets and the default policy of the eval recipe, from the same place.
    let out = run_installed(
        &exe,
        &work,
        &[
            "--recipe",
            "eval",
            "--datasets",
            "gsm8k",
            "--limit",
            "2",
            "--set",
            "max_new_tokens=8",
            "--output",
            "eval",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["gsm8k", "2"])),
        "{stdout}"
    );
}

#[test]
fn an_installed_binary_without_assets_names_every_place_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prefix");
    let exe = install_binary(&root);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    let out = run_installed(&exe, &work, ONE_STEP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for place in [
        root.join("bin/assets/tiny-math-policy"),
        root.join("share/mathrl/tiny-math-policy"),
    ] {
        assert!(stderr.contains(&place.display().to_string()), "{stderr}");
    }
    assert!(
        stderr.contains("MATHRL_NO_SOURCE_ASSETS is set"),
        "{stderr}"
    );
    // The source tree was not looked in, and nothing was started.
    assert!(
        !stderr.contains("recipes/assets/tiny-math-policy"),
        "{stderr}"
    );
    assert!(!work.join("run").exists());

    // Assets beside the executable (`<exe dir>/assets/`) are found as well.
    for name in ["tiny-math-policy", "tiny-math-rm"] {
        link_tree(
            &repo().join("recipes/assets").join(name),
            &root.join("bin/assets").join(name),
        );
    }
    let out = run_installed(&exe, &work, ONE_STEP);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The eval recipe without its sets names the places too.
    let out = run_installed(
        &exe,
        &work,
        &[
            "--recipe",
            "eval",
            "--datasets",
            "gsm8k",
            "--output",
            "eval",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&root.join("share/mathrl/eval").display().to_string()),
        "{stderr}"
    );
}

/// The README's `cargo install` itself, then its copy step: a full build in cargo's own
/// temporary target directory (sharing this workspace's would wait on the lock `cargo test`
/// holds), 15-20 minutes on 2 cores and a few GB of disk, so run on demand:
/// `cargo test --workspace --test installed -- --ignored`.
#[test]
#[ignore = "a full cold build of the binary (15-20 minutes on 2 cores)"]
fn cargo_install_then_the_readme_install_steps_give_a_working_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prefix");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "install", "--debug", "--locked", "--path", "recipes", "--root",
        ])
        .arg(&root)
        .env_remove("CARGO_TARGET_DIR")
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success());
    let share = root.join("share/mathrl");
    for name in ["tiny-math-policy", "tiny-math-rm"] {
        link_tree(&repo().join("recipes/assets").join(name), &share.join(name));
    }
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = run_installed(&root.join("bin/mathrl"), &work, ONE_STEP);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
