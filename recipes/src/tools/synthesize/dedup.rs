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
