//! Splitting an optimiser step's rows into micro-batches by padded tokens as well as by count.
//!
//! A micro-batch's activations grow with rows × padded length, not with rows alone: eight
//! 2,048-token completions need sixteen times the memory of eight 128-token ones. The GRPO and
//! SFT learners sort their rows by length and cut them into contiguous ranges whose padded size
//! stays under a token budget, so one long group cannot blow the memory a step was sized for.
//! The loss normalisers use the step's totals (`StepNormaliser`, `TokenNormaliser::Tokens`), so
//! the split does not change the update.

use std::ops::Range;

/// Contiguous ranges covering rows `0..lengths.len()` in order, each of at most `max_rows` rows
/// whose count times the longest length in the range is at most `max_tokens` (the tokens of the
/// range padded to its longest row). A row longer than `max_tokens` goes alone. Greedy: each
/// range takes as many rows as fit, which, with rows sorted by length, gives the fewest ranges.
/// Limits of 0 are read as 1.
pub fn micro_batch_ranges(
    lengths: &[usize],
    max_rows: usize,
    max_tokens: usize,
) -> Vec<Range<usize>> {
    let (max_rows, max_tokens) = (max_rows.max(1), max_tokens.max(1));
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < lengths.len() {
        let mut end = start + 1;
        let mut longest = lengths[start];
        while end < lengths.len() && end - start < max_rows {
            let longer = longest.max(lengths[end]);
            if (end - start + 1) * longer > max_tokens {
                break;
            }
            longest = longer;
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_cases() {
        assert!(micro_batch_ranges(&[], 4, 100).is_empty());
        // By count only.
        assert_eq!(
            micro_batch_ranges(&[1, 1, 1, 1, 1], 2, 100),
            vec![0..2, 2..4, 4..5]
        );
        // By tokens: 3 × 30 ≤ 100, then 2 × 50, then the 120-token row alone.
        assert_eq!(
            micro_batch_ranges(&[10, 20, 30, 40, 50, 120], 8, 100),
            vec![0..3, 3..5, 5..6]
        );
        // A row over the budget goes alone, wherever it is.
        assert_eq!(micro_batch_ranges(&[500, 1, 1], 8, 100), vec![0..1, 1..3]);
    }

    proptest! {
        #[test]
        fn ranges_cover_in_order_fit_and_are_greedy(
            lengths in proptest::collection::vec(0usize..300, 0..60),
            max_rows in 1usize..10,
            max_tokens in 1usize..1000,
        ) {
            let ranges = micro_batch_ranges(&lengths, max_rows, max_tokens);
            let padded = |r: &Range<usize>| {
                r.len() * lengths[r.clone()].iter().copied().max().unwrap_or(0)
            };
            let mut next = 0;
            for (i, r) in ranges.iter().enumerate() {
                prop_assert_eq!(r.start, next);
                prop_assert!(!r.is_empty() && r.len() <= max_rows);
                prop_assert!(r.len() == 1 || padded(r) <= max_tokens, "{:?} over budget", r);
                // Greedy: the next row would not have fitted.
                if i + 1 < ranges.len() {
                    let longer = r.start..r.end + 1;
                    prop_assert!(longer.len() > max_rows || padded(&longer) > max_tokens);
                }
                next = r.end;
            }
            prop_assert_eq!(next, lengths.len());
        }
    }
}
