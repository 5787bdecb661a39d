//! The verdict of an answer check.

use serde::{Deserialize, Serialize};

/// Whether a response's answer matches the gold answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The extracted answer is equivalent to the gold answer.
    Correct,
    /// An answer was found and it is not equivalent.
    Incorrect,
    /// No answer could be extracted or compared (the reason says why); scored as incorrect.
    Unparseable,
}

/// An outcome, the normalised answer that was compared, and why when it could not be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// The extracted, normalised answer, when one was found.
    pub extracted: Option<String>,
    /// Why the check could not conclude (unparseable, over budget), when it could not.
    pub reason: Option<String>,
}

impl Verdict {
    /// A correct verdict for `extracted`.
    pub fn correct(extracted: String) -> Self {
        Self {
            outcome: Outcome::Correct,
            extracted: Some(extracted),
            reason: None,
        }
    }

    /// An incorrect verdict for `extracted`.
    pub fn incorrect(extracted: String) -> Self {
        Self {
            outcome: Outcome::Incorrect,
            extracted: Some(extracted),
            reason: None,
        }
    }

    /// An unparseable verdict with its reason.
    pub fn unparseable(extracted: Option<String>, reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Unparseable,
            extracted,
            reason: Some(reason.into()),
        }
    }

    /// Whether the outcome is `Correct`.
    pub fn is_correct(&self) -> bool {
        self.outcome == Outcome::Correct
    }
}
