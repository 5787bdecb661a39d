//! `RewardSpec`: a reward as data. A recipe chooses one, builds its reward from it, and sends the
//! same spec to remote reward workers (it travels in the cluster's setup message), which build
//! the same reward from it and their own copy of the RM — whatever recipe started the run.
//!
//! On the wire and in files it is JSON with a `kind` tag: `{"kind": "checker"}`, or
//! `{"kind": "shaped", "alpha": 0.5, "rm_batch_size": 16}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use mathrl::model::Trainable;
use mathrl::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::checker::{Checker, CheckerProfile};
use crate::reward_model::{RewardModel, RewardModelError, TokenizedRewardModel};
use crate::shaping::{RewardFunction, ShapedReward};

/// Which reward a run trains with. The answer checker is the strict profile in every kind: an RL
/// reward must not be gameable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardSpec {
    /// r = r_v ∈ {0, 1}: the checker's verdict alone.
    Checker,
    /// r = σ(α·r_m) + (r_v − 1): the Qwen2.5-Math shaped reward, with the RM's score r_m.
    Shaped {
        /// Scale α of the RM score (the report's 0.5).
        alpha: f32,
        /// (question, response) pairs per RM forward pass.
        #[serde(default = "default_rm_batch_size")]
        rm_batch_size: usize,
    },
}

fn default_rm_batch_size() -> usize {
    16
}

/// What building a reward needs besides its spec: where this process keeps the RM, and the
/// device to score on.
#[derive(Debug, Clone)]
pub struct RewardResources<'a> {
    /// The reward model's directory (with its tokenizer), for kinds that use the RM.
    pub rm_dir: Option<&'a Path>,
    /// Where the RM runs.
    pub device: &'a Device,
    /// The RM's compute dtype (`None`: the device's, f32 on CPU and bf16 on CUDA).
    pub dtype: Option<DType>,
}

/// Why a reward could not be built from its spec.
#[derive(Debug, thiserror::Error)]
pub enum RewardSpecError {
    /// The spec uses the RM but no RM directory was given.
    #[error("the `{kind}` reward uses the reward model, but no reward-model directory was given")]
    MissingRewardModel {
        /// The spec's kind.
        kind: &'static str,
    },
    /// The RM could not be loaded.
    #[error("reward model {path}: {source}")]
    RewardModel {
        /// Its directory.
        path: PathBuf,
        /// Why.
        source: RewardModelError,
    },
    /// The RM directory has no usable tokenizer (the RM must read text as it was trained to).
    #[error("reward model {path}: its tokenizer: {source}")]
    Tokenizer {
        /// The RM's directory.
        path: PathBuf,
        /// Why.
        source: mathrl::Error,
    },
}

impl RewardSpec {
    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            RewardSpec::Checker => "checker",
            RewardSpec::Shaped { .. } => "shaped",
        }
    }

    /// Whether building it needs a reward model.
    pub fn uses_reward_model(&self) -> bool {
        matches!(self, RewardSpec::Shaped { .. })
    }

    /// The reward function this spec describes.
    pub fn build(
        &self,
        resources: &RewardResources<'_>,
    ) -> Result<Arc<dyn RewardFunction>, RewardSpecError> {
        let verifier = Arc::new(Checker::new(CheckerProfile::Strict));
        Ok(match *self {
            RewardSpec::Checker => Arc::new(ShapedReward::verifier_only(verifier)),
            RewardSpec::Shaped {
                alpha,
                rm_batch_size,
            } => {
                let dir = resources
                    .rm_dir
                    .ok_or(RewardSpecError::MissingRewardModel { kind: self.kind() })?;
                let rm = RewardModel::load(dir, resources.device, resources.dtype, Trainable::No)
                    .map_err(|source| RewardSpecError::RewardModel {
                    path: dir.to_path_buf(),
                    source,
                })?;
                let tokenizer =
                    Tokenizer::from_dir(dir).map_err(|source| RewardSpecError::Tokenizer {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                let scorer = TokenizedRewardModel::new(rm, tokenizer, rm_batch_size);
                Arc::new(ShapedReward::shaped(verifier, Arc::new(scorer), alpha))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shaping::{shaped_reward, RewardInput};

    fn input(response: &str) -> RewardInput<'_> {
        RewardInput {
            question: "What is 2 + 3?",
            response,
            gold: Some("5"),
            dataset: None,
        }
    }

    #[test]
    fn specs_round_trip_through_json_in_the_wire_layout() {
        for (spec, json) in [
            (RewardSpec::Checker, serde_json::json!({"kind": "checker"})),
            (
                RewardSpec::Shaped {
                    alpha: 0.5,
                    rm_batch_size: 4,
                },
                serde_json::json!({"kind": "shaped", "alpha": 0.5, "rm_batch_size": 4}),
            ),
        ] {
            assert_eq!(serde_json::to_value(spec).unwrap(), json);
            assert_eq!(serde_json::from_value::<RewardSpec>(json).unwrap(), spec);
        }
        let defaulted: RewardSpec =
            serde_json::from_str(r#"{"kind": "shaped", "alpha": 1.0}"#).unwrap();
        assert_eq!(
            defaulted,
            RewardSpec::Shaped {
                alpha: 1.0,
                rm_batch_size: 16
            }
        );
        let err = serde_json::from_str::<RewardSpec>(r#"{"kind": "rm"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `rm`"), "{err}");
        let err =
            serde_json::from_str::<RewardSpec>(r#"{"kind": "shaped", "alpha": 1, "beta": 2}"#)
                .unwrap_err();
        assert!(err.to_string().contains("beta"), "{err}");
    }

    #[test]
    fn the_checker_reward_scores_verdicts_and_shaped_needs_an_rm() {
        let device = Device::Cpu;
        let resources = RewardResources {
            rm_dir: None,
            device: &device,
            dtype: None,
        };
        let checker = RewardSpec::Checker.build(&resources).unwrap();
        let out = checker
            .score_batch(&[input("\\boxed{5}"), input("\\boxed{6}")])
            .unwrap();
        assert_eq!((out[0].reward, out[1].reward), (1.0, 0.0));
        assert!(out[0].rm_score.is_none());

        let shaped = RewardSpec::Shaped {
            alpha: 0.5,
            rm_batch_size: 2,
        };
        let err = shaped.build(&resources).err().unwrap().to_string();
        assert!(
            err.contains("`shaped` reward uses the reward model"),
            "{err}"
        );
    }

    #[test]
    fn the_shaped_reward_is_the_reports_formula_over_the_rms_scores() {
        // The embedded default's RM, with its tokenizer.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/assets/tiny-math-rm");
        let device = Device::Cpu;
        let spec = RewardSpec::Shaped {
            alpha: 0.5,
            rm_batch_size: 2,
        };
        let reward = spec
            .build(&RewardResources {
                rm_dir: Some(&dir),
                device: &device,
                dtype: None,
            })
            .unwrap();
        let responses = [
            "\\boxed{5}",
            "It is \\boxed{6}.",
            "2 + 3 = 5, so \\boxed{5}",
        ];
        let inputs: Vec<RewardInput> = responses.iter().map(|r| input(r)).collect();
        let out = reward.score_batch(&inputs).unwrap();

        let rm = RewardModel::load(&dir, &device, None, Trainable::No).unwrap();
        let tokenizer = Tokenizer::from_dir(&dir).unwrap();
        let pairs: Vec<(&str, &str)> = responses.iter().map(|r| ("What is 2 + 3?", *r)).collect();
        let scores = rm.score_pairs(&tokenizer, &pairs, 2).unwrap();
        for ((o, score), correct) in out.iter().zip(&scores).zip([true, false, true]) {
            assert_eq!(o.rm_score, Some(*score));
            assert_eq!(o.is_correct(), correct);
            assert_eq!(o.reward, shaped_reward(*score, correct, 0.5));
        }
    }
}
