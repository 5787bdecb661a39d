//! The reward-model scorer: a Qwen2 backbone with a scalar head read at the last non-padding
//! token, in either Hugging Face layout:
//!
//! - `Qwen2ForRewardModel` (Qwen2.5-Math-RM): `score.0` Linear(hidden, hidden) → ReLU →
//!   `score.2` Linear(hidden, 1), both with bias (the names of the published checkpoints' remote
//!   code, also what vLLM's `qwen2_rm.py` loads);
//! - `Qwen2ForSequenceClassification` (transformers): `score` Linear(hidden, 1) without bias.
//!
//! The reward token is the last position whose attention mask is 1, for left and right padding
//! alike; token ids are never used to find it (a real token equal to the pad id stays real).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use mathrl::model::layers::linear;
use mathrl::model::weights::{checkpoint_builder, tensors_builder, WeightStore};
use mathrl::model::{
    common_prefix_len, packing_pays, Qwen2Config, Qwen2Model, SharedPrefixBatch, SharedPrefixRow,
    Trainable,
};
use mathrl::policy::{save_pretrained, with_masters};
use mathrl::{ChatMessage, Policy, Tokenizer};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::shaping::PreferenceScorer;

/// Errors of the reward model.
#[derive(Debug, thiserror::Error)]
pub enum RewardModelError {
    /// Loading, running or saving the underlying model failed.
    #[error(transparent)]
    Core(#[from] mathrl::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// config.json names an architecture that is not a supported reward model.
    #[error("{path}: architecture `{found}` is not a reward model (expected Qwen2ForRewardModel or Qwen2ForSequenceClassification)")]
    Architecture {
        /// The config file.
        path: PathBuf,
        /// The architecture it names.
        found: String,
    },
    /// Malformed input rows.
    #[error("{0}")]
    Input(String),
}

type Result<T> = std::result::Result<T, RewardModelError>;

/// Which scalar head sits on the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardHeadKind {
    /// Qwen2.5-Math-RM: `score.0` (hidden→hidden, bias) → ReLU → `score.2` (hidden→1, bias).
    Qwen25MathRm,
    /// transformers' `Qwen2ForSequenceClassification` with one label: `score` (hidden→1, no bias).
    SequenceClassification,
}

impl RewardHeadKind {
    /// The `architectures` entry of config.json for this head.
    pub fn architecture(self) -> &'static str {
        match self {
            Self::Qwen25MathRm => "Qwen2ForRewardModel",
            Self::SequenceClassification => "Qwen2ForSequenceClassification",
        }
    }

    fn from_architecture(name: &str) -> Option<Self> {
        match name {
            "Qwen2ForRewardModel" => Some(Self::Qwen25MathRm),
            "Qwen2ForSequenceClassification" => Some(Self::SequenceClassification),
            _ => None,
        }
    }
}

/// The scalar head.
#[derive(Debug, Clone)]
enum RewardHead {
    Mlp { hidden: Linear, out: Linear },
    Linear { score: Linear },
}

impl RewardHead {
    fn new(kind: RewardHeadKind, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(match kind {
            RewardHeadKind::Qwen25MathRm => RewardHead::Mlp {
                hidden: linear(hidden, hidden, true, vb.pp("score.0"))?,
                out: linear(hidden, 1, true, vb.pp("score.2"))?,
            },
            RewardHeadKind::SequenceClassification => RewardHead::Linear {
                score: linear(hidden, 1, false, vb.pp("score"))?,
            },
        })
    }

    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        Ok(match self {
            RewardHead::Mlp { hidden, out } => out.forward(&hidden.forward(h)?.relu()?)?,
            RewardHead::Linear { score } => score.forward(h)?,
        })
    }
}

/// A Qwen2 reward model: one scalar per sequence.
#[derive(Clone)]
pub struct RewardModel {
    backbone: Qwen2Model,
    head: RewardHead,
    kind: RewardHeadKind,
    config: Qwen2Config,
    store: WeightStore,
    dtype: DType,
    device: Device,
    source: Option<PathBuf>,
    save_dtype: Option<DType>,
}

impl RewardModel {
    /// Loads a reward model from a Hugging Face directory, or a Hub id in the local cache (see
    /// [`mathrl::hub`]); the head follows `architectures`.
    pub fn load(
        dir: impl AsRef<Path>,
        device: &Device,
        dtype: Option<DType>,
        trainable: Trainable,
    ) -> Result<Self> {
        let dir = &mathrl::hub::resolve_model_dir(dir.as_ref())
            .map_err(|e| mathrl::Error::Input(format!("reward model: {e}")))?;
        let config_path = dir.join("config.json");
        let config = Qwen2Config::from_file(&config_path)?;
        let arch = config.architecture.clone().unwrap_or_default();
        let kind =
            RewardHeadKind::from_architecture(&arch).ok_or(RewardModelError::Architecture {
                path: config_path,
                found: arch,
            })?;
        let dtype = dtype.unwrap_or_else(|| mathrl::device::default_dtype(device));
        let (vb, store) = checkpoint_builder(dir, dtype, device, trainable)?;
        let mut rm = Self::build(&config, kind, vb, store, dtype, device)
            .map_err(|e| mathrl::Error::Weights(format!("loading {}: {e}", dir.display())))?;
        rm.source = Some(dir.to_path_buf());
        Ok(rm)
    }

    /// A reward model whose backbone is a copy of `policy`'s and whose head is freshly initialised
    /// (weights ~ N(0, 0.02), biases 0) from `seed` — the usual start of RM training.
    pub fn from_policy(
        policy: &Policy,
        kind: RewardHeadKind,
        seed: u64,
        trainable: Trainable,
    ) -> Result<Self> {
        let cfg = policy.config();
        let mut tensors: Vec<(String, Tensor)> = policy
            .named_tensors()
            .into_iter()
            .filter(|(name, _)| name.starts_with("model."))
            .map(|(n, t)| Ok((n, t.copy()?)))
            .collect::<Result<_>>()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 0.02).expect("0.02 is a valid standard deviation");
        let mut random = |shape: (usize, usize)| -> Result<Tensor> {
            let values: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| normal.sample(&mut rng))
                .collect();
            Ok(Tensor::from_vec(values, shape, policy.device())?)
        };
        let h = cfg.hidden_size;
        let zeros = |n: usize| Tensor::zeros(n, DType::F32, policy.device());
        match kind {
            RewardHeadKind::Qwen25MathRm => {
                tensors.push(("score.0.weight".into(), random((h, h))?));
                tensors.push(("score.0.bias".into(), zeros(h)?));
                tensors.push(("score.2.weight".into(), random((1, h))?));
                tensors.push(("score.2.bias".into(), zeros(1)?));
            }
            RewardHeadKind::SequenceClassification => {
                tensors.push(("score.weight".into(), random((1, h))?))
            }
        }
        let mut config = cfg.clone();
        config.architecture = Some(kind.architecture().into());
        config.num_labels = Some(1);
        config.tie_word_embeddings = false;
        let (vb, store) = tensors_builder(tensors, policy.dtype(), policy.device(), trainable);
        let mut rm = Self::build(&config, kind, vb, store, policy.dtype(), policy.device())?;
        rm.source = policy.source_dir().map(Path::to_path_buf);
        Ok(rm)
    }

    fn build(
        config: &Qwen2Config,
        kind: RewardHeadKind,
        vb: VarBuilder,
        store: WeightStore,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let backbone = Qwen2Model::new(config, vb.pp("model"))?;
        let head = RewardHead::new(kind, config.hidden_size, vb)?;
        Ok(Self {
            backbone,
            head,
            kind,
            config: config.clone(),
            store,
            dtype,
            device: device.clone(),
            source: None,
            save_dtype: None,
        })
    }

    /// Which head this model has.
    pub fn kind(&self) -> RewardHeadKind {
        self.kind
    }

    /// The backbone's configuration.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable variables by name (empty unless loaded trainable).
    pub fn vars(&self) -> Vec<(String, candle_core::Var)> {
        self.store.vars()
    }

    /// Every weight by its Hugging Face name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.store.named_tensors()
    }

    /// The head applied to every position's final-norm hidden state: `[B, T]` token scores.
    pub fn token_scores(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let hidden = self.backbone.forward(input_ids, attention_mask)?;
        Ok(self
            .head
            .forward(&hidden)?
            .squeeze(candle_core::D::Minus1)?)
    }

    /// Rewards `[B]` (f32): the head at each row's last non-padding token. Differentiable when
    /// the model was loaded trainable.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let mask = mathrl::model::mask_rows(input_ids, attention_mask)?;
        let (b, t) = input_ids.dims2()?;
        let mut rows = Vec::with_capacity(b);
        for (r, m) in mask.iter().enumerate() {
            let last = m.iter().rposition(|&x| x != 0).ok_or_else(|| {
                RewardModelError::Input(format!(
                    "row {r} has no real token (its attention mask is all 0)"
                ))
            })?;
            rows.push((r * t + last) as u32);
        }
        let hidden = self.backbone.forward(input_ids, attention_mask)?;
        let d = hidden.dim(2)?;
        let picked = hidden
            .reshape((b * t, d))?
            .index_select(&Tensor::new(rows, &self.device)?, 0)?;
        self.rewards_of(&picked)
    }

    /// Rewards `[n]` (f32) of the final hidden states `[n, hidden]` of sequences' last tokens.
    fn rewards_of(&self, last: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(last)?.squeeze(1)?.to_dtype(DType::F32)?)
    }

    /// Token ids of a (question, response) pair through the chat template: system prompt (the
    /// template's default), user question, assistant response.
    pub fn pair_ids(tokenizer: &Tokenizer, question: &str, response: &str) -> Result<Vec<u32>> {
        let messages = [
            ChatMessage::new("user", question),
            ChatMessage::new("assistant", response),
        ];
        let text = tokenizer.apply_chat_template(&messages, false)?;
        Ok(tokenizer.encode(&text)?)
    }

    /// Rewards of (question, response) pairs, `batch_size` rows per forward pass, right-padded.
    pub fn score_pairs(
        &self,
        tokenizer: &Tokenizer,
        pairs: &[(&str, &str)],
        batch_size: usize,
    ) -> Result<Vec<f32>> {
        let ids = pairs
            .iter()
            .map(|(q, r)| Self::pair_ids(tokenizer, q, r))
            .collect::<Result<Vec<_>>>()?;
        self.score_ids(&ids, batch_size)
    }

    /// Rewards of token sequences of any lengths, `batch_size` sequences per forward pass: one
    /// packed row when they share a prefix and that is cheaper ([`packing_pays`]; a group's
    /// responses to one question share the template and the question), right-padded rows
    /// otherwise. The two agree up to float rounding. Repeats within a chunk are scored once
    /// (a group's completions often repeat one another).
    pub fn score_ids(&self, sequences: &[Vec<u32>], batch_size: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(sequences.len());
        for chunk in sequences.chunks(batch_size.max(1)) {
            let mut unique: Vec<&[u32]> = Vec::with_capacity(chunk.len());
            let index_of: Vec<usize> = chunk
                .iter()
                .map(|s| match unique.iter().position(|u| *u == s.as_slice()) {
                    Some(i) => i,
                    None => {
                        unique.push(s);
                        unique.len() - 1
                    }
                })
                .collect();
            let rewards = match self.score_packed(&unique)? {
                Some(rewards) => rewards,
                None => self.score_padded(&unique)?,
            };
            let rewards = rewards.to_vec1::<f32>()?;
            out.extend(index_of.iter().map(|&i| rewards[i]));
        }
        Ok(out)
    }

    /// Rewards `[n]` of `sequences` as one packed row, or `None` when packing does not pay.
    fn score_packed(&self, sequences: &[&[u32]]) -> Result<Option<Tensor>> {
        let prefix = common_prefix_len(sequences);
        let width = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        let row = SharedPrefixRow {
            prefix: &sequences[0][..prefix],
            suffixes: sequences.iter().map(|s| &s[prefix..]).collect(),
        };
        if sequences.len() < 2
            || prefix == 0
            || !packing_pays(&self.config, sequences.len(), width, row.len())
        {
            return Ok(None);
        }
        let packed = SharedPrefixBatch::new(&[row], &self.device)?;
        let hidden = packed.forward(&self.backbone)?;
        let (g, t, d) = hidden.dims3()?;
        let picked = hidden
            .reshape((g * t, d))?
            .index_select(&packed.last_token_indices()?, 0)?;
        Ok(Some(self.rewards_of(&picked)?))
    }

    /// Rewards `[n]` of `chunk` as right-padded rows.
    fn score_padded(&self, chunk: &[&[u32]]) -> Result<Tensor> {
        let width = chunk.iter().map(|s| s.len()).max().unwrap_or(0);
        let pad = self.config.pad_token_id.unwrap_or(0);
        let ids: Vec<Vec<u32>> = chunk
            .iter()
            .map(|s| {
                s.iter()
                    .copied()
                    .chain(std::iter::repeat(pad))
                    .take(width)
                    .collect()
            })
            .collect();
        let mask: Vec<Vec<u32>> = chunk
            .iter()
            .map(|s| (0..width).map(|i| u32::from(i < s.len())).collect())
            .collect();
        self.forward(
            &Tensor::new(ids, &self.device)?,
            &Tensor::new(mask, &self.device)?,
        )
    }

    /// Saves in `dtype` from now on instead of the dtype of the loaded files; `None` goes back
    /// to the files' dtype (as [`Policy::with_save_dtype`]).
    pub fn with_save_dtype(mut self, dtype: Option<DType>) -> Self {
        self.save_dtype = dtype;
        self
    }

    /// Saves in the Hugging Face layout of its head (config.json names the architecture), in the
    /// save dtype: the override, else the loaded files' dtype, else the compute dtype.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.save_with_masters(dir, &[])
    }

    /// Like [`RewardModel::save`], writing the f32 `masters` (by name) in place of the compute
    /// copies of those weights.
    pub fn save_with_masters(
        &self,
        dir: impl AsRef<Path>,
        masters: &[(String, Tensor)],
    ) -> Result<()> {
        let dtype = match self.save_dtype {
            Some(dtype) => dtype,
            None => self.config.weights_dtype()?.unwrap_or(self.dtype),
        };
        let mut config = self.config.to_json(dtype);
        config["architectures"] = serde_json::json!([self.kind.architecture()]);
        config["num_labels"] = 1.into();
        Ok(save_pretrained(
            dir.as_ref(),
            &config,
            &with_masters(self.named_tensors(), masters),
            dtype,
            self.source.as_deref(),
        )?)
    }
}

/// A reward model with the tokenizer it reads text with: the RM as a [`PreferenceScorer`] of
/// (question, response) text pairs, as reward shaping uses it.
#[derive(Clone)]
pub struct TokenizedRewardModel {
    rm: RewardModel,
    tokenizer: Tokenizer,
    batch_size: usize,
}

impl TokenizedRewardModel {
    /// `rm` reading text through `tokenizer`'s chat template, `batch_size` pairs per forward pass.
    pub fn new(rm: RewardModel, tokenizer: Tokenizer, batch_size: usize) -> Self {
        Self {
            rm,
            tokenizer,
            batch_size,
        }
    }

    /// The reward model.
    pub fn model(&self) -> &RewardModel {
        &self.rm
    }
}

impl PreferenceScorer for TokenizedRewardModel {
    fn score(&self, pairs: &[(&str, &str)]) -> anyhow::Result<Vec<f32>> {
        Ok(self
            .rm
            .score_pairs(&self.tokenizer, pairs, self.batch_size)?)
    }
}
