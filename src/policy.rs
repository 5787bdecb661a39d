//! `Policy`: a Qwen2 causal LM together with its weight store, loaded from and saved to a Hugging
//! Face model directory.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use crate::device::default_dtype;
use crate::model::weights::{
    checkpoint_builder, random_builder, save_safetensors, tensors_builder, WeightStore,
};
use crate::model::{Qwen2Config, Qwen2ForCausalLM, Trainable};
use crate::{Error, Result};

/// Files of a model directory that are not weights and are copied as they are on save.
pub const SIDE_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    crate::tokenizer::CHAT_TEMPLATE_FILE,
    "generation_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
];

/// A Qwen2 causal LM with the store of its weights.
#[derive(Clone)]
pub struct Policy {
    model: Qwen2ForCausalLM,
    store: WeightStore,
    dtype: DType,
    device: Device,
    source: Option<PathBuf>,
    save_dtype: Option<DType>,
}

impl Policy {
    /// Loads `config.json` (with generation_config.json's stop ids) and the safetensors of `dir`,
    /// a model directory or a Hub id in the local cache (see [`crate::hub`]); `dtype` defaults to
    /// the device's compute dtype (f32 on CPU, bf16 on GPU).
    pub fn load(
        dir: impl AsRef<Path>,
        device: &Device,
        dtype: Option<DType>,
        trainable: Trainable,
    ) -> Result<Self> {
        let dir = &crate::hub::resolve_model_dir(dir.as_ref())?;
        let config = Qwen2Config::from_model_dir(dir)?;
        let dtype = dtype.unwrap_or_else(|| default_dtype(device));
        let (vb, store) = checkpoint_builder(dir, dtype, device, trainable)?;
        let model = Qwen2ForCausalLM::new(&config, vb)
            .map_err(|e| Error::Weights(format!("loading {}: {e}", dir.display())))?;
        Ok(Self {
            model,
            store,
            dtype,
            device: device.clone(),
            source: Some(dir.to_path_buf()),
            save_dtype: None,
        })
    }

    /// A model with seeded random weights (linear and embedding weights ~ N(0, 0.02), norm gains 1).
    pub fn random(
        config: &Qwen2Config,
        seed: u64,
        device: &Device,
        dtype: DType,
        trainable: Trainable,
    ) -> Result<Self> {
        let (vb, store) = random_builder(seed, dtype, device, trainable);
        let model = Qwen2ForCausalLM::new(config, vb)?;
        Ok(Self {
            model,
            store,
            dtype,
            device: device.clone(),
            source: None,
            save_dtype: None,
        })
    }

    /// A model built from named tensors (e.g. weights published by the learner).
    pub fn from_tensors(
        config: &Qwen2Config,
        tensors: Vec<(String, Tensor)>,
        device: &Device,
        dtype: DType,
        trainable: Trainable,
    ) -> Result<Self> {
        let (vb, store) = tensors_builder(tensors, dtype, device, trainable);
        let model = Qwen2ForCausalLM::new(config, vb)?;
        Ok(Self {
            model,
            store,
            dtype,
            device: device.clone(),
            source: None,
            save_dtype: None,
        })
    }

    /// Copies the tokenizer and other [`SIDE_FILES`] of `dir` into every directory this policy is
    /// saved to (for a policy built from random weights or published tensors).
    pub fn with_side_files_from(mut self, dir: impl Into<PathBuf>) -> Self {
        self.source = Some(dir.into());
        self
    }

    /// The model.
    pub fn model(&self) -> &Qwen2ForCausalLM {
        &self.model
    }

    /// The model's configuration.
    pub fn config(&self) -> &Qwen2Config {
        self.model.config()
    }

    /// The store of the weights.
    pub fn store(&self) -> &WeightStore {
        &self.store
    }

    /// The trainable variables by name, in name order (empty unless loaded trainable).
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.store.vars()
    }

    /// Every weight by its Hugging Face name, in name order.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.store.named_tensors()
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.store.num_parameters()
    }

    /// A frozen copy (as [`Policy::frozen_copy`]) whose weights live on `device`: the rollout
    /// copy that the learner publishes once per version for every rollout actor of that device.
    pub fn frozen_copy_on(&self, device: &Device) -> Result<Self> {
        let same_device = device.same_device(&self.device);
        let tensors = self
            .named_tensors()
            .into_iter()
            .map(|(n, t)| {
                // `to_device` onto the same device shares the storage the optimiser updates.
                let t = if same_device {
                    t.copy()?
                } else {
                    t.to_device(device)?
                };
                Ok((n, t.detach()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut copy =
            Self::from_tensors(self.config(), tensors, device, self.dtype, Trainable::No)?;
        copy.source = self.source.clone();
        copy.save_dtype = self.save_dtype;
        Ok(copy)
    }

    /// This policy with its model as the CPU rollout engine samples with it
    /// ([`Qwen2ForCausalLM::for_cpu_decoding`]); its named tensors (checkpoints, checksums) stay
    /// as they are.
    pub fn for_cpu_decoding(&self, bf16_weights: bool) -> Result<Self> {
        Ok(Self {
            model: self.model.for_cpu_decoding(bf16_weights)?,
            ..self.clone()
        })
    }

    /// A copy of this model whose weights are detached snapshots: it tracks no gradient and does
    /// not change when the optimiser updates this one (a reference model, or a rollout copy).
    pub fn frozen_copy(&self) -> Result<Self> {
        self.frozen_copy_on(&self.device)
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The directory this model was loaded from, if any.
    pub fn source_dir(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Saves in `dtype` from now on instead of the dtype of the loaded files (e.g. f32 to keep a
    /// bf16 run's full precision); `None` goes back to the files' dtype.
    pub fn with_save_dtype(mut self, dtype: Option<DType>) -> Self {
        self.save_dtype = dtype;
        self
    }

    /// The dtype [`Policy::save`] writes: the override, else the dtype of the files it was loaded
    /// from (config.json's `dtype`/`torch_dtype`), else the compute dtype.
    pub fn save_dtype(&self) -> Result<DType> {
        match self.save_dtype {
            Some(dtype) => Ok(dtype),
            None => Ok(self.config().weights_dtype()?.unwrap_or(self.dtype)),
        }
    }

    /// Saves in the Hugging Face layout: `config.json`, `model.safetensors` (same tensor names, in
    /// [`Policy::save_dtype`]) and the tokenizer files of the source directory.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.save_with_masters(dir, &[])
    }

    /// Like [`Policy::save`], writing the f32 `masters` (by name) in place of the compute copies
    /// of those weights, so that a bf16 run saved in f32 keeps the bits its optimiser kept.
    pub fn save_with_masters(
        &self,
        dir: impl AsRef<Path>,
        masters: &[(String, Tensor)],
    ) -> Result<()> {
        let save_dtype = self.save_dtype()?;
        let config = self.config().to_json(save_dtype);
        save_pretrained(
            dir.as_ref(),
            &config,
            &with_masters(self.named_tensors(), masters),
            save_dtype,
            self.source_dir(),
        )
    }
}

/// `tensors` with each one named in `masters` replaced by its master copy.
pub fn with_masters(
    tensors: Vec<(String, Tensor)>,
    masters: &[(String, Tensor)],
) -> Vec<(String, Tensor)> {
    if masters.is_empty() {
        return tensors;
    }
    let masters: std::collections::HashMap<&str, &Tensor> =
        masters.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tensors
        .into_iter()
        .map(|(name, t)| match masters.get(name.as_str()) {
            Some(master) => (name, (*master).clone()),
            None => (name, t),
        })
        .collect()
}

/// Writes a Hugging Face model directory: `config.json`, `model.safetensors` in `dtype`, and the
/// [`SIDE_FILES`] found in `copy_from`. Each file is written under a temporary name and renamed.
pub fn save_pretrained(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &[(String, Tensor)],
    dtype: DType,
    copy_from: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join("model.safetensors.tmp");
    save_safetensors(tensors, dtype, &tmp)?;
    rename(&tmp, &dir.join("model.safetensors"))?;
    let text = serde_json::to_string_pretty(config).expect("a JSON value always serialises");
    write_atomic(&dir.join("config.json"), text.as_bytes())?;
    if let Some(src) = copy_from {
        if src != dir {
            for name in SIDE_FILES {
                let from = src.join(name);
                if from.is_file() {
                    let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
                    write_atomic(&dir.join(name), &bytes)?;
                }
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    rename(&tmp, path)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}
