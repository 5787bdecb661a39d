//! The verifier training recipes reward with.

use std::sync::Arc;

use mathrl_rewards::{Checker, CheckerProfile, Verifier};

/// The strict checker profile: the RL reward must not be gameable.
pub fn default_verifier() -> Arc<dyn Verifier> {
    Arc::new(Checker::new(CheckerProfile::Strict))
}
