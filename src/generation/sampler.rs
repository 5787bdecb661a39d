//! Drawing one token from a row of logits: temperature, top-k, top-p, and the behaviour log-prob.
//!
//! The order is transformers' and vLLM's: logits are divided by the temperature, top-k keeps the
//! `k` largest (ties at the boundary kept), then top-p keeps the smallest most-likely prefix whose
//! renormalised mass reaches `p`.
//!
//! The returned log-probability is `log_softmax(logits / T)` of the sampled token over the *whole*
//! vocabulary, before top-k/top-p truncation. That is what a GRPO learner recomputes with the
//! training forward at the same temperature (`next_token_logprobs` with
//! `LogprobOptions { temperature }`), so the importance ratio is 1 at the first step when the
//! sampler truncates nothing. (vLLM returns the same quantity by default.) Greedy decoding reports
//! the log-prob at temperature 1.

use rand::Rng;

use crate::model::fused::{exp, max, with_simd};

/// The truncation and temperature of a draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSettings {
    /// Softmax temperature; 0 = greedy.
    pub temperature: f64,
    /// Keep the `top_k` largest logits; 0 = all.
    pub top_k: usize,
    /// Nucleus mass in (0, 1]; 1 = all.
    pub top_p: f64,
}

/// A sampled token with its behaviour log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledToken {
    /// The token id.
    pub token: u32,
    /// `log_softmax(logits / T)[token]` over the full vocabulary (T = 1 when greedy).
    pub logprob: f32,
}

/// Tokens per block of [`Sampler`]'s partial sums: a draw walks the blocks' sums to the one
/// holding its target, then that block's tokens, instead of summing a vocabulary one token at a
/// time (two sequential f64 passes over 150k tokens were most of a draw).
const BLOCK: usize = 256;

/// Draws tokens from logits, reusing its scratch buffers between calls.
#[derive(Debug, Default)]
pub struct Sampler {
    /// `exp((logit - max) / T)` of every token.
    weights: Vec<f32>,
    /// The sum of `weights` over each block of `BLOCK` tokens.
    block_sums: Vec<f64>,
    /// A copy of the logits for the top-k selection.
    selection: Vec<f32>,
    /// (weight, token) of the top-p candidates.
    candidates: Vec<(f32, u32)>,
}

/// Largest non-NaN value and its first index (0 for an all-NaN row).
fn argmax(logits: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i, l);
        }
    }
    best
}

/// `exp((logit - max) · inv_t)`, 0 for a NaN logit (never sampled, and not poisoning a sum).
#[inline(always)]
fn weight(logit: f32, max: f32, inv_t: f32) -> f32 {
    let e = exp((logit - max) * inv_t);
    if e.is_nan() {
        0.0
    } else {
        e
    }
}

/// The sum of `values` in f64, in eight lanes so that it vectorises.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    lanes.iter().sum::<f64>() + tail
}

impl Sampler {
    /// A sampler with empty scratch buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Draws one token from `logits` (one row, the vocabulary). Greedy draws consume no random
    /// number; every other draw consumes exactly one, so a sequence's stream does not depend on
    /// the truncation settings of the draws before it.
    pub fn sample<R: Rng + ?Sized>(
        &mut self,
        logits: &[f32],
        settings: &SamplerSettings,
        rng: &mut R,
    ) -> SampledToken {
        assert!(
            !logits.is_empty(),
            "a row of logits has at least one entry (vocab_size > 0)"
        );
        if settings.temperature == 0.0 {
            let (token, max) = argmax(logits);
            let log_total = self.fill_weights(logits, max, 1.0).ln();
            return SampledToken {
                token: token as u32,
                logprob: ((logits[token] - max) as f64 - log_total) as f32,
            };
        }
        let max = with_simd(
            #[inline(always)]
            || max(logits),
        );
        let inv_t = (1.0 / settings.temperature) as f32;
        let total = self.fill_weights(logits, max, inv_t);
        let log_total = total.ln();

        let min_logit = self.top_k_threshold(logits, settings.top_k);
        let u: f64 = rng.random();
        let token = if settings.top_p >= 1.0 && min_logit == f32::NEG_INFINITY {
            self.draw_by_blocks(u * total)
        } else if settings.top_p >= 1.0 {
            self.draw_in_index_order(logits, min_logit, u)
        } else {
            self.draw_from_nucleus(logits, min_logit, settings.top_p, u)
        };
        let logprob = (((logits[token] - max) * inv_t) as f64 - log_total) as f32;
        SampledToken {
            token: token as u32,
            logprob,
        }
    }

    /// Fills `weights` and their block sums for `logits` with maximum `max`; returns their total.
    fn fill_weights(&mut self, logits: &[f32], max: f32, inv_t: f32) -> f64 {
        self.weights.resize(logits.len(), 0.0);
        self.block_sums.clear();
        for (ws, ls) in self.weights.chunks_mut(BLOCK).zip(logits.chunks(BLOCK)) {
            let sum = with_simd(
                #[inline(always)]
                || {
                    for (w, &l) in ws.iter_mut().zip(ls) {
                        *w = weight(l, max, inv_t);
                    }
                    lane_sum(ws)
                },
            );
            self.block_sums.push(sum);
        }
        self.block_sums.iter().sum()
    }

    /// Inverse-CDF draw over all tokens in index order: the first token whose cumulative weight
    /// exceeds `target`, found by skipping whole blocks (the last token of positive weight when
    /// rounding leaves `target` at or past the total).
    fn draw_by_blocks(&self, target: f64) -> usize {
        let mut cumulative = 0f64;
        for (b, &sum) in self.block_sums.iter().enumerate() {
            if cumulative + sum <= target {
                cumulative += sum;
                continue;
            }
            for (i, &w) in self.weights[b * BLOCK..].iter().take(BLOCK).enumerate() {
                cumulative += w as f64;
                if w > 0.0 && cumulative > target {
                    return b * BLOCK + i;
                }
            }
        }
        self.weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
    }

    /// The smallest logit top-k keeps (`-inf` when top-k is off).
    fn top_k_threshold(&mut self, logits: &[f32], top_k: usize) -> f32 {
        if top_k == 0 || top_k >= logits.len() {
            return f32::NEG_INFINITY;
        }
        self.selection.clear();
        self.selection.extend(
            logits
                .iter()
                .map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }),
        );
        let (_, kth, _) = self
            .selection
            .select_nth_unstable_by(top_k - 1, |a, b| b.total_cmp(a));
        *kth
    }

    /// Inverse-CDF draw over the tokens with logit >= `min_logit`, scanned in index order.
    fn draw_in_index_order(&self, logits: &[f32], min_logit: f32, u: f64) -> usize {
        let kept = |i: usize| logits[i] >= min_logit;
        let mass: f64 = (0..logits.len())
            .filter(|&i| kept(i))
            .map(|i| self.weights[i] as f64)
            .sum();
        let target = u * mass;
        let mut cumulative = 0f64;
        let mut last = 0;
        for i in (0..logits.len()).filter(|&i| kept(i) && self.weights[i] > 0.0) {
            cumulative += self.weights[i] as f64;
            last = i;
            if cumulative > target {
                return i;
            }
        }
        last
    }

    /// Top-p draw among the tokens with logit >= `min_logit`.
    fn draw_from_nucleus(&mut self, logits: &[f32], min_logit: f32, top_p: f64, u: f64) -> usize {
        let kept = |i: usize| logits[i] >= min_logit;
        let (mut mass, mut count) = (0f64, 0usize);
        for i in (0..logits.len()).filter(|&i| kept(i)) {
            mass += self.weights[i] as f64;
            count += 1;
        }
        // Tokens below this weight together hold less than (1 - p) of the mass, so the nucleus
        // lies within the rest: only those are sorted (few, for a peaked distribution).
        let floor = ((1.0 - top_p) * mass / count as f64) as f32;
        self.candidates.clear();
        for i in (0..logits.len()).filter(|&i| kept(i)) {
            let w = self.weights[i];
            if w >= floor && w > 0.0 {
                self.candidates.push((w, i as u32));
            }
        }
        self.candidates
            .sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let limit = top_p * mass;
        let mut nucleus_mass = 0f64;
        let mut size = 0;
        for &(w, _) in &self.candidates {
            if nucleus_mass >= limit {
                break;
            }
            nucleus_mass += w as f64;
            size += 1;
        }
        let size = size.max(1);
        let target = u * nucleus_mass;
        let mut cumulative = 0f64;
        for &(w, token) in &self.candidates[..size] {
            cumulative += w as f64;
            if cumulative > target {
                return token as usize;
            }
        }
        self.candidates[size - 1].1 as usize
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use statrs::distribution::{ChiSquared, ContinuousCDF};

    pub(crate) const LOGITS: [f32; 8] = [1.0, 0.5, 2.0, -0.5, 0.0, 1.5, -1.0, 0.7];
    pub(crate) const DRAWS: usize = 40_000;

    /// The distribution the settings define, computed directly from the definitions.
    pub(crate) fn expected_distribution(logits: &[f32], s: &SamplerSettings) -> Vec<f64> {
        let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / s.temperature).collect();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]));
        let k = if s.top_k == 0 { logits.len() } else { s.top_k };
        let kept: Vec<usize> = order[..k].to_vec();
        let z: f64 = kept.iter().map(|&i| scaled[i].exp()).sum();
        let mut nucleus = Vec::new();
        let mut mass = 0.0;
        for &i in &kept {
            if mass >= s.top_p {
                break;
            }
            mass += scaled[i].exp() / z;
            nucleus.push(i);
        }
        let zn: f64 = nucleus.iter().map(|&i| scaled[i].exp()).sum();
        (0..logits.len())
            .map(|i| {
                if nucleus.contains(&i) {
                    scaled[i].exp() / zn
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Chi-square goodness-of-fit p-value of `counts` against `probs` (zero-probability tokens
    /// must have zero counts).
    pub(crate) fn chi_square_p_value(counts: &[usize], probs: &[f64]) -> f64 {
        let n: usize = counts.iter().sum();
        let mut stat = 0.0;
        let mut categories = 0;
        for (&c, &p) in counts.iter().zip(probs) {
            if p == 0.0 {
                assert_eq!(c, 0, "a token outside the kept set was sampled");
                continue;
            }
            let e = p * n as f64;
            stat += (c as f64 - e).powi(2) / e;
            categories += 1;
        }
        ChiSquared::new((categories - 1) as f64).unwrap().sf(stat)
    }

    fn frequencies(settings: SamplerSettings, seed: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sampler = Sampler::new();
        let mut counts = vec![0; LOGITS.len()];
        for _ in 0..DRAWS {
            counts[sampler.sample(&LOGITS, &settings, &mut rng).token as usize] += 1;
        }
        counts
    }

    #[test]
    fn frequencies_match_the_distribution_for_each_truncation() {
        let cases = [
            SamplerSettings {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
            },
            SamplerSettings {
                temperature: 0.5,
                top_k: 0,
                top_p: 1.0,
            },
            SamplerSettings {
                temperature: 2.0,
                top_k: 0,
                top_p: 1.0,
            },
            SamplerSettings {
                temperature: 1.0,
                top_k: 3,
                top_p: 1.0,
            },
            SamplerSettings {
                temperature: 1.0,
                top_k: 0,
                top_p: 0.6,
            },
            SamplerSettings {
                temperature: 0.7,
                top_k: 5,
                top_p: 0.8,
            },
        ];
        for (i, settings) in cases.iter().enumerate() {
            let probs = expected_distribution(&LOGITS, settings);
            let counts = frequencies(*settings, 1000 + i as u64);
            let p = chi_square_p_value(&counts, &probs);
            assert!(
                p > 1e-3,
                "{settings:?}: chi-square p = {p}, counts {counts:?}, expected {probs:?}"
            );
        }
    }

    #[test]
    fn the_chi_square_test_rejects_a_wrong_temperature() {
        // Guards the test above: samples at T = 1 must not pass as samples at T = 0.8.
        let counts = frequencies(
            SamplerSettings {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
            },
            7,
        );
        let wrong = expected_distribution(
            &LOGITS,
            &SamplerSettings {
                temperature: 0.8,
                top_k: 0,
                top_p: 1.0,
            },
        );
        assert!(chi_square_p_value(&counts, &wrong) < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_keep_the_expected_tokens() {
        // Sorted: 2 (2.0), 5 (1.5), 0 (1.0), 7 (0.7), 1 (0.5), ...
        let top2 = expected_distribution(
            &LOGITS,
            &SamplerSettings {
                temperature: 1.0,
                top_k: 2,
                top_p: 1.0,
            },
        );
        let kept: Vec<usize> = (0..8).filter(|&i| top2[i] > 0.0).collect();
        assert_eq!(kept, vec![2, 5]);
        let counts = frequencies(
            SamplerSettings {
                temperature: 1.0,
                top_k: 2,
                top_p: 1.0,
            },
            3,
        );
        assert!(
            counts
                .iter()
                .enumerate()
                .all(|(i, &c)| (c > 0) == kept.contains(&i)),
            "{counts:?}"
        );
        // A tiny top_p keeps only the most likely token.
        let counts = frequencies(
            SamplerSettings {
                temperature: 1.0,
                top_k: 0,
                top_p: 0.01,
            },
            4,
        );
        assert_eq!(counts[2], DRAWS);
    }

    #[test]
    fn logprob_is_over_the_full_vocabulary_at_the_temperature() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut sampler = Sampler::new();
        for settings in [
            SamplerSettings {
                temperature: 0.6,
                top_k: 0,
                top_p: 1.0,
            },
            SamplerSettings {
                temperature: 0.6,
                top_k: 2,
                top_p: 0.5,
            },
        ] {
            for _ in 0..50 {
                let s = sampler.sample(&LOGITS, &settings, &mut rng);
                let scaled: Vec<f64> = LOGITS.iter().map(|&l| l as f64 / 0.6).collect();
                let z: f64 = scaled.iter().map(|x| x.exp()).sum();
                let expected = scaled[s.token as usize] - z.ln();
                assert!(
                    (s.logprob as f64 - expected).abs() < 1e-5,
                    "{s:?} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum_and_reports_the_temperature_one_logprob() {
        let logits = [0.5, 3.0, -1.0, 3.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let s = Sampler::new().sample(
            &logits,
            &SamplerSettings {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
            },
            &mut rng,
        );
        assert_eq!(s.token, 1);
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        assert!((s.logprob as f64 - (3.0 - z.ln())).abs() < 1e-6);
    }

    #[test]
    fn nan_logits_are_never_sampled() {
        let logits = [f32::NAN, 0.0, f32::NAN, 0.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut sampler = Sampler::new();
        for settings in [
            SamplerSettings {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
            },
            SamplerSettings {
                temperature: 1.0,
                top_k: 1,
                top_p: 0.9,
            },
            SamplerSettings {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
            },
        ] {
            for _ in 0..100 {
                let s = sampler.sample(&logits, &settings, &mut rng);
                assert!(s.token == 1 || s.token == 3, "{settings:?}: {s:?}");
            }
        }
    }

    /// Over a vocabulary of several blocks (with NaN logits and long runs of negligible
    /// weight), the draw that skips blocks picks the token a scan in index order picks.
    #[test]
    fn block_draws_match_a_draw_in_index_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let logits: Vec<f32> = (0..5 * BLOCK + 17)
            .map(|i| match i % 97 {
                0 => f32::NAN,
                1..=40 => -80.0,
                _ => 3.0 * rng.random::<f32>(),
            })
            .collect();
        let mut sampler = Sampler::new();
        let total = sampler.fill_weights(&logits, max(&logits), 1.0);
        assert_eq!(sampler.block_sums.len(), 6);
        let mut tokens = std::collections::BTreeSet::new();
        for step in 0..=2000 {
            let u = step as f64 / 2000.0;
            let by_blocks = sampler.draw_by_blocks(u * total);
            assert_eq!(
                by_blocks,
                sampler.draw_in_index_order(&logits, f32::NEG_INFINITY, u),
                "u = {u}"
            );
            assert!(!logits[by_blocks].is_nan());
            tokens.insert(by_blocks);
        }
        // The draws reach every block, the last included.
        assert!(tokens.iter().any(|&t| t < BLOCK) && tokens.iter().any(|&t| t >= 5 * BLOCK));
    }
}
