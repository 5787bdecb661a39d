//! Reward shaping: how the verifier's verdict and the reward model's score become one scalar.
//!
//! The Qwen2.5-Math report combines them as r = σ(α·r_m) + (r_v − 1): a correct answer earns the
//! RM's squashed preference in (0, 1), a wrong one the same minus one, so every correct completion
//! outranks every wrong one and the RM orders completions within each class.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::verdict::{Outcome, Verdict};

/// One completion to score, with what the verifier needs to judge it.
#[derive(Debug, Clone, Copy)]
pub struct RewardInput<'a> {
    /// The question (user turn), as the RM sees it.
    pub question: &'a str,
    /// The completion text.
    pub response: &'a str,
    /// The gold answer as stored in the data set, when there is one.
    pub gold: Option<&'a str>,
    /// The data set's name (selects extraction and gold-parsing rules), when known.
    pub dataset: Option<&'a str>,
}

/// A scored completion: the scalar reward and the parts it was made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardOutput {
    /// The reward the learner uses.
    pub reward: f32,
    /// The verifier's verdict, when a verifier ran.
    pub verdict: Option<Verdict>,
    /// The reward model's raw score r_m, when an RM ran.
    pub rm_score: Option<f32>,
}

impl RewardOutput {
    /// Whether the verifier judged the completion correct (false when no verifier ran).
    pub fn is_correct(&self) -> bool {
        matches!(
            self.verdict,
            Some(Verdict {
                outcome: Outcome::Correct,
                ..
            })
        )
    }
}

/// Scores a batch of completions. Implement it to plug a custom reward (a format bonus, a length
/// penalty) into a recipe without touching this crate.
pub trait RewardFunction: Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// One output per input, in order.
    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>>;
}

/// Judges a response against a gold answer (the rule-based reward r_v).
pub trait Verifier: Send + Sync {
    /// The verdict for one response.
    fn verify(&self, response: &str, gold: &str, dataset: Option<&str>) -> Verdict;
}

/// Scores (question, response) pairs with a reward model (r_m), batched.
pub trait PreferenceScorer: Send + Sync {
    /// One raw score per pair, in order.
    fn score(&self, pairs: &[(&str, &str)]) -> anyhow::Result<Vec<f32>>;
}

/// How verifier and RM combine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum ShapingMode {
    /// r = σ(α·r_m) + (r_v − 1), the report's combination.
    Shaped {
        /// The RM score's scale α (0.5 in the report).
        alpha: f32,
    },
    /// r = r_v ∈ {0, 1}.
    VerifierOnly,
}

impl Default for ShapingMode {
    fn default() -> Self {
        ShapingMode::Shaped { alpha: 0.5 }
    }
}

/// The report's shaped reward σ(α·r_m) + (r_v − 1), with r_v ∈ {0, 1}.
pub fn shaped_reward(rm_score: f32, verifier_correct: bool, alpha: f32) -> f32 {
    let squashed = 1.0 / (1.0 + (-alpha * rm_score).exp());
    squashed + if verifier_correct { 0.0 } else { -1.0 }
}

/// The standard reward: a verifier, the RM when shaping uses it, and a shaping mode.
pub struct ShapedReward {
    verifier: Arc<dyn Verifier>,
    scorer: Option<Arc<dyn PreferenceScorer>>,
    mode: ShapingMode,
}

impl ShapedReward {
    /// Verifier only: r = r_v.
    pub fn verifier_only(verifier: Arc<dyn Verifier>) -> Self {
        Self {
            verifier,
            scorer: None,
            mode: ShapingMode::VerifierOnly,
        }
    }

    /// Verifier and RM combined as the report does, with scale α.
    pub fn shaped(
        verifier: Arc<dyn Verifier>,
        scorer: Arc<dyn PreferenceScorer>,
        alpha: f32,
    ) -> Self {
        Self {
            verifier,
            scorer: Some(scorer),
            mode: ShapingMode::Shaped { alpha },
        }
    }

    /// The shaping mode in use.
    pub fn mode(&self) -> ShapingMode {
        self.mode
    }
}

impl RewardFunction for ShapedReward {
    fn name(&self) -> &str {
        match self.mode {
            ShapingMode::Shaped { .. } => "shaped",
            ShapingMode::VerifierOnly => "verifier",
        }
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        let verdicts: Vec<Verdict> = inputs
            .iter()
            .map(|input| match input.gold {
                Some(gold) => self.verifier.verify(input.response, gold, input.dataset),
                None => Verdict::unparseable(None, "no gold answer to verify against"),
            })
            .collect();
        let rm_scores: Vec<Option<f32>> = match &self.scorer {
            Some(scorer) => {
                let pairs: Vec<(&str, &str)> =
                    inputs.iter().map(|i| (i.question, i.response)).collect();
                let scores = scorer.score(&pairs)?;
                anyhow::ensure!(
                    scores.len() == inputs.len(),
                    "reward model returned {} scores for {} completions",
                    scores.len(),
                    inputs.len()
                );
                scores.into_iter().map(Some).collect()
            }
            None => vec![None; inputs.len()],
        };
        Ok(verdicts
            .into_iter()
            .zip(rm_scores)
            .map(|(verdict, rm_score)| {
                let correct = verdict.outcome == Outcome::Correct;
                let reward = match self.mode {
                    ShapingMode::Shaped { alpha } => {
                        shaped_reward(rm_score.unwrap_or(0.0), correct, alpha)
                    }
                    ShapingMode::VerifierOnly => f32::from(u8::from(correct)),
                };
                RewardOutput {
                    reward,
                    verdict: Some(verdict),
                    rm_score,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ContainsGold;
    impl Verifier for ContainsGold {
        fn verify(&self, response: &str, gold: &str, _dataset: Option<&str>) -> Verdict {
            if response.contains(gold) {
                Verdict::correct(gold.to_string())
            } else {
                Verdict::incorrect(response.to_string())
            }
        }
    }

    struct LengthScorer;
    impl PreferenceScorer for LengthScorer {
        fn score(&self, pairs: &[(&str, &str)]) -> anyhow::Result<Vec<f32>> {
            Ok(pairs.iter().map(|(_, r)| r.len() as f32 - 2.0).collect())
        }
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// (r_m, r_v, α) → σ(α r_m) + r_v − 1, computed in f64 as the reference.
    #[test]
    fn shaped_reward_table() {
        let table = [
            (0.0f32, true, 0.5f32),
            (0.0, false, 0.5),
            (4.0, true, 0.5),
            (4.0, false, 0.5),
            (-4.0, true, 0.5),
            (-4.0, false, 0.5),
            (10.0, false, 1.0),
            (-30.0, true, 0.5),
            (2.5, true, 0.0),
        ];
        for (rm, correct, alpha) in table {
            let want = sigmoid(f64::from(alpha) * f64::from(rm)) + if correct { 0.0 } else { -1.0 };
            let got = shaped_reward(rm, correct, alpha);
            assert!(
                (f64::from(got) - want).abs() < 1e-6,
                "r_m={rm} r_v={correct}: {got} vs {want}"
            );
        }
        // Every correct completion outranks every wrong one, whatever the RM says.
        assert!(shaped_reward(-50.0, true, 0.5) > shaped_reward(50.0, false, 0.5));
    }

    #[test]
    fn modes_combine_verifier_and_rm() {
        let inputs = [
            RewardInput {
                question: "q",
                response: "42",
                gold: Some("42"),
                dataset: None,
            },
            RewardInput {
                question: "q",
                response: "x",
                gold: Some("42"),
                dataset: None,
            },
            RewardInput {
                question: "q",
                response: "42",
                gold: None,
                dataset: None,
            },
        ];
        let verifier: Arc<dyn Verifier> = Arc::new(ContainsGold);
        let scorer: Arc<dyn PreferenceScorer> = Arc::new(LengthScorer);

        let v = ShapedReward::verifier_only(verifier.clone())
            .score_batch(&inputs)
            .unwrap();
        assert_eq!(
            v.iter().map(|o| o.reward).collect::<Vec<_>>(),
            vec![1.0, 0.0, 0.0]
        );
        assert!(v[0].is_correct() && !v[1].is_correct());
        assert_eq!(v[2].verdict.as_ref().unwrap().outcome, Outcome::Unparseable);

        let s = ShapedReward::shaped(verifier, scorer, 0.5)
            .score_batch(&inputs)
            .unwrap();
        assert!((s[0].reward - shaped_reward(0.0, true, 0.5)).abs() < 1e-7);
        assert!((s[1].reward - shaped_reward(-1.0, false, 0.5)).abs() < 1e-7);
        assert_eq!(s[1].rm_score, Some(-1.0));
    }
}
