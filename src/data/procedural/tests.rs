use std::collections::{HashMap, HashSet};

use super::templates::unit_factors;
use super::worked::Op;
use super::*;

fn task(config: TaskConfig) -> ProceduralTask {
    ProceduralTask::new(config).expect("a valid config")
}

fn sample(task: &ProceduralTask, split: Split, n: usize) -> Vec<Problem> {
    task.problems(split).take(n).collect()
}

/// The numbers written in `text` (digit runs).
fn numbers_in(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a digit run"))
        .collect()
}

/// The `a op b = c` equations of a solution, in order, re-derived from its text alone; checks on
/// the way that each equation holds and that its operands were known when it was written (stated
/// in the question, a unit factor, or written earlier in the solution).
fn checked_equations(problem: &Problem) -> Vec<(u64, Op, u64, u64)> {
    let mut known: HashSet<u64> = numbers_in(&problem.question).into_iter().collect();
    known.extend(unit_factors());
    let words: Vec<&str> = problem.solution.split_whitespace().collect();
    let mut equations = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let window = &words[i..(i + 5).min(words.len())];
        if window.len() == 5 && window[3] == "=" {
            let ctx = format!("{problem:#?}");
            let a: u64 = window[0]
                .parse()
                .unwrap_or_else(|_| panic!("left operand `{}` in {ctx}", window[0]));
            let op = Op::from_symbol(window[1])
                .unwrap_or_else(|| panic!("operator `{}` in {ctx}", window[1]));
            let b: u64 = window[2]
                .parse()
                .unwrap_or_else(|_| panic!("right operand `{}` in {ctx}", window[2]));
            let c: u64 = window[4]
                .trim_end_matches('.')
                .parse()
                .unwrap_or_else(|_| panic!("result `{}` in {ctx}", window[4]));
            assert_eq!(
                op.apply(a, b),
                Some(c),
                "wrong step {a} {} {b} = {c} in {ctx}",
                op.symbol()
            );
            assert!(
                known.contains(&a) && known.contains(&b),
                "operand from nowhere in {ctx}"
            );
            known.insert(c);
            equations.push((a, op, b, c));
            i += 5;
        } else {
            known.extend(numbers_in(words[i]));
            i += 1;
        }
    }
    let equals = words.iter().filter(|w| **w == "=").count();
    assert_eq!(
        equals,
        equations.len(),
        "an `=` outside an `a op b = c` step: {problem:#?}"
    );
    equations
}

#[test]
fn the_same_seed_gives_the_same_problems_and_another_seed_others() {
    let a = task(TaskConfig::default());
    let b = task(TaskConfig::default());
    let c = task(TaskConfig {
        seed: 1,
        ..TaskConfig::default()
    });
    for split in Split::ALL {
        let first = sample(&a, split, 300);
        assert_eq!(first, sample(&b, split, 300));
        assert_eq!(
            first,
            sample(&a, split, 300),
            "a second stream of the same task restarts"
        );
        let other = sample(&c, split, 300);
        let shared = first.iter().zip(&other).filter(|(x, y)| x == y).count();
        assert!(
            shared < 10,
            "{shared} of 300 {split} problems equal under another seed"
        );
    }
}

#[test]
fn no_question_text_is_shared_between_splits() {
    let t = task(TaskConfig::default());
    let mut seen: HashMap<String, Split> = HashMap::new();
    for split in Split::ALL {
        for p in sample(&t, split, 4000) {
            assert_eq!(
                t.split_of(&p.question),
                split,
                "emitted into the wrong split: {p:?}"
            );
            if let Some(other) = seen.insert(p.question.clone(), split) {
                assert_eq!(other, split, "`{}` is in {other} and {split}", p.question);
            }
        }
    }
}

#[test]
fn a_small_question_space_still_keeps_the_splits_apart() {
    // 12 people x 8 goods x 4 counts x 4 prices = 1536 questions: the three streams draw the same
    // texts over and over, and only the hash filter keeps them apart.
    let t = task(TaskConfig {
        max_operand: 5,
        min_steps: 1,
        max_steps: 1,
        templates: vec![Template::Shopping],
        held_out_fraction: 0.3,
        test_fraction: 0.3,
        ..TaskConfig::default()
    });
    let sets: Vec<HashSet<String>> = Split::ALL
        .iter()
        .map(|&s| {
            sample(&t, s, 3000)
                .into_iter()
                .map(|p| p.question)
                .collect()
        })
        .collect();
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        assert!(
            sets[i].is_disjoint(&sets[j]),
            "{} and {} share questions",
            Split::ALL[i],
            Split::ALL[j]
        );
    }
    let distinct: usize = sets.iter().map(HashSet::len).sum();
    assert!(
        distinct > 1000 && distinct <= 1536,
        "{distinct} distinct questions"
    );
}

#[test]
fn every_solution_is_correct_arithmetic_that_ends_in_the_boxed_answer() {
    let configs = [
        TaskConfig::default(),
        TaskConfig {
            seed: 5,
            max_operand: 5,
            ..TaskConfig::default()
        },
        TaskConfig {
            seed: 6,
            max_operand: 99,
            ..TaskConfig::default()
        },
    ];
    for config in configs {
        let t = task(config);
        for split in Split::ALL {
            for p in sample(&t, split, 1500) {
                let equations = checked_equations(&p);
                assert_eq!(equations.len(), p.steps, "{p:#?}");
                assert!(t.config().min_steps <= p.steps && p.steps <= t.config().max_steps);
                let last = equations.last().expect("at least one step").3;
                assert_eq!(p.answer, last.to_string(), "{p:#?}");
                assert!(
                    p.solution
                        .ends_with(&format!(" The answer is \\boxed{{{}}}.", p.answer)),
                    "{p:#?}"
                );
                assert!(
                    p.question.ends_with('?') && !p.question.contains("  "),
                    "{p:#?}"
                );
            }
        }
    }
}

#[test]
fn remainders_leave_less_than_a_box() {
    let t = task(TaskConfig {
        templates: vec![Template::Remainders],
        min_steps: 2,
        ..TaskConfig::default()
    });
    for p in sample(&t, Split::Train, 500) {
        let equations = checked_equations(&p);
        let (box_size, _, boxes, packed) = *equations
            .iter()
            .find(|e| e.1 == Op::Mul)
            .expect("the packing step");
        let (count, _, _, left) = *equations
            .iter()
            .find(|e| e.1 == Op::Sub && e.2 == packed)
            .expect("the leftover step");
        assert!(boxes >= 2 && left >= 1 && left < box_size, "{p:#?}");
        assert_eq!(count / box_size, boxes, "{p:#?}");
    }
}

#[test]
fn the_difficulty_knob_sets_the_step_count_and_the_number_size() {
    for steps in 1..=4 {
        let t = task(TaskConfig {
            min_steps: steps,
            max_steps: steps,
            ..TaskConfig::default()
        });
        let problems = sample(&t, Split::Train, 300);
        assert!(problems.iter().all(|p| p.steps == steps));
        let templates: HashSet<Template> = problems.iter().map(|p| p.template).collect();
        let expected = if steps == 1 { 5 } else { 6 };
        assert_eq!(templates.len(), expected, "templates writing {steps} steps");
    }
    let mean_steps = |config: TaskConfig| {
        let problems = sample(&task(config), Split::Train, 1000);
        problems.iter().map(|p| p.steps as f64).sum::<f64>() / problems.len() as f64
    };
    let easy = mean_steps(TaskConfig {
        max_steps: 2,
        ..TaskConfig::default()
    });
    let hard = mean_steps(TaskConfig {
        min_steps: 3,
        ..TaskConfig::default()
    });
    assert!(
        easy < 1.7 && hard > 3.3,
        "mean steps {easy} (1..=2) and {hard} (3..=4)"
    );

    let median_answer = |max_operand| {
        let t = task(TaskConfig {
            max_operand,
            ..TaskConfig::default()
        });
        let mut answers: Vec<u64> = sample(&t, Split::Train, 1001)
            .iter()
            .map(|p| p.answer.parse().expect("an integer answer"))
            .collect();
        answers.sort_unstable();
        answers[500]
    };
    assert!(median_answer(6) * 3 < median_answer(30));
}

#[test]
fn the_default_task_mixes_all_templates_and_step_counts() {
    let problems = sample(&task(TaskConfig::default()), Split::Train, 2000);
    let mut kinds: HashMap<(Template, usize), usize> = HashMap::new();
    for p in &problems {
        *kinds.entry((p.template, p.steps)).or_default() += 1;
    }
    // 5 templates x 4 step counts + remainders x 3, drawn uniformly (about 87 each).
    assert_eq!(kinds.len(), 23);
    assert!(kinds.values().all(|&n| n > 40), "{kinds:?}");
}

#[test]
fn problems_and_configs_survive_json() {
    let t = task(TaskConfig::default());
    let p = sample(&t, Split::Test, 1).remove(0);
    let json = serde_json::to_string(&p).expect("serialisable");
    assert!(json.contains("\"template\":\""), "{json}");
    assert_eq!(serde_json::from_str::<Problem>(&json).expect("parses"), p);
    let config = TaskConfig {
        seed: 3,
        templates: vec![Template::Ages],
        ..TaskConfig::default()
    };
    let json = serde_json::to_string(&config).expect("serialisable");
    assert_eq!(
        serde_json::from_str::<TaskConfig>(&json).expect("parses"),
        config
    );
    let partial: TaskConfig =
        serde_json::from_str(r#"{"max_steps": 2}"#).expect("defaults fill the rest");
    assert_eq!(
        partial,
        TaskConfig {
            max_steps: 2,
            ..TaskConfig::default()
        }
    );
    assert!(serde_json::from_str::<TaskConfig>(r#"{"max_step": 2}"#).is_err());
    assert_eq!(
        serde_json::to_string(&Split::HeldOut).expect("serialisable"),
        "\"held_out\""
    );
}

#[test]
fn bad_settings_are_refused_by_name() {
    let cases = [
        (
            TaskConfig {
                min_steps: 0,
                ..TaskConfig::default()
            },
            "min_steps",
        ),
        (
            TaskConfig {
                min_steps: 3,
                max_steps: 2,
                ..TaskConfig::default()
            },
            "max_steps",
        ),
        (
            TaskConfig {
                max_steps: 5,
                ..TaskConfig::default()
            },
            "max_steps",
        ),
        (
            TaskConfig {
                max_operand: 4,
                ..TaskConfig::default()
            },
            "max_operand",
        ),
        (
            TaskConfig {
                held_out_fraction: 0.0,
                ..TaskConfig::default()
            },
            "held_out_fraction",
        ),
        (
            TaskConfig {
                test_fraction: f64::NAN,
                ..TaskConfig::default()
            },
            "test_fraction",
        ),
        (
            TaskConfig {
                held_out_fraction: 0.5,
                test_fraction: 0.5,
                ..TaskConfig::default()
            },
            "test_fraction",
        ),
        (
            TaskConfig {
                templates: vec![],
                ..TaskConfig::default()
            },
            "templates",
        ),
        (
            TaskConfig {
                templates: vec![Template::Remainders],
                max_steps: 1,
                ..TaskConfig::default()
            },
            "templates",
        ),
    ];
    for (config, field) in cases {
        let message = ProceduralTask::new(config)
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains(&format!("TaskConfig.{field}")),
            "{message}"
        );
    }
}
