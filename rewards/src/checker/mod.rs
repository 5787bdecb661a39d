//! The math answer checker: extraction from a response with each data set's rule, the
//! normalisation of the Qwen2.5-Math evaluation, and equivalence in two profiles — `qwen25-math`
//! (the reference grader's verdicts, quirks included) and `strict` (mathematically right). Every
//! check runs under a hard budget and ends `Correct`, `Incorrect` or `Unparseable` with a reason.

mod budget;
mod expr;
mod extract;
mod latex;
mod latex_lexer;
mod normalize;
mod number;
mod pyexpr;
mod rational;
mod reference;
mod strict;
mod tolerance;
mod units;
mod words;

use std::str::FromStr;
use std::time::Duration;

use budget::Budget;
pub use budget::{BudgetError, MAX_ANSWER_BYTES};
use extract::{extract_normalized, is_choice_set, parse_gold_with, ExtractMode};

use crate::shaping::Verifier;
use crate::verdict::Verdict;

/// Default wall-clock budget of one check.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);
/// Longest response (bytes) read; longer responses are cut to their last this-many bytes,
/// which always hold the final answer.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest gold (bytes) read; a MATH gold may be a whole solution, so it is as long as the
/// longest response. A longer gold gets `Unparseable` at once.
pub const MAX_GOLD_BYTES: usize = MAX_RESPONSE_BYTES;

/// Which verdicts the checker gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckerProfile {
    /// The reference grader of the Qwen2.5-Math evaluation, quirks included (`qwen25-math`).
    Qwen25Math,
    /// Mathematically right verdicts (`strict`); see CHECKER.md for every difference.
    Strict,
}

/// An unknown profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown checker profile {0:?}: expected \"qwen25-math\" or \"strict\"")]
pub struct UnknownProfile(pub String);

impl FromStr for CheckerProfile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qwen25-math" => Ok(Self::Qwen25Math),
            "strict" => Ok(Self::Strict),
            other => Err(UnknownProfile(other.to_string())),
        }
    }
}

impl std::fmt::Display for CheckerProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Qwen25Math => "qwen25-math",
            Self::Strict => "strict",
        })
    }
}

/// The answer checker of one profile with a per-check budget.
#[derive(Debug, Clone)]
pub struct Checker {
    profile: CheckerProfile,
    budget: Duration,
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl Checker {
    /// A checker with the default budget of 50 ms per check.
    pub fn new(profile: CheckerProfile) -> Self {
        Self {
            profile,
            budget: DEFAULT_BUDGET,
        }
    }

    /// The same checker with another per-check budget.
    pub fn with_budget(self, budget: Duration) -> Self {
        Self { budget, ..self }
    }

    /// The profile.
    pub fn profile(&self) -> CheckerProfile {
        self.profile
    }

    fn mode(&self) -> ExtractMode {
        match self.profile {
            CheckerProfile::Qwen25Math => ExtractMode::Reference,
            CheckerProfile::Strict => ExtractMode::Strict,
        }
    }

    /// Extract from a full response with the data set's rule, normalise, parse the gold, compare.
    pub fn check_response(&self, response: &str, gold: &str, dataset: Option<&str>) -> Verdict {
        let dataset = dataset.unwrap_or("math");
        if gold.len() > MAX_GOLD_BYTES {
            // Refused before any work: reading a megabyte gold took seconds (issue 18).
            return Verdict::unparseable(
                None,
                format!("gold answer longer than {MAX_GOLD_BYTES} bytes"),
            );
        }
        let response = tail(response, MAX_RESPONSE_BYTES);
        let Some(pred) = extract_normalized(response, dataset, self.mode()) else {
            return Verdict::unparseable(None, "no answer found (unterminated \\boxed)");
        };
        if pred.is_empty() {
            return Verdict::unparseable(Some(pred), "no answer found");
        }
        let gold = parse_gold_with(gold, dataset, self.profile == CheckerProfile::Strict);
        self.compare(pred, &gold, is_choice_set(dataset))
    }

    /// Grade a bare final answer (as if the response were `The final answer is $\boxed{pred}$.`).
    pub fn check_answer(&self, pred: &str, gold: &str, dataset: Option<&str>) -> Verdict {
        let pred = tail(pred, MAX_RESPONSE_BYTES);
        self.check_response(
            &format!("The final answer is $\\boxed{{{pred}}}$."),
            gold,
            dataset,
        )
    }

    /// Like [`Checker::check_response`] on bytes, decoding invalid UTF-8 lossily.
    pub fn check_response_bytes(
        &self,
        response: &[u8],
        gold: &str,
        dataset: Option<&str>,
    ) -> Verdict {
        let response = if response.len() > MAX_RESPONSE_BYTES {
            &response[response.len() - MAX_RESPONSE_BYTES..]
        } else {
            response
        };
        self.check_response(&String::from_utf8_lossy(response), gold, dataset)
    }

    /// Compares two normalised answers.
    fn compare(&self, pred: String, gold: &str, choices: bool) -> Verdict {
        let mut budget = Budget::new(self.budget);
        if pred.len() > MAX_ANSWER_BYTES || gold.len() > MAX_ANSWER_BYTES {
            return if pred == gold {
                Verdict::correct(pred)
            } else {
                Verdict::unparseable(
                    Some(pred),
                    format!("answer longer than {MAX_ANSWER_BYTES} bytes"),
                )
            };
        }
        let result = match self.profile {
            CheckerProfile::Qwen25Math => reference::ReferenceGrader {
                budget: &mut budget,
            }
            .math_equal(&pred, gold, 0),
            CheckerProfile::Strict => strict::StrictGrader {
                budget: &mut budget,
                choices,
            }
            .equal(&pred, gold, 0),
        };
        match result {
            Ok(true) => Verdict::correct(pred),
            Ok(false) => Verdict::incorrect(pred),
            Err(e) => Verdict::unparseable(Some(pred), e.to_string()),
        }
    }
}

impl Verifier for Checker {
    fn verify(&self, response: &str, gold: &str, dataset: Option<&str>) -> Verdict {
        self.check_response(response, gold, dataset)
    }
}

/// The normalised answer of a response under the data set's rule (reference extraction).
pub fn extract_answer(response: &str, dataset: Option<&str>) -> Option<String> {
    extract_normalized(
        tail(response, MAX_RESPONSE_BYTES),
        dataset.unwrap_or("math"),
        ExtractMode::Reference,
    )
    .filter(|s| !s.is_empty())
}

/// The normalised gold answer as the reference's `parse_ground_truth` yields it.
pub fn parse_gold(gold: &str, dataset: Option<&str>) -> String {
    parse_gold_with(gold, dataset.unwrap_or("math"), false)
}
