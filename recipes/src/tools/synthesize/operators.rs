//! Query evolution: the operators that turn a kept problem into a new one (add a constraint,
//! change the numbers, combine it with another problem, make it harder), their instructions, and
//! the seeded choice of one operator per problem.

use anyhow::{bail, Result};
use mathrl::rng::{mix64, GOLDEN_GAMMA};
use serde::{Deserialize, Serialize};

/// One way of evolving a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operator {
    /// Add a condition the answer must satisfy.
    AddConstraint,
    /// Keep the structure, change the numbers.
    ChangeNumbers,
    /// Merge the problem with another of the same round into one.
    Combine,
    /// A harder variant: more steps, a less direct question.
    Harder,
}

impl Operator {
    /// Every operator, in config order.
    pub const ALL: [Operator; 4] = [
        Operator::AddConstraint,
        Operator::ChangeNumbers,
        Operator::Combine,
        Operator::Harder,
    ];
}

/// Settings of query evolution (rounds after the first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryEvolutionConfig {
    /// Operators to choose from, one per problem, drawn from the run's seed: any of
    /// `add-constraint`, `change-numbers`, `combine`, `harder` (default: all four).
    pub operators: Vec<Operator>,
    /// Evolved problems sampled per problem kept in the previous round (default 2).
    pub per_problem: usize,
    /// The add-a-constraint instruction; `{question}` is replaced by the problem.
    pub add_constraint_prompt: String,
    /// The change-the-numbers instruction; `{question}` is replaced by the problem.
    pub change_numbers_prompt: String,
    /// The combine instruction; `{question}` and `{other}` are replaced by the problem and
    /// another problem kept in the same round.
    pub combine_prompt: String,
    /// The make-it-harder instruction; `{question}` is replaced by the problem.
    pub harder_prompt: String,
}

/// How every instruction asks for its reply, as `synthesize` parses it.
const REPLY_FORM: &str = "then solve it step by step and put the final answer within \\boxed{}.\n\nProblem: {question}\n\nReply as:\nProblem: <the new problem>\nSolution: <the solution>\n";

impl Default for QueryEvolutionConfig {
    fn default() -> Self {
        let prompt = |task: &str| format!("{task} {REPLY_FORM}");
        Self {
            operators: Operator::ALL.to_vec(),
            per_problem: 2,
            add_constraint_prompt: prompt("Rewrite the following math problem with one more constraint or condition that the answer must satisfy, so that it still has a single final answer,"),
            change_numbers_prompt: prompt("Rewrite the following math problem with different numbers, keeping its structure, so that it still has a single final answer,"),
            combine_prompt: format!("Combine the following math problem with this second one into a single problem whose solution needs both, with a single final answer, {}", REPLY_FORM.replace("Problem: {question}", "Problem: {question}\n\nSecond problem: {other}")),
            harder_prompt: prompt("Write a harder version of the following math problem, needing more reasoning steps, with a single final answer,"),
        }
    }
}

impl QueryEvolutionConfig {
    /// The instruction template of `operator`.
    pub fn prompt(&self, operator: Operator) -> &str {
        match operator {
            Operator::AddConstraint => &self.add_constraint_prompt,
            Operator::ChangeNumbers => &self.change_numbers_prompt,
            Operator::Combine => &self.combine_prompt,
            Operator::Harder => &self.harder_prompt,
        }
    }

    /// The instruction evolving `question` by `operator` (`other`: the combine partner).
    pub fn instruction(&self, operator: Operator, question: &str, other: &str) -> String {
        self.prompt(operator)
            .replace("{other}", other)
            .replace("{question}", question)
    }

    /// Errors name the config key: no operator, or a prompt without its placeholders.
    pub fn validate(&self) -> Result<()> {
        if self.operators.is_empty() {
            bail!("config key `evolution.operators`: give at least one operator");
        }
        for operator in Operator::ALL {
            let key = match operator {
                Operator::AddConstraint => "add_constraint_prompt",
                Operator::ChangeNumbers => "change_numbers_prompt",
                Operator::Combine => "combine_prompt",
                Operator::Harder => "harder_prompt",
            };
            let prompt = self.prompt(operator);
            if !prompt.contains("{question}") {
                bail!("config key `evolution.{key}` must contain `{{question}}`");
            }
            if operator == Operator::Combine && !prompt.contains("{other}") {
                bail!("config key `evolution.{key}` must contain `{{other}}`");
            }
        }
        Ok(())
    }
}

/// The operator evolving problem `index` (of `count` kept in the previous round) in `round`,
/// and for `combine` the index of its partner: a pure function of the run's `seed`, the round
/// and the index. `combine` is left out when there is no other problem to combine with.
pub fn choose(
    operators: &[Operator],
    seed: u64,
    round: usize,
    index: usize,
    count: usize,
) -> Option<(Operator, Option<usize>)> {
    let usable: Vec<Operator> = operators
        .iter()
        .copied()
        .filter(|&op| op != Operator::Combine || count > 1)
        .collect();
    if usable.is_empty() {
        return None;
    }
    let draw = mix64(seed ^ mix64(GOLDEN_GAMMA.wrapping_mul(round as u64 + 1) ^ index as u64));
    let operator = usable[(draw % usable.len() as u64) as usize];
    let partner = (operator == Operator::Combine).then(|| {
        // Any other problem: an offset of 1..count from this one, wrapping around.
        let offset = 1 + (mix64(draw) % (count as u64 - 1)) as usize;
        (index + offset) % count
    });
    Some((operator, partner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_is_seeded_spread_over_the_operators_and_never_combines_with_itself() {
        let all = Operator::ALL;
        let picks: Vec<_> = (0..200)
            .map(|i| choose(&all, 7, 2, i, 200).unwrap())
            .collect();
        let again: Vec<_> = (0..200)
            .map(|i| choose(&all, 7, 2, i, 200).unwrap())
            .collect();
        assert_eq!(picks, again);
        let other_seed: Vec<_> = (0..200)
            .map(|i| choose(&all, 8, 2, i, 200).unwrap())
            .collect();
        assert_ne!(picks, other_seed);
        let other_round: Vec<_> = (0..200)
            .map(|i| choose(&all, 7, 3, i, 200).unwrap())
            .collect();
        assert_ne!(picks, other_round);
        for op in all {
            let n = picks.iter().filter(|(o, _)| *o == op).count();
            assert!((25..=75).contains(&n), "{op:?} chosen {n} times of 200");
        }
        for (i, (op, partner)) in picks.iter().enumerate() {
            match op {
                Operator::Combine => {
                    let p = partner.unwrap();
                    assert!(p != i && p < 200, "problem {i} combined with {p}");
                }
                _ => assert_eq!(*partner, None),
            }
        }
    }

    #[test]
    fn a_lone_problem_is_not_combined_and_a_single_operator_is_always_chosen() {
        for i in 0..50 {
            let (op, _) = choose(&Operator::ALL, i, 2, 0, 1).unwrap();
            assert_ne!(op, Operator::Combine);
            assert_eq!(
                choose(&[Operator::Harder], i, 2, i as usize, 9),
                Some((Operator::Harder, None))
            );
        }
        assert_eq!(choose(&[Operator::Combine], 1, 2, 0, 1), None);
        assert_eq!(
            choose(&[Operator::Combine], 1, 2, 0, 2),
            Some((Operator::Combine, Some(1)))
        );
    }

    #[test]
    fn instructions_fill_the_placeholders_and_bad_prompts_name_their_key() {
        let config = QueryEvolutionConfig::default();
        config.validate().unwrap();
        let text = config.instruction(Operator::Combine, "What is 2+3?", "What is 4+4?");
        assert!(
            text.contains("What is 2+3?") && text.contains("What is 4+4?"),
            "{text}"
        );
        assert!(
            !text.contains("{question}") && !text.contains("{other}"),
            "{text}"
        );
        let bad = QueryEvolutionConfig {
            combine_prompt: "Combine {question}.".into(),
            ..config.clone()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("evolution.combine_prompt") && err.contains("{other}"),
            "{err}"
        );
        let bad = QueryEvolutionConfig {
            harder_prompt: "Harder.".into(),
            ..config.clone()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("evolution.harder_prompt"));
        let none = QueryEvolutionConfig {
            operators: vec![],
            ..config
        };
        assert!(none
            .validate()
            .unwrap_err()
            .to_string()
            .contains("evolution.operators"));
    }
}
