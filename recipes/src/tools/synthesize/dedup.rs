//! Deduplication of synthesized problems, exactly (whitespace- and case-normalised) and by MinHash
//! near-duplicate detection, against the seeds and every problem seen before — across rounds
//! too, so that no round writes a near copy of an earlier round's problem.

use std::collections::HashSet;

use super::{Candidate, Funnel, SynthesizeConfig};
use crate::tools::minhash::MinHashIndex;

/// The problems seen so far: the seeds and every candidate let through.
#[derive(Debug)]
pub struct Deduplicator {
    exact: HashSet<String>,
    near: MinHashIndex,
}

impl Deduplicator {
    /// Starts from the seed problems, with the config's MinHash settings.
    pub fn new(seeds: &[&str], config: &SynthesizeConfig) -> Self {
        let mut near = MinHashIndex::new(
            config.minhash_ngram,
            config.minhash_bands,
            config.minhash_rows,
            config.near_duplicate_threshold,
        );
        for s in seeds {
            near.insert(s);
        }
        Self {
            exact: seeds.iter().map(|s| normalise(s)).collect(),
            near,
        }
    }

    /// The candidates that are neither exact nor near duplicates of a problem seen before (nor
    /// of each other: the first occurrence stays), counted in `funnel`; they are seen from now on.
    pub fn keep(&mut self, candidates: Vec<Candidate>, funnel: &mut Funnel) -> Vec<Candidate> {
        let mut unique = Vec::new();
        for c in candidates {
            if !self.exact.insert(normalise(&c.question)) {
                funnel.exact_duplicates += 1;
            } else if self.near.insert(&c.question).is_some() {
                funnel.near_duplicates += 1;
            } else {
                unique.push(c);
            }
        }
        unique
    }
}

/// Whitespace collapsed, lower case.
fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Drops exact duplicates (whitespace- and case-normalised) and MinHash near duplicates, of each
/// other and of the seeds; the first occurrence stays.
pub fn deduplicate(
    candidates: Vec<Candidate>,
    seeds: &[&str],
    config: &SynthesizeConfig,
    funnel: &mut Funnel,
) -> Vec<Candidate> {
    Deduplicator::new(seeds, config).keep(candidates, funnel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::synthesize::test_candidate as candidate;
    use crate::tools::synthesize::{Kind, Operator};

    #[test]
    fn exact_and_near_duplicates_of_each_other_and_the_seeds_are_dropped() {
        let seed = "Tom has 3 apples and buys 5 more at the market on Monday. Then he gives 2 apples to his sister. How many apples does Tom have now?";
        let fresh =
            "A train leaves at 9 am at 60 km per hour. When does it reach a town 150 km away?";
        let candidates = vec![
            candidate(&seed.to_uppercase()), // exact copy of the seed
            candidate(&seed.replace("Monday", "Tuesday")), // near copy of the seed
            candidate(fresh),
            candidate(&format!("  {fresh} ")), // exact copy
            candidate(&fresh.replace("away?", "away, exactly?")), // near copy
            candidate("Find the area of a circle of radius 2."),
        ];
        let mut funnel = Funnel::default();
        let unique = deduplicate(
            candidates,
            &[seed],
            &SynthesizeConfig::default(),
            &mut funnel,
        );
        let questions: Vec<&str> = unique.iter().map(|c| c.question.as_str()).collect();
        assert_eq!(questions, [fresh, "Find the area of a circle of radius 2."]);
        assert_eq!((funnel.exact_duplicates, funnel.near_duplicates), (2, 2));
    }

    #[test]
    fn a_later_round_drops_near_copies_of_every_earlier_round() {
        let first = "Tom has 3 apples and buys 5 more at the market on Monday. Then he gives 2 apples to his sister. How many apples does Tom have now?";
        let second =
            "A train leaves at 9 am at 60 km per hour. When does it reach a town 150 km away?";
        let seed = "Find the area of a circle of radius 2.";
        let config = SynthesizeConfig::default();
        let mut seen = Deduplicator::new(&[seed], &config);
        let mut funnel = Funnel::default();
        let round_1 = seen.keep(vec![candidate(first), candidate(second)], &mut funnel);
        assert_eq!(round_1.len(), 2);
        // Round 2: a near copy of round 1's first problem, an exact copy of its second, a near
        // copy of the seed, and one new problem; only the new one survives.
        let evolved = |q: &str| Candidate {
            kind: Kind::Evolved,
            operator: Some(Operator::ChangeNumbers),
            round: 2,
            ..candidate(q)
        };
        let fresh = "How many ways can 5 people sit around a round table?";
        let round_2 = seen.keep(
            vec![
                evolved(&first.replace("Monday", "Friday")),
                evolved(&second.to_lowercase()),
                evolved(&seed.replace("2.", "2 exactly.")),
                evolved(fresh),
            ],
            &mut funnel,
        );
        let questions: Vec<&str> = round_2.iter().map(|c| c.question.as_str()).collect();
        assert_eq!(questions, [fresh]);
        assert_eq!((funnel.exact_duplicates, funnel.near_duplicates), (1, 2));
        // Each round on its own would have kept the near copies.
        let alone = deduplicate(
            vec![evolved(&first.replace("Monday", "Friday"))],
            &[seed],
            &config,
            &mut Funnel::default(),
        );
        assert_eq!(alone.len(), 1);
    }
}
