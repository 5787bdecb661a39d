//! Decontamination: whether a training question overlaps a question of an evaluation set.
//!
//! Two tests, after [`normalized_words`] (lower case, punctuation and whitespace collapsed):
//!
//! - **13-gram**: the question shares a run of [`NGRAM_WORDS`] words with an evaluation question
//!   (the report's test, and the usual one since GPT-3).
//! - **Longest common subsequence**: the words both share in order are at least
//!   [`LCS_THRESHOLD`] of the longer question's words. A question under 13 words has no 13-gram,
//!   and a light edit (a word dropped or changed in the middle) of a question of 13 to ~25 words
//!   breaks all of its 13-grams; the LCS catches both. 0.8 removes one word dropped or changed
//!   in every five (a 10-word question with one word dropped scores 0.9), and keeps two problems
//!   cut from one template that differ in their numbers ("What is 2 + 3?" against "What is 2 +
//!   4?" scores 0.75).
//!
//! Comparing every question with every evaluation question (some 16,000) by LCS would be slow,
//! so candidates come from a prefix-filtered index: a match needs at least `k = ⌈0.8·n⌉` common
//! words of a question of n words, so under one global order of words (rarest first) the two
//! questions' first `n - k + 1` words share one (the prefix filter of set-similarity joins; a
//! word's second occurrence is a word of its own, which keeps the bound exact for the LCS).

mod lcs;
mod text;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

pub use lcs::{lcs_len, lcs_similarity};
pub use text::normalized_words;

/// Words in the n-gram test.
pub const NGRAM_WORDS: usize = 13;

/// Least LCS, relative to the longer question, that counts as a near-copy.
pub const LCS_THRESHOLD: f64 = 0.8;

/// One question of an evaluation set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalQuestion {
    /// The evaluation set's name (`gsm8k`, `math`, ...).
    pub dataset: String,
    /// 1-based line of the question in the set's file.
    pub line: usize,
    /// The question's text.
    pub question: String,
}

/// What a contaminated question shares with an evaluation question.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlap {
    /// A run of [`NGRAM_WORDS`] normalised words, space-separated.
    NGram(String),
    /// The LCS of the normalised words relative to the longer question.
    Lcs(f64),
}

/// The evaluation question a training question overlaps, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Contamination<'a> {
    /// The evaluation question.
    pub eval: &'a EvalQuestion,
    /// The evidence.
    pub overlap: Overlap,
}

/// A normalised word, or a word's k-th repetition in one question (for the prefix filter).
type WordId = u32;

/// No evaluation question has this word.
const UNKNOWN: WordId = WordId::MAX;

/// One evaluation question, indexed.
#[derive(Debug)]
struct Indexed {
    question: EvalQuestion,
    words: Vec<WordId>,
}

/// The evaluation questions, indexed for both tests.
#[derive(Debug, Default)]
pub struct Decontaminator {
    questions: Vec<Indexed>,
    vocabulary: HashMap<String, WordId>,
    /// Hash of an n-gram's word ids → (question, position) of one occurrence.
    ngrams: HashMap<u64, (u32, u32)>,
    /// Occurrence token (word, repetition) → its id in the prefix order.
    occurrence_ids: HashMap<(WordId, u32), u32>,
    /// Number of evaluation questions holding each occurrence token, by token id.
    occurrence_counts: Vec<u32>,
    /// Occurrence token id → questions whose prefix holds it.
    prefixes: HashMap<u32, Vec<u32>>,
}

impl Decontaminator {
    /// Indexes `questions`.
    pub fn new(questions: impl IntoIterator<Item = EvalQuestion>) -> Self {
        let mut index = Self::default();
        for question in questions {
            let words = normalized_words(&question.question)
                .into_iter()
                .map(|word| {
                    let next = index.vocabulary.len() as WordId;
                    *index.vocabulary.entry(word).or_insert(next)
                })
                .collect();
            index.questions.push(Indexed { question, words });
        }
        for (q, indexed) in index.questions.iter().enumerate() {
            for (position, ngram) in indexed.words.windows(NGRAM_WORDS).enumerate() {
                index
                    .ngrams
                    .entry(ngram_hash(ngram))
                    .or_insert((q as u32, position as u32));
            }
        }
        let occurrences: Vec<Vec<(WordId, u32)>> = index
            .questions
            .iter()
            .map(|q| occurrence_tokens(&q.words))
            .collect();
        for tokens in &occurrences {
            for token in tokens {
                let next = index.occurrence_ids.len() as u32;
                let id = *index.occurrence_ids.entry(*token).or_insert(next);
                if id as usize == index.occurrence_counts.len() {
                    index.occurrence_counts.push(0);
                }
                index.occurrence_counts[id as usize] += 1;
            }
        }
        for (q, tokens) in occurrences.iter().enumerate() {
            for id in index.prefix(tokens) {
                index.prefixes.entry(id).or_default().push(q as u32);
            }
        }
        index
    }

    /// Number of evaluation questions indexed.
    pub fn len(&self) -> usize {
        self.questions.len()
    }

    /// Whether no question is indexed.
    pub fn is_empty(&self) -> bool {
        self.questions.is_empty()
    }

    /// The first evaluation question `question` overlaps: by a shared 13-gram, else by LCS.
    pub fn check(&self, question: &str) -> Option<Contamination<'_>> {
        let words = normalized_words(question);
        let ids: Vec<WordId> = words
            .iter()
            .map(|w| self.vocabulary.get(w).copied().unwrap_or(UNKNOWN))
            .collect();
        self.shared_ngram(&ids, &words)
            .or_else(|| self.near_copy(&ids))
    }

    fn shared_ngram(&self, ids: &[WordId], words: &[String]) -> Option<Contamination<'_>> {
        for (start, ngram) in ids.windows(NGRAM_WORDS).enumerate() {
            if ngram.contains(&UNKNOWN) {
                continue;
            }
            let Some(&(q, position)) = self.ngrams.get(&ngram_hash(ngram)) else {
                continue;
            };
            let indexed = &self.questions[q as usize];
            let position = position as usize;
            // A 64-bit hash collision is unlikely, but a false removal would be silent.
            if indexed.words[position..position + NGRAM_WORDS] == *ngram {
                return Some(Contamination {
                    eval: &indexed.question,
                    overlap: Overlap::NGram(words[start..start + NGRAM_WORDS].join(" ")),
                });
            }
        }
        None
    }

    fn near_copy(&self, ids: &[WordId]) -> Option<Contamination<'_>> {
        let tokens: Vec<(WordId, u32)> = occurrence_tokens(ids)
            .into_iter()
            .filter(|(word, _)| *word != UNKNOWN)
            .collect();
        let known: Vec<u32> = tokens
            .iter()
            .filter_map(|t| self.occurrence_ids.get(t).copied())
            .collect();
        // Words no evaluation question has are the rarest of all: they fill the prefix first.
        let unknown = ids.len() - known.len();
        let prefix_len = prefix_len(ids.len());
        if unknown >= prefix_len {
            return None;
        }
        let mut candidates: Vec<u32> = self
            .sorted_by_rarity(known)
            .into_iter()
            .take(prefix_len - unknown)
            .filter_map(|id| self.prefixes.get(&id))
            .flatten()
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().find_map(|q| {
            let indexed = &self.questions[q as usize];
            let (shorter, longer) = {
                let (a, b) = (ids.len(), indexed.words.len());
                (a.min(b), a.max(b))
            };
            if (shorter as f64) < LCS_THRESHOLD * longer as f64 {
                return None;
            }
            let similarity = lcs_similarity(ids, &indexed.words);
            (similarity >= LCS_THRESHOLD).then_some(Contamination {
                eval: &indexed.question,
                overlap: Overlap::Lcs(similarity),
            })
        })
    }

    /// The prefix of an evaluation question's occurrence tokens (all known).
    fn prefix(&self, tokens: &[(WordId, u32)]) -> Vec<u32> {
        let ids = tokens.iter().map(|t| self.occurrence_ids[t]).collect();
        let mut sorted = self.sorted_by_rarity(ids);
        sorted.truncate(prefix_len(tokens.len()));
        sorted
    }

    /// Occurrence token ids, rarest first (ties by id: one global order).
    fn sorted_by_rarity(&self, mut ids: Vec<u32>) -> Vec<u32> {
        ids.sort_unstable_by_key(|&id| (self.occurrence_counts[id as usize], id));
        ids
    }
}

/// How many of a question's n words (rarest first) must be indexed or probed so that two
/// questions with an LCS of at least ⌈0.8·n⌉ share one: n - ⌈0.8·n⌉ + 1.
fn prefix_len(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    n + 1 - min_common(n)
}

/// The fewest common words a question of n words needs with a near-copy of it.
fn min_common(n: usize) -> usize {
    // The epsilon keeps 0.8 × 10 = 8 from rounding up to 9 through the float product.
    ((LCS_THRESHOLD * n as f64) - 1e-9).ceil().max(1.0) as usize
}

/// Each word paired with how many times it appeared before in the question.
fn occurrence_tokens(words: &[WordId]) -> Vec<(WordId, u32)> {
    let mut seen: HashMap<WordId, u32> = HashMap::new();
    words
        .iter()
        .map(|&word| {
            let count = seen.entry(word).or_insert(0);
            *count += 1;
            (word, *count - 1)
        })
        .collect()
}

fn ngram_hash(ngram: &[WordId]) -> u64 {
    let mut hasher = DefaultHasher::new();
    ngram.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(questions: &[&str]) -> Decontaminator {
        Decontaminator::new(questions.iter().enumerate().map(|(i, q)| EvalQuestion {
            dataset: "set".into(),
            line: i + 1,
            question: q.to_string(),
        }))
    }

    const LONG: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as \
                        many clips in May. How many clips did Natalia sell altogether in April and May?";

    #[test]
    fn a_shared_13_gram_is_found_and_reported() {
        let index = index_of(&[LONG, "What is 2 + 3?"]);
        let edited = "In a new story: natalia SOLD clips to 48 of her friends in April; and then \
                      she sold a third as many clips in June.";
        let found = index.check(edited).unwrap();
        assert_eq!(found.eval.line, 1);
        assert_eq!(
            found.overlap,
            Overlap::NGram("natalia sold clips to 48 of her friends in april and then she".into())
        );
    }

    #[test]
    fn short_near_copies_are_found_by_lcs_and_different_numbers_are_kept() {
        let index = index_of(&[
            LONG,
            "Compute the sum of the first ten positive odd integers.",
        ]);
        let found = index
            .check("compute the SUM of the first ten odd integers")
            .unwrap();
        assert_eq!(found.eval.line, 2);
        assert!(matches!(found.overlap, Overlap::Lcs(s) if (s - 0.9).abs() < 1e-9));
        assert!(index
            .check("Compute the sum of the first five even integers.")
            .is_none());
        let sums = index_of(&["What is 2 + 3?"]);
        assert!(sums.check("What is 2 + 4?").is_none());
        assert!(sums.check("what is 2+3").is_some());
    }

    #[test]
    fn a_word_dropped_from_a_medium_question_breaks_every_13_gram_but_not_the_lcs() {
        let eval = "A train leaves the station at noon and travels at sixty miles per hour until \
                    it reaches the city";
        let index = index_of(&[eval]);
        let edited = "A train leaves the station at noon and travels at sixty miles hour until it \
                      reaches the city";
        assert!(matches!(
            index.check(edited).unwrap().overlap,
            Overlap::Lcs(_)
        ));
        assert!(index.check("A bus leaves the depot at dawn.").is_none());
    }

    #[test]
    fn the_prefix_filter_finds_what_a_full_scan_finds() {
        // Random questions over a small vocabulary, so that near-copies happen by chance.
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut question = |len: usize| {
            (0..len)
                .map(|_| ["a", "b", "c", "d", "e", "f"][next() % 6])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let evals: Vec<String> = (0..200).map(|i| question(3 + i % 9)).collect();
        let probes: Vec<String> = (0..300).map(|i| question(3 + i % 9)).collect();
        let index = index_of(&evals.iter().map(String::as_str).collect::<Vec<_>>());
        for probe in &probes {
            let words = normalized_words(probe);
            let scan = evals
                .iter()
                .any(|e| lcs_similarity(&words, &normalized_words(e)) >= LCS_THRESHOLD);
            assert_eq!(index.check(probe).is_some(), scan, "probe `{probe}`");
        }
    }

    #[test]
    fn min_common_rounds_up_exactly() {
        assert_eq!(min_common(10), 8);
        assert_eq!(min_common(11), 9);
        assert_eq!(min_common(1), 1);
        assert_eq!(prefix_len(10), 3);
    }
}
