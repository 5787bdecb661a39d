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
/// Deepest nesting the expression parsers follow (counted per recursive rule, so that no input
/// can overflow a 1 MiB stack).
pub const MAX_DEPTH: usize = 200;
/// Deepest expression tree kept after a parse: operator chains (`a/b/c`, `n!!`, `x^2^2`) grow a
/// tree without recursing in the parser, and every later walk of the tree recurses once per level.
pub const MAX_TREE_DEPTH: usize = 256;

/// Most stack one check may use below the frame that made its budget. Depth counts bound the
/// recursion in levels, but a level's frames differ by an order of magnitude between debug and
/// release builds (about 10 KiB per `\sin` level in debug); this bounds it in bytes, so that a
/// check fits a 1 MiB thread with half of it left to its caller.
pub const MAX_STACK_BYTES: usize = 512 * 1024;

/// An address in the current stack frame.
#[inline(always)]
fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// A deadline checked inside loops and recursion; checking the clock costs a few ns, so it is
/// consulted every 64 steps. Every step also checks the stack used since the budget was made.
#[derive(Debug, Clone)]
pub struct Budget {
    start: Instant,
    limit: Duration,
    steps: u64,
    stack_base: usize,
}

impl Budget {
    /// A budget of `limit` starting now, at the caller's stack depth.
    pub fn new(limit: Duration) -> Self {
        Self {
            start: Instant::now(),
            limit,
            steps: 0,
            stack_base: stack_position(),
        }
    }

    /// Counts one unit of work; fails once the deadline has passed or the recursion has used
    /// more than [`MAX_STACK_BYTES`] of stack.
    pub fn tick(&mut self) -> Result<(), BudgetError> {
        self.steps += 1;
        // `abs_diff`: correct whichever way the stack grows.
        if stack_position().abs_diff(self.stack_base) > MAX_STACK_BYTES {
            return Err(BudgetError::Limit(format!(
                "nesting deeper than {} KiB of stack allows",
                MAX_STACK_BYTES / 1024
            )));
        }
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
