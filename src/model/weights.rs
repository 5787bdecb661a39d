//! Where a model's tensors come from (a Hugging Face checkpoint or a seeded random init) and how
//! they are saved back in the same layout.
//!
//! Models are built through candle's [`VarBuilder`]; the backends here add what candle's own do
//! not: sharded checkpoints, shape errors that name the tensor and both shapes, seeded
//! initialisation (candle's CPU RNG cannot be seeded), and trainable weights registered in a
//! [`VarMap`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::{Error, Result};

/// The safetensors files of a checkpoint directory: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::Weights(format!(
            "{}: no model.safetensors or model.safetensors.index.json",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index.clone(),
        source,
    })?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Weights(format!("{}: no `weight_map` object", index.display())))?;
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|f| f.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !f.is_file())
        .filter_map(|f| f.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    if !missing.is_empty() {
        // A snapshot of the Hub cache says which model to download again.
        let how = match crate::hub::HubId::from_snapshot_dir(dir) {
            Some(id) => format!("download it again with {}", id.download_command()),
            None => "copy the checkpoint again with every shard".to_string(),
        };
        return Err(Error::Weights(format!(
            "{}: {} of {} shards missing ({}); {how}",
            index.display(),
            missing.len(),
            files.len(),
            missing.join(", ")
        )));
    }
    Ok(files)
}

/// Whether the tensors a model asks for become trainable variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trainable {
    /// Registered as `Var`s in the builder's [`VarMap`]: gradients flow, the optimiser updates them.
    Yes,
    /// Plain tensors: no gradient is tracked through them (generation, scoring, references).
    No,
}

/// Tensors of a memory-mapped checkpoint, checked against the shapes the model expects.
struct CheckpointBackend {
    files: MmapedSafetensors,
    source: String,
    store: WeightStore,
}

/// Tensors drawn from a seeded RNG, with the init each layer asks for.
struct RandomBackend {
    rng: Mutex<StdRng>,
    store: WeightStore,
}

/// Every tensor a model took from its builder, by Hugging Face name, and (when trainable) the
/// variables an optimiser updates. Clones share the same store.
#[derive(Clone)]
pub struct WeightStore {
    trainable: Trainable,
    tensors: Arc<Mutex<BTreeMap<String, Tensor>>>,
    varmap: VarMap,
}

impl WeightStore {
    /// An empty store.
    pub fn new(trainable: Trainable) -> Self {
        Self {
            trainable,
            tensors: Arc::default(),
            varmap: VarMap::new(),
        }
    }

    /// Whether the tensors are trainable variables.
    pub fn trainable(&self) -> Trainable {
        self.trainable
    }

    /// Every tensor by name, in name order (trainable ones share storage with their var).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let tensors = self.tensors.lock().expect("weight store lock poisoned");
        tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    }

    /// The variables by name (empty when not trainable).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The variables in name order (empty when not trainable).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap lock poisoned");
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        let tensors = self.tensors.lock().expect("weight store lock poisoned");
        tensors.values().map(Tensor::elem_count).sum()
    }

    fn keep(&self, name: &str, tensor: Tensor) -> candle_core::Result<Tensor> {
        let tensor = match self.trainable {
            Trainable::No => tensor,
            Trainable::Yes => {
                let var = Var::from_tensor(&tensor)?;
                let t = var.as_tensor().clone();
                let mut data = self.varmap.data().lock().expect("varmap lock poisoned");
                data.insert(name.to_string(), var);
                t
            }
        };
        let mut tensors = self.tensors.lock().expect("weight store lock poisoned");
        tensors.insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }
}

/// Tensors already in memory (e.g. weights received from the learner), checked by shape.
struct TensorsBackend {
    tensors: HashMap<String, Tensor>,
    store: WeightStore,
}

impl candle_nn::var_builder::SimpleBackend for TensorsBackend {
    fn get(
        &self,
        expected: Shape,
        name: &str,
        _init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "tensor `{name}` is missing (model expects shape {expected:?})"
            ))
        })?;
        if t.dims() != expected.dims() {
            candle_core::bail!(
                "tensor `{name}` has shape {:?}, the model expects {expected:?}",
                t.dims()
            );
        }
        self.store.keep(name, t.to_device(dev)?.to_dtype(dtype)?)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("tensor `{name}` is missing")))?;
        self.store.keep(name, t.to_device(dev)?.to_dtype(dtype)?)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

impl candle_nn::var_builder::SimpleBackend for CheckpointBackend {
    fn get(
        &self,
        expected: Shape,
        name: &str,
        _init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let view = self.files.get(name).map_err(|_| {
            candle_core::Error::Msg(format!(
                "tensor `{name}` is missing from {} (model expects shape {expected:?})",
                self.source
            ))
        })?;
        if view.shape() != expected.dims() {
            candle_core::bail!(
                "tensor `{name}` in {} has shape {:?}, the model expects {expected:?}",
                self.source,
                view.shape()
            );
        }
        let tensor = self.files.load(name, dev)?.to_dtype(dtype)?;
        self.store.keep(name, tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let tensor = self.files.load(name, dev)?.to_dtype(dtype)?;
        self.store.keep(name, tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.files.get(name).is_ok()
    }
}

impl candle_nn::var_builder::SimpleBackend for RandomBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let values: Vec<f32> = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => {
                let normal = Normal::new(mean as f32, stdev as f32)
                    .map_err(|e| candle_core::Error::Msg(format!("init of {name}: {e}")))?;
                let mut rng = self.rng.lock().expect("rng lock poisoned");
                (0..n).map(|_| normal.sample(&mut *rng)).collect()
            }
            other => candle_core::bail!(
                "init {other:?} of {name} is not supported by the seeded initialiser"
            ),
        };
        let tensor = Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?;
        self.store.keep(name, tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("tensor `{name}` has no shape to initialise from")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

/// A [`VarBuilder`] over a checkpoint's safetensors, with the [`WeightStore`] that records every
/// tensor the model takes (so it can be trained and saved).
pub fn checkpoint_builder(
    dir: &Path,
    dtype: DType,
    device: &Device,
    trainable: Trainable,
) -> Result<(VarBuilder<'static>, WeightStore)> {
    let files = checkpoint_files(dir)?;
    // SAFETY: the files are memory-mapped read-only; like every mmap-based loader (candle,
    // safetensors, transformers) we rely on them not being truncated while the model loads.
    let mapped = unsafe { MmapedSafetensors::multi(&files)? };
    let store = WeightStore::new(trainable);
    let backend = CheckpointBackend {
        files: mapped,
        source: dir.display().to_string(),
        store: store.clone(),
    };
    Ok((builder(backend, dtype, device), store))
}

/// A [`VarBuilder`] that draws every tensor from a seeded RNG with the init the layer asks for.
pub fn random_builder(
    seed: u64,
    dtype: DType,
    device: &Device,
    trainable: Trainable,
) -> (VarBuilder<'static>, WeightStore) {
    let store = WeightStore::new(trainable);
    let backend = RandomBackend {
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
        store: store.clone(),
    };
    (builder(backend, dtype, device), store)
}

/// A [`VarBuilder`] over named tensors already in memory.
pub fn tensors_builder(
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    dtype: DType,
    device: &Device,
    trainable: Trainable,
) -> (VarBuilder<'static>, WeightStore) {
    let store = WeightStore::new(trainable);
    let backend = TensorsBackend {
        tensors: tensors.into_iter().collect(),
        store: store.clone(),
    };
    (builder(backend, dtype, device), store)
}

fn builder(
    backend: impl candle_nn::var_builder::SimpleBackend + 'static,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend: Box<dyn candle_nn::var_builder::SimpleBackend> = Box::new(backend);
    VarBuilder::from_backend(backend, dtype, device.clone())
}

/// Writes `tensors` to `path` as safetensors in `dtype`.
pub fn save_safetensors(tensors: &[(String, Tensor)], dtype: DType, path: &Path) -> Result<()> {
    let converted = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.to_dtype(dtype)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    safetensors::tensor::serialize_to_file(
        converted.iter().map(|(n, t)| (n.as_str(), t)),
        Some(metadata),
        path,
    )
    .map_err(|e| Error::Weights(format!("writing {}: {e}", path.display())))
}
