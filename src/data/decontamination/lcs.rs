//! The longest common subsequence of two word sequences, the near-copy test for questions too
//! short to share an n-gram (and for edits that break every n-gram of a medium-length one).

/// Length of the longest common subsequence of `a` and `b`, in O(|a|·|b|) time and O(|b|) memory.
pub fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        // `diagonal` is the previous row's value one column to the left.
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The LCS divided by the longer sequence's length: 1 for equal sequences, below 1 as soon as
/// either has a word the other lacks; 0 when both are empty.
pub fn lcs_similarity<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
    let longer = a.len().max(b.len());
    if longer == 0 {
        return 0.0;
    }
    lcs_len(a, b) as f64 / longer as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_of_known_pairs() {
        fn words(s: &str) -> Vec<&str> {
            s.split(' ').collect()
        }
        assert_eq!(lcs_len(&words("a b c d"), &words("a c d")), 3);
        assert_eq!(lcs_len(&words("a b c"), &words("c b a")), 1);
        assert_eq!(lcs_len(&words("x y"), &words("z")), 0);
        assert_eq!(lcs_len::<u32>(&[], &[1, 2]), 0);
        // "ABCBDAB" / "BDCABA": the textbook pair, LCS 4 ("BCBA").
        let (a, b): (Vec<char>, Vec<char>) =
            ("ABCBDAB".chars().collect(), "BDCABA".chars().collect());
        assert_eq!(lcs_len(&a, &b), 4);
        assert_eq!(lcs_len(&b, &a), 4);
    }

    #[test]
    fn similarity_is_relative_to_the_longer() {
        let a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(lcs_similarity(&a, &a), 1.0);
        assert!((lcs_similarity(&a, &a[1..]) - 0.9).abs() < 1e-12);
        assert_eq!(lcs_similarity::<u32>(&[], &[]), 0.0);
    }
}
