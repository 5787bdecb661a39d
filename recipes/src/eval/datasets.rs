//! The evaluation sets of the Qwen2.5-Math evaluation: where each one lives and how its question
//! and gold answer are read, following `data/eval/README.md` (the reference's `parse_question`
//! and `parse_ground_truth`).
//!
//! The gold is the raw answer string the reference's loader reads (e.g. the text after `####`
//! for gsm8k, the last `\boxed{}` of the solution for math); normalising it is the checker's job.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mathrl::data::{read_jsonl_numbered, QaRecord};
use serde_json::Value;

/// The shipped evaluation sets, in the order the report's tables list them.
pub const DATASETS: [&str; 14] = [
    "gsm8k",
    "math",
    "math500",
    "minerva_math",
    "gaokao2023en",
    "olympiadbench",
    "college_math",
    "mmlu_stem",
    "aime24",
    "amc23",
    "cmath",
    "cn_middle_school",
    "gaokao_math_cloze",
    "gaokao_math_qa",
];

/// The directory of the shipped sets, where it is found: an installation's `eval/`, a
/// checkout's `data/eval`, or the source tree's ([`crate::assets`] has the order).
pub fn default_data_dir() -> PathBuf {
    crate::assets::default_eval_dir()
}

/// Parses `--datasets a,b,c` (or `all`), rejecting unknown names with the nearest known one.
pub fn parse_dataset_list(list: &str) -> Result<Vec<String>> {
    if list.trim() == "all" {
        return Ok(DATASETS.iter().map(|s| s.to_string()).collect());
    }
    let known: Vec<String> = DATASETS.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !DATASETS.contains(&name) {
            match crate::config::nearest(name, &known) {
                Some(near) => bail!("unknown dataset `{name}`; did you mean `{near}`?"),
                None => bail!("unknown dataset `{name}`; known: {}", DATASETS.join(", ")),
            }
        }
        out.push(name.to_string());
    }
    if out.is_empty() {
        bail!("no dataset given; known: {}", DATASETS.join(", "));
    }
    Ok(out)
}

/// Loads the first `limit` questions (all when `None`) of `<data_dir>/<name>/test.jsonl`.
pub fn load_dataset(data_dir: &Path, name: &str, limit: Option<usize>) -> Result<Vec<QaRecord>> {
    let path = data_dir.join(name).join("test.jsonl");
    let mut items = Vec::new();
    for (line, row) in read_jsonl_numbered::<Value>(&path)? {
        if limit.is_some_and(|limit| items.len() >= limit) {
            break;
        }
        let gold = gold_of(name, &row)
            .with_context(|| format!("{}:{line}: reading the gold answer", path.display()))?;
        let question = question_of(name, &row, &gold)
            .with_context(|| format!("{}:{line}: reading the question", path.display()))?;
        items.push(QaRecord {
            dataset: Some(name.to_string()),
            line,
            ..QaRecord::new(question, gold)
        });
    }
    Ok(items)
}

/// A string field, or a number written as Python's `str` would (amc23 stores `27.0`).
fn text_field(row: &Value, key: &str) -> Result<String> {
    match row.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
            _ => n.to_string(),
        }),
        Some(other) => bail!("field `{key}` is not a string or number: {other}"),
        None => bail!("missing field `{key}`"),
    }
}

/// The gold answer by the data set's rule (the README table).
pub fn gold_of(name: &str, row: &Value) -> Result<String> {
    Ok(match name {
        "gsm8k" => {
            let answer = text_field(row, "answer")?;
            let (_, gold) = answer
                .split_once("####")
                .context("field `answer` has no `####` before the final answer")?;
            gold.trim().to_string()
        }
        "math" | "minerva_math" => {
            let solution = text_field(row, "solution")?;
            last_boxed(&solution)
                .context("field `solution` has no \\boxed{...} answer")?
                .to_string()
        }
        "mmlu_stem" => {
            let index = row
                .get("answer")
                .and_then(Value::as_u64)
                .context("field `answer` must be an index 0-3")?;
            ["A", "B", "C", "D"]
                .get(index as usize)
                .with_context(|| format!("field `answer` = {index} is not an index 0-3"))?
                .to_string()
        }
        "gaokao2023en" | "college_math" | "gaokao_math_cloze" => text_field(row, "answer")?
            .replace('$', "")
            .trim()
            .to_string(),
        "gaokao_math_qa" => text_field(row, "label")?,
        "cn_middle_school" => match text_field(row, "choice_answer") {
            Ok(choice) if !choice.is_empty() => choice,
            _ => text_field(row, "answer")?,
        },
        "olympiadbench" => {
            let first = row
                .get("final_answer")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .context("field `final_answer` must be a non-empty list of strings")?;
            first.trim_matches('$').to_string()
        }
        "aime24" | "amc23" | "cmath" | "math500" => text_field(row, "answer")?,
        other => bail!("no gold-answer rule for data set `{other}`"),
    })
}

/// The question by the data set's rule; true/false and yes/no questions get the reference's hint.
pub fn question_of(name: &str, row: &Value, gold: &str) -> Result<String> {
    let mut question = match name {
        "mmlu_stem" => {
            let choices = row
                .get("choices")
                .and_then(Value::as_array)
                .filter(|c| c.len() == 4)
                .context("field `choices` must be a list of 4 options")?;
            let options: Vec<String> = choices
                .iter()
                .zip(["A", "B", "C", "D"])
                .map(|(c, label)| {
                    let text = c.as_str().map_or_else(|| c.to_string(), str::to_string);
                    format!("({label}) {}", text.trim())
                })
                .collect();
            format!(
                "{}\nAnswer Choices: {}",
                text_field(row, "question")?.trim(),
                options.join(" ")
            )
        }
        "gaokao_math_qa" => {
            let options = row
                .get("options")
                .and_then(Value::as_object)
                .context("field `options` must be an object of lettered options")?;
            let options: Vec<String> = options
                .iter()
                .map(|(k, v)| {
                    format!(
                        "({k}) {}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    )
                })
                .collect();
            format!(
                "{}\n选项: {}",
                text_field(row, "question")?.trim(),
                options.join(" ")
            )
        }
        _ => ["question", "problem", "Question", "input"]
            .iter()
            .find_map(|key| row.get(*key).and_then(Value::as_str))
            .context("no `question` or `problem` field")?
            .to_string(),
    };
    match gold.trim().to_lowercase().as_str() {
        "true" | "false" => question.push_str(" (True or False)"),
        "yes" | "no" => question.push_str(" (Yes or No)"),
        _ => {}
    }
    Ok(question.trim().to_string())
}

/// The content of the last `\boxed{...}` (or `\fbox{...}`) of `text`, braces matched.
pub fn last_boxed(text: &str) -> Option<&str> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|cmd| text.rfind(cmd).map(|i| i + cmd.len()))
        .max()?;
    let rest = text[start..].trim_start();
    if let Some(body) = rest.strip_prefix('{') {
        let mut depth = 1usize;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&body[..i]);
                    }
                }
                _ => {}
            }
        }
        None
    } else {
        // `\boxed 5`: up to the closing `$`, as the reference's `last_boxed_only_string`.
        rest.split('$')
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gold_answers_follow_the_readme_table() {
        let cases = [
            (
                "gsm8k",
                json!({"question": "q", "answer": "so 3*6=18\n#### 18"}),
                "18",
            ),
            (
                "math",
                json!({"problem": "p", "solution": "first \\boxed{1} then $\\boxed{\\frac{1}{2}}$."}),
                "\\frac{1}{2}",
            ),
            (
                "mmlu_stem",
                json!({"question": "q", "choices": ["a", "b", "c", "d"], "answer": 2}),
                "C",
            ),
            (
                "olympiadbench",
                json!({"question": "q", "final_answer": ["$x=3$"]}),
                "x=3",
            ),
            (
                "college_math",
                json!({"question": "q", "answer": "$10-4 n$"}),
                "10-4 n",
            ),
            ("amc23", json!({"question": "q", "answer": 27.0}), "27.0"),
            (
                "cn_middle_school",
                json!({"question": "q", "answer": "-2", "choice_answer": "A"}),
                "A",
            ),
            (
                "cn_middle_school",
                json!({"question": "q", "answer": "-2", "choice_answer": ""}),
                "-2",
            ),
            (
                "gaokao_math_qa",
                json!({"question": "q", "options": {"A": "1"}, "label": "D"}),
                "D",
            ),
        ];
        for (name, row, gold) in cases {
            assert_eq!(gold_of(name, &row).unwrap(), gold, "{name}");
        }
        let err = gold_of("gsm8k", &json!({"answer": "no marker"})).unwrap_err();
        assert!(err.to_string().contains("####"), "{err}");
    }

    #[test]
    fn multiple_choice_questions_list_their_options() {
        let row = json!({"question": " Which? ", "choices": ["1 ", "2", "3", "4"], "answer": 0});
        assert_eq!(
            question_of("mmlu_stem", &row, "A").unwrap(),
            "Which?\nAnswer Choices: (A) 1 (B) 2 (C) 3 (D) 4"
        );
        let row = json!({"question": "设?", "options": {"A": "x", "B": "y"}, "label": "A"});
        assert_eq!(
            question_of("gaokao_math_qa", &row, "A").unwrap(),
            "设?\n选项: (A) x (B) y"
        );
        let row = json!({"problem": "Is 7 prime?"});
        assert_eq!(
            question_of("math", &row, "Yes").unwrap(),
            "Is 7 prime? (Yes or No)"
        );
    }

    #[test]
    fn last_boxed_matches_braces() {
        assert_eq!(
            last_boxed("a \\boxed{\\frac{1}{2}} b"),
            Some("\\frac{1}{2}")
        );
        assert_eq!(last_boxed("\\boxed{1} \\fbox{2}"), Some("2"));
        assert_eq!(last_boxed("$\\boxed 5$"), Some("5"));
        assert_eq!(last_boxed("\\boxed{unclosed"), None);
        assert_eq!(last_boxed("none"), None);
    }

    #[test]
    fn every_shipped_set_loads_with_a_question_and_gold() {
        let dir = default_data_dir();
        let mut empty_golds = Vec::new();
        for name in DATASETS {
            let items = load_dataset(&dir, name, None).unwrap();
            assert!(!items.is_empty(), "{name}");
            for item in &items {
                assert!(!item.question.is_empty(), "{name}:{}", item.line);
                if item.gold_or_empty().trim().is_empty() {
                    empty_golds.push(format!("{name}:{}", item.line));
                }
            }
        }
        // Two upstream rows have an empty `answer` (the reference keeps and scores them too).
        assert_eq!(empty_golds, ["gaokao2023en:168", "gaokao2023en:193"]);
        assert_eq!(load_dataset(&dir, "gsm8k", Some(20)).unwrap().len(), 20);
    }

    /// Slow in the dev profile (~80 s: 15k checks with the checker unoptimised); run with
    /// `cargo test -p mathrl-recipes --lib every_gold -- --ignored`.
    #[test]
    #[ignore]
    fn every_gold_answer_of_every_shipped_set_parses() {
        // Each gold must normalise to something, and the gold given back as the final answer
        // must check correct (the two upstream rows without a gold are skipped).
        let checker = mathrl_rewards::Checker::new(mathrl_rewards::CheckerProfile::Qwen25Math);
        let dir = default_data_dir();
        let mut failures = Vec::new();
        let mut checked = 0;
        for name in DATASETS {
            for item in load_dataset(&dir, name, None).unwrap() {
                let gold = item.gold_or_empty();
                if gold.trim().is_empty() {
                    continue;
                }
                let parsed = mathrl_rewards::parse_gold(gold, Some(name));
                let verdict = checker.check_answer(gold, gold, Some(name));
                if parsed.trim().is_empty() || !verdict.is_correct() {
                    failures.push(format!(
                        "{name}:{} gold {:?} -> {parsed:?}: {:?} {:?}",
                        item.line, gold, verdict.outcome, verdict.extracted
                    ));
                }
                checked += 1;
            }
        }
        assert!(checked > 15_000, "{checked}");
        assert!(
            failures.is_empty(),
            "{} of {checked} golds fail:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn dataset_lists_reject_unknown_names() {
        assert_eq!(
            parse_dataset_list("gsm8k, math500").unwrap(),
            vec!["gsm8k", "math500"]
        );
        assert_eq!(parse_dataset_list("all").unwrap().len(), 14);
        let err = parse_dataset_list("gsm8k,math5000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("math5000") && err.contains("math500"), "{err}");
    }
}
