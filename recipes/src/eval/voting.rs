//! Picking one response out of N samples: Maj@N (the most common extracted answer), RM@N (the
//! highest reward-model score) and the RM-weighted vote of SFT-data evolution (the answer with
//! the largest total σ(score), for questions without a gold answer).
//!
//! Answers are compared as the checker's extracted, normalised strings, as the reference's
//! `rm_maj_eval.py` counts them; responses without an answer do not vote. Ties go to the answer
//! seen first (Python's `Counter.most_common` order), so a vote is deterministic.

/// The index of a response carrying the most common answer (the first such response), or `None`
/// when no response has an answer.
pub fn majority_vote(answers: &[Option<String>]) -> Option<usize> {
    weighted_vote(answers, &vec![1.0; answers.len()])
}

/// The index of the response with the highest score (the first on ties; NaN never wins), or
/// `None` when there is none.
pub fn best_by_score(scores: &[f32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        if best.is_none_or(|b| s > scores[b]) {
            best = Some(i);
        }
    }
    best
}

/// The index of the best-scored response among those carrying the answer with the largest total
/// σ(RM score); `None` when no response has an answer. σ keeps every vote positive, so a
/// negative score still counts as a (weak) vote.
pub fn rm_weighted_vote(answers: &[Option<String>], scores: &[f32]) -> Option<usize> {
    let weights: Vec<f64> = scores
        .iter()
        .map(|&s| 1.0 / (1.0 + (-f64::from(s)).exp()))
        .collect();
    let winner = weighted_vote(answers, &weights)?;
    let answer = answers[winner].as_deref();
    let same: Vec<f32> = answers
        .iter()
        .zip(scores)
        .map(|(a, &s)| if a.as_deref() == answer { s } else { f32::NAN })
        .collect();
    best_by_score(&same).or(Some(winner))
}

/// The first response of the answer with the largest total weight.
fn weighted_vote(answers: &[Option<String>], weights: &[f64]) -> Option<usize> {
    // (answer, first index, total weight), in order of first appearance.
    let mut tallies: Vec<(&str, usize, f64)> = Vec::new();
    for (i, (answer, &w)) in answers.iter().zip(weights).enumerate() {
        let Some(answer) = answer.as_deref() else {
            continue;
        };
        match tallies.iter_mut().find(|(a, _, _)| *a == answer) {
            Some(tally) => tally.2 += w,
            None => tallies.push((answer, i, w)),
        }
    }
    let mut best: Option<(usize, f64)> = None;
    for &(_, first, total) in &tallies {
        if best.is_none_or(|(_, t)| total > t) {
            best = Some((first, total));
        }
    }
    best.map(|(first, _)| first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(list: &[Option<&str>]) -> Vec<Option<String>> {
        list.iter().map(|a| a.map(str::to_string)).collect()
    }

    #[test]
    fn the_most_common_answer_wins_and_ties_go_to_the_first_seen() {
        let a = answers(&[Some("3"), None, Some("5"), Some("5"), Some("3"), Some("5")]);
        assert_eq!(majority_vote(&a), Some(2));
        let tie = answers(&[Some("7"), Some("3"), Some("3"), Some("7")]);
        assert_eq!(majority_vote(&tie), Some(0));
        assert_eq!(majority_vote(&answers(&[None, None])), None);
        assert_eq!(majority_vote(&[]), None);
    }

    #[test]
    fn the_best_score_wins_and_nan_never_does() {
        assert_eq!(best_by_score(&[0.1, 2.0, -1.0, 2.0]), Some(1));
        assert_eq!(best_by_score(&[f32::NAN, -3.0]), Some(1));
        assert_eq!(best_by_score(&[f32::NAN]), None);
        assert_eq!(best_by_score(&[]), None);
    }

    #[test]
    fn rm_weights_can_overturn_a_plain_majority() {
        // "1" has two weak votes (σ(-4) ≈ 0.018 each), "2" one confident vote (σ(4) ≈ 0.98).
        let a = answers(&[Some("1"), Some("1"), Some("2"), None]);
        let scores = [-4.0, -4.0, 4.0, 9.0];
        assert_eq!(majority_vote(&a), Some(0));
        assert_eq!(rm_weighted_vote(&a, &scores), Some(2));
        // Within the winning answer the best-scored response is returned.
        let a = answers(&[Some("1"), Some("1"), Some("2")]);
        assert_eq!(rm_weighted_vote(&a, &[0.5, 3.0, 1.0]), Some(1));
    }
}
