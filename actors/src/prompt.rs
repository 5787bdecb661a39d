//! The prompt stream: the training questions (`mathrl::data::QaRecord`s), cycled epoch after
//! epoch in a seeded shuffle.

use mathrl_learners::{DataCursor, SeededRng};

/// Cycles through prompts: each epoch visits every prompt once, in an order shuffled by
/// `seed` and the epoch number, so a resumed run continues with exactly the same order.
#[derive(Debug, Clone)]
pub struct PromptStream {
    len: usize,
    seed: u64,
    cursor: DataCursor,
    order: Vec<usize>,
}

impl PromptStream {
    /// A stream over `len` prompts, starting at epoch 0, position 0.
    pub fn new(len: usize, seed: u64) -> Self {
        let mut stream = Self {
            len,
            seed,
            cursor: DataCursor::default(),
            order: Vec::new(),
        };
        stream.shuffle_epoch();
        stream
    }

    /// Moves to `cursor` (from a checkpoint); positions past the end start the next epoch.
    pub fn seek(&mut self, cursor: DataCursor) {
        self.cursor = cursor;
        self.shuffle_epoch();
        if self.len > 0 && self.cursor.position as usize >= self.len {
            self.cursor.epoch += 1;
            self.cursor.position = 0;
            self.shuffle_epoch();
        }
    }

    /// Where the stream stands (what a checkpoint stores).
    pub fn cursor(&self) -> DataCursor {
        self.cursor
    }

    /// The next `n` prompt indices (fewer only when there are no prompts).
    pub fn take(&mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        if self.len == 0 {
            return out;
        }
        while out.len() < n {
            out.push(self.order[self.cursor.position as usize]);
            self.cursor.position += 1;
            // Roll over at once, so the cursor a checkpoint stores is canonical (never `len`).
            if self.cursor.position as usize >= self.len {
                self.cursor.epoch += 1;
                self.cursor.position = 0;
                self.shuffle_epoch();
            }
        }
        out
    }

    fn shuffle_epoch(&mut self) {
        self.order = (0..self.len).collect();
        // Mix the epoch in with an odd multiplier so neighbouring epochs get unrelated orders.
        let seed = self.seed ^ self.cursor.epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        SeededRng::new(seed).shuffle(&mut self.order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_is_a_permutation_and_epochs_differ() {
        let mut s = PromptStream::new(10, 1);
        let e0 = s.take(10);
        let e1 = s.take(10);
        for epoch in [&e0, &e1] {
            let mut sorted = epoch.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(e0, e1);
        assert_eq!(
            s.cursor(),
            DataCursor {
                epoch: 2,
                position: 0
            }
        );
    }

    #[test]
    fn seeking_resumes_the_same_sequence() {
        let mut a = PromptStream::new(7, 3);
        a.take(9);
        let cursor = a.cursor();
        let rest: Vec<usize> = a.take(12);
        let mut b = PromptStream::new(7, 3);
        b.seek(cursor);
        assert_eq!(b.take(12), rest);
        assert_eq!(
            cursor,
            DataCursor {
                epoch: 1,
                position: 2
            }
        );
    }

    #[test]
    fn batches_straddle_epochs() {
        let mut s = PromptStream::new(3, 0);
        assert_eq!(s.take(4).len(), 4);
        assert!(PromptStream::new(0, 0).take(4).is_empty());
    }
}
