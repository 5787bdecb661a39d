//! Splitting a GRPO step's rows into mini-batches, one optimiser update each (verl's
//! `ppo_mini_batch_size`; TRL's `steps_per_generation`).
//!
//! A step's completions are sampled once; with `grpo.mini_batch_size` the learner makes one
//! update per mini-batch, and with `grpo.num_iterations = μ` it goes over all mini-batches μ
//! times (epochs outer, mini-batches inner, as verl's `ppo_epochs`). Advantages are computed per
//! group over the whole step first, so a mini-batch is a slice of rows that already carry them.
//!
//! Mini-batches hold whole groups, taken in the batch's order, as many as fit: the groups'
//! completions are ranked against each other, so a group seen by two different updates would
//! mix two policies in one comparison. Only a group larger than the mini-batch is cut, into
//! pieces of `mini_batch_size`. There is no shuffling (verl's `shuffle = false`): every epoch
//! visits the mini-batches in the same order, so a step is deterministic and the k mini-batches
//! of a step are the k steps one would make by feeding them one at a time. The prompts of a step
//! are already in the data loader's seeded order.
//!
//! Micro-batches (memory) are cut inside each mini-batch ([`crate::micro_batch`]).

use std::ops::Range;

/// Contiguous ranges covering rows `0..group_rows.iter().sum()` in order, one per mini-batch of
/// at most `mini_batch_size` rows, made of whole groups (group `g` has `group_rows[g]` rows,
/// consecutive), greedily: each mini-batch takes groups while they fit. A group larger than
/// `mini_batch_size` is cut into pieces of `mini_batch_size` (its last piece shorter), each its
/// own mini-batch. `mini_batch_size = 0` means one mini-batch of all rows (none when there are
/// no rows). Groups with no rows are skipped.
pub fn mini_batch_ranges(group_rows: &[usize], mini_batch_size: usize) -> Vec<Range<usize>> {
    let total: usize = group_rows.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    if mini_batch_size == 0 {
        return std::iter::once(0..total).collect();
    }
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for &rows in group_rows.iter().filter(|&&r| r > 0) {
        if end - start + rows > mini_batch_size && end > start {
            ranges.push(start..end);
            start = end;
        }
        if rows > mini_batch_size {
            let group_end = end + rows;
            while end < group_end {
                let piece_end = (end + mini_batch_size).min(group_end);
                ranges.push(end..piece_end);
                end = piece_end;
            }
            start = end;
        } else {
            end += rows;
        }
    }
    if end > start {
        ranges.push(start..end);
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_cases() {
        assert!(mini_batch_ranges(&[], 4).is_empty());
        assert!(mini_batch_ranges(&[0, 0], 0).is_empty());
        // 0: the whole step.
        assert_eq!(mini_batch_ranges(&[4, 4, 4], 0), vec![0..12]);
        // Whole groups: two groups of 4 per mini-batch of 8, the remainder last.
        assert_eq!(
            mini_batch_ranges(&[4, 4, 4, 4, 4], 8),
            vec![0..8, 8..16, 16..20]
        );
        // A group that lost a row (no trained token) stays whole; the next one does not fit.
        assert_eq!(mini_batch_ranges(&[3, 4, 4], 8), vec![0..7, 7..11]);
        // Not a multiple of the group size: as many whole groups as fit.
        assert_eq!(mini_batch_ranges(&[4, 4, 4], 6), vec![0..4, 4..8, 8..12]);
        // A group larger than the mini-batch is cut; the groups around it stay whole.
        assert_eq!(
            mini_batch_ranges(&[2, 7, 2, 0, 1], 3),
            vec![0..2, 2..5, 5..8, 8..9, 9..12]
        );
    }

    proptest! {
        #[test]
        fn ranges_cover_in_order_fit_and_keep_groups_whole(
            group_rows in proptest::collection::vec(0usize..10, 0..30),
            mini_batch_size in 1usize..20,
        ) {
            let ranges = mini_batch_ranges(&group_rows, mini_batch_size);
            let mut starts = vec![0];
            for r in &group_rows {
                starts.push(starts.last().unwrap() + r);
            }
            let total = *starts.last().unwrap();
            let mut next = 0;
            for (i, r) in ranges.iter().enumerate() {
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty() && r.len() <= mini_batch_size);
                // A boundary inside a group only where that group is larger than a mini-batch.
                for (g, &rows) in group_rows.iter().enumerate() {
                    let inside = starts[g] < r.end && r.end < starts[g] + rows;
                    prop_assert!(!inside || rows > mini_batch_size, "{:?} cuts group {}", r, g);
                }
                // Greedy: after whole groups, the next whole group would not have fitted (the
                // pieces of a cut group are mini-batches of their own).
                let last = starts.iter().rposition(|&s| s < r.end).unwrap();
                if i + 1 < ranges.len() && group_rows[last] <= mini_batch_size {
                    let next_rows = group_rows[last + 1..].iter().copied().find(|&x| x > 0).unwrap();
                    prop_assert!(r.len() + next_rows > mini_batch_size);
                }
                next = r.end;
            }
            prop_assert_eq!(next, total);
        }
    }
}
