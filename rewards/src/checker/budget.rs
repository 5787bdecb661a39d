//! The hard cost bound of one check: a wall-clock deadline plus step, depth and size limits.

use std::time::{Duration, Instant};

/// Why a check stopped before it concluded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The wall-clock budget ran out.
    #[error("over the time budget of {0:?}")]
    Timeout(Duration),
    /// An input exceeded a size, depth or exponent limit.
    #[error("{0}")]
    Limit(String),
}

/// Longest answer (in bytes) that is parsed; longer answers compare as strings only.
pub const MAX_ANSWER_BYTES: usize = 4096;
/// Deepest nesting the expression parser follows.
pub const MAX_DEPTH: usize = 200;

/// A deadline checked inside loops and recursion; checking the clock costs a few ns, so it is
/// consulted every 64 steps.
#[derive(Debug, Clone)]
pub struct Budget {
    start: Instant,
    limit: Duration,
    steps: u64,
}

impl Budget {
    /// A budget of `limit` starting now.
    pub fn new(limit: Duration) -> Self {
        Self {
            start: Instant::now(),
            limit,
            steps: 0,
        }
    }

    /// Counts one unit of work; fails once the deadline has passed.
    pub fn tick(&mut self) -> Result<(), BudgetError> {
        self.steps += 1;
        if self.steps.is_multiple_of(64) && self.start.elapsed() > self.limit {
            return Err(BudgetError::Timeout(self.limit));
        }
        Ok(())
    }

    /// Checks the deadline now.
    pub fn check(&self) -> Result<(), BudgetError> {
        if self.start.elapsed() > self.limit {
            return Err(BudgetError::Timeout(self.limit));
        }
        Ok(())
    }
}
