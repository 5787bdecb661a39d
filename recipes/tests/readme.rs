//! What users read is what runs: the README's custom-recipe example is the compiled one, and every
//! `mathrl ...` command of the README and of `--help` parses, with `--set` keys the recipe knows.

use std::path::Path;
use std::process::Command;

use clap::{CommandFactory, Parser};
use mathrl_recipes::cli::Cli;
use mathrl_recipes::recipe_flags::flags_read;

fn readme() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("../README.md")).unwrap()
}

#[test]
fn the_readme_shows_the_custom_recipe_example_verbatim() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/custom_recipe.rs")).unwrap();
    assert!(
        readme().contains(&format!("```rust\n{example}```")),
        "README.md's custom recipe differs from recipes/examples/custom_recipe.rs"
    );
}

/// The ways the README starts the binary.
const PROGRAMS: &[&str] = &[
    "cargo run --release -- ",
    "target/release/mathrl ",
    "mathrl ",
];

/// The arguments of every command of `text` (markdown): lines of code blocks and inline code
/// spans that start the binary.
fn commands(text: &str) -> Vec<String> {
    let mut snippets = Vec::new();
    for (i, part) in text.split("```").enumerate() {
        if i % 2 == 1 {
            snippets.extend(part.lines().map(|l| l.trim().to_string()));
        } else {
            // Inline spans may wrap onto the next line.
            snippets.extend(
                part.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|s| s.replace('\n', " ")),
            );
        }
    }
    snippets
        .iter()
        .filter_map(|s| {
            let s = s.trim_start_matches("$ ");
            PROGRAMS
                .iter()
                .find_map(|p| s.strip_prefix(p))
                .map(str::to_string)
        })
        .collect()
}

/// Splits `line` as a POSIX shell would (quotes, backslashes), reading usage notation too: an
/// optional group `[--flag VALUE]` gives its contents and `a|b` (unquoted) the first choice.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut open_groups = 0;
    let mut alternative = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                alternative = false;
            }
            '[' if !in_word && chars.peek() == Some(&'-') => open_groups += 1,
            ']' if open_groups > 0 && chars.peek().is_none_or(|c| *c == ' ') => {
                open_groups -= 1;
            }
            '|' => alternative = true,
            _ if alternative => {}
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|c| *c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Parses `args` as the binary would and, when they name a recipe with a config, resolves their
/// `--set` keys against it (the binary's `--print-config`, with no model or data loaded).
fn check(args: &[String]) -> Result<(), String> {
    let cli = Cli::try_parse_from(std::iter::once("mathrl".to_string()).chain(args.to_vec()))
        .map_err(|e| format!("does not parse: {e}"))?;
    let (Some(recipe), false) = (&cli.recipe, cli.sets.is_empty()) else {
        return Ok(());
    };
    let reads_sets = flags_read(recipe).is_some_and(|flags| flags.contains(&"sets"));
    if !reads_sets {
        return Err(format!("recipe {recipe} takes no --set"));
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_mathrl"));
    command.args(["--recipe", recipe, "--print-config"]);
    for set in &cli.sets {
        command.args(["--set", set]);
    }
    let out = command.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn shell_words_read_quotes_optional_groups_and_choices() {
    assert_eq!(
        shell_words(r#"--limit 20 [--model DIR] [--set 'modes=["cot","maj@8"]'] --role a|b"#),
        [
            "--limit",
            "20",
            "--model",
            "DIR",
            "--set",
            r#"modes=["cot","maj@8"]"#,
            "--role",
            "a"
        ]
    );
    // Unquoted, the shell drops the inner quotes: the value is no longer a TOML array of
    // strings, and the eval recipe refuses it.
    assert_eq!(
        shell_words(r#"--set modes=["cot","maj@8"]"#),
        ["--set", "modes=[cot,maj@8]"]
    );
    let unquoted = shell_words(r#"--recipe eval --set modes=["cot","maj@8"]"#);
    assert!(check(&unquoted).is_err());
}

#[test]
fn every_readme_command_parses_and_its_set_keys_resolve() {
    let commands = commands(&readme());
    assert!(
        commands.len() >= 10 && commands.iter().any(|c| c.contains("modes=")),
        "too few commands found: {commands:?}"
    );
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|c| check(&shell_words(c)).err().map(|e| format!("{c}\n  {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The inline `--set KEY=VALUE` examples of `text` (backtick spans), as arguments of the RL
/// recipe, whose keys they name.
fn set_examples(text: &str) -> Vec<Vec<String>> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("--set "))
        .map(|span| {
            let mut args = vec!["--recipe".to_string(), "qwen25-math-rl".to_string()];
            args.extend(shell_words(span));
            args
        })
        .collect()
}

#[test]
fn every_help_example_and_readme_set_example_resolves() {
    let help = Cli::command().render_long_help().to_string();
    let help_examples = set_examples(&help);
    assert!(!help_examples.is_empty(), "no --set example in --help");
    let examples = help_examples.into_iter().chain(set_examples(&readme()));
    let failures: Vec<String> = examples
        .filter_map(|args| check(&args).err().map(|e| format!("{args:?}\n  {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The checker refuses what the issue found in --help.
    let err = check(&set_examples("`--set grpo.beta=0.0`")[0]).unwrap_err();
    assert!(err.contains("did you mean `grpo.loss.beta`?"), "{err}");
}
