//! Near-duplicate detection by MinHash over word n-grams with LSH banding: two texts whose
//! n-gram sets have a Jaccard similarity above the threshold are (very likely) flagged, in time
//! linear in the number of texts.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use mathrl::rng::GOLDEN_GAMMA;

/// An index of MinHash signatures; `insert` tells whether a text is a near duplicate of one
/// already inserted.
#[derive(Debug)]
pub struct MinHashIndex {
    ngram: usize,
    bands: usize,
    rows: usize,
    threshold: f64,
    seeds: Vec<u64>,
    buckets: Vec<HashMap<u64, Vec<usize>>>,
    signatures: Vec<Vec<u64>>,
}

impl MinHashIndex {
    /// `bands × rows` hash functions over word `ngram`s; candidates sharing a band are
    /// confirmed by their estimated Jaccard similarity against `threshold`.
    pub fn new(ngram: usize, bands: usize, rows: usize, threshold: f64) -> Self {
        let seeds = (0..bands * rows)
            .map(|i| splitmix64(GOLDEN_GAMMA ^ i as u64))
            .collect();
        Self {
            ngram: ngram.max(1),
            bands,
            rows,
            threshold,
            seeds,
            buckets: vec![HashMap::new(); bands],
            signatures: Vec::new(),
        }
    }

    /// The signature of `text`: per hash function, the least hash over its word n-grams
    /// (lower-cased, punctuation split off).
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let shingles = shingles(text, self.ngram);
        self.seeds
            .iter()
            .map(|&seed| {
                shingles
                    .iter()
                    .map(|&s| splitmix64(s ^ seed))
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    /// Adds `text` unless it is a near duplicate of an inserted text, whose index it returns.
    pub fn insert(&mut self, text: &str) -> Option<usize> {
        let signature = self.signature(text);
        let mut candidates = HashSet::new();
        for (band, rows) in signature.chunks(self.rows).enumerate() {
            if let Some(ids) = self.buckets[band].get(&band_key(rows)) {
                candidates.extend(ids.iter().copied());
            }
        }
        let mut sorted: Vec<usize> = candidates.into_iter().collect();
        sorted.sort_unstable();
        if let Some(&dup) = sorted
            .iter()
            .find(|&&c| estimated_jaccard(&signature, &self.signatures[c]) >= self.threshold)
        {
            return Some(dup);
        }
        let id = self.signatures.len();
        for (band, rows) in signature.chunks(self.rows).enumerate() {
            self.buckets[band]
                .entry(band_key(rows))
                .or_default()
                .push(id);
        }
        self.signatures.push(signature);
        None
    }

    /// Texts inserted (duplicates excluded).
    pub fn len(&self) -> usize {
        self.signatures.len()
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }

    /// Hash functions per signature.
    pub fn num_hashes(&self) -> usize {
        self.bands * self.rows
    }
}

/// Share of equal entries of two signatures: an unbiased estimate of the Jaccard similarity.
pub fn estimated_jaccard(a: &[u64], b: &[u64]) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len().max(1) as f64
}

/// Exact Jaccard similarity of the word n-gram sets of two texts.
pub fn jaccard(a: &str, b: &str, ngram: usize) -> f64 {
    let (a, b) = (shingles(a, ngram), shingles(b, ngram));
    let union = a.union(&b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// Hashes of the word n-grams of `text` (a text shorter than `n` words is one n-gram).
fn shingles(text: &str, n: usize) -> HashSet<u64> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\\'))
        .filter(|w| !w.is_empty())
        .collect();
    let n = n.max(1);
    if words.len() <= n {
        return HashSet::from([hash_of(&words)]);
    }
    words.windows(n).map(hash_of).collect()
}

fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn band_key(rows: &[u64]) -> u64 {
    hash_of(rows)
}

/// A fast 64-bit mixer (one SplitMix64 step from `x`), the family of the MinHash functions.
fn splitmix64(x: u64) -> u64 {
    mathrl::rng::mix64(x.wrapping_add(GOLDEN_GAMMA))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "Tom has 3 apples and buys 5 more at the market on Monday. \
        Then he gives 2 apples to his sister. How many apples does Tom have now?";

    #[test]
    fn near_copies_are_flagged_and_different_texts_are_not() {
        let mut index = MinHashIndex::new(3, 16, 8, 0.7);
        assert_eq!(index.insert(BASE), None);
        // One word changed out of 30: Jaccard of 3-grams ≈ 0.8.
        let near = BASE.replace("Monday", "Tuesday");
        assert!(jaccard(BASE, &near, 3) > 0.75);
        assert_eq!(index.insert(&near), Some(0));
        let other = "A train leaves the station at 9 am travelling at 60 km per hour. \
            When does it reach a town 150 km away?";
        assert!(jaccard(BASE, other, 3) < 0.1);
        assert_eq!(index.insert(other), None);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn the_signature_estimates_the_jaccard_similarity() {
        let index = MinHashIndex::new(2, 32, 8, 0.5);
        let a = "one two three four five six seven eight nine ten eleven twelve";
        let b = "one two three four five six seven eight nine ten zero zero";
        let exact = jaccard(a, b, 2);
        let estimate = estimated_jaccard(&index.signature(a), &index.signature(b));
        // 256 hashes: standard error sqrt(J(1-J)/256) < 0.032; allow 4 of them.
        assert!((estimate - exact).abs() < 0.13, "{estimate} vs {exact}");
        assert_eq!(index.num_hashes(), 256);
    }
}
