//! The verifier training recipes reward with.

use std::sync::Arc;

use mathrl_rewards::{Verdict, Verifier};

// TEMPORARY until the checker lands: compares the last \boxed{...} with the gold string.
struct LastBoxed;

impl Verifier for LastBoxed {
    fn verify(&self, response: &str, gold: &str, _dataset: Option<&str>) -> Verdict {
        let Some(start) = response.rfind("\\boxed{") else {
            return Verdict::unparseable(None, "no boxed answer");
        };
        let rest = &response[start + 7..];
        let Some(end) = rest.find('}') else {
            return Verdict::unparseable(None, "unterminated box");
        };
        let answer = rest[..end].trim().to_string();
        if answer == gold.trim() {
            Verdict::correct(answer)
        } else {
            Verdict::incorrect(answer)
        }
    }
}

/// The strict checker profile: the RL reward must not be gameable.
pub fn default_verifier() -> Arc<dyn Verifier> {
    Arc::new(LastBoxed)
}
