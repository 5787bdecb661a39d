//! Versioned weight publication: after each step the learner publishes its weights once, as
//! [`PublishedWeights`] on the [`WeightsBoard`], in the forms their readers need:
//!
//! - **local rollout actors** (same process) share one frozen, immutable copy on the rollout
//!   device (`Arc<Policy>`): one copy of the weights per device, however many actors read it,
//!   instead of a deep copy per actor;
//! - **remote workers** (`mathrl worker`, over `ractor_cluster`) get a [`WeightsSnapshot`]: the
//!   weights as safetensors bytes, made only when the run accepts remote workers.
//!
//! Every version carries a checksum (64-bit XXH3 over each weight's name, dtype, shape and bytes,
//! in name order, see [`weights_checksum`]). A remote worker recomputes it from the bytes it
//! received before loading them, and every rollout, local or remote, reports the checksum of the
//! weights it sampled with; the coordinator compares it with the learner's, which catches the
//! silent "rollouts ran on stale or wrong weights after a sync" failure.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use candle_core::{DType, Device, Tensor};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::Policy;
use safetensors::View;

use crate::{Error, Result};

/// The checksum of a set of weights: XXH3-64 over each tensor's name, dtype, shape and bytes, in
/// the order given (a policy's [`Policy::named_tensors`] are in name order). It reads every
/// weight once (a GPU tensor is copied to the host one at a time).
pub fn weights_checksum(tensors: &[(String, Tensor)]) -> Result<u64> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut field = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for (name, tensor) in tensors {
        field(name.as_bytes());
        field(tensor.dtype().as_str().as_bytes());
        let dims: Vec<u8> = tensor
            .dims()
            .iter()
            .flat_map(|&d| (d as u64).to_le_bytes())
            .collect();
        field(&dims);
        // Contiguous on the host, in the tensor's dtype (as safetensors writes it).
        field(&View::data(tensor));
    }
    Ok(hasher.digest())
}

/// One published version of the policy weights.
#[derive(Clone)]
pub struct PublishedWeights {
    /// Learner steps that produced these weights (0 = the initial policy).
    pub version: u64,
    /// [`weights_checksum`] of the weights.
    pub checksum: u64,
    /// The frozen copy on the rollout device that every local rollout actor samples with (absent
    /// when the run has no local rollout actor).
    pub local: Option<Arc<Policy>>,
    /// The serialised form for remote workers (absent when the run accepts none).
    pub wire: Option<Arc<WeightsSnapshot>>,
}

impl std::fmt::Debug for PublishedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedWeights")
            .field("version", &self.version)
            .field("checksum", &format_args!("{:016x}", self.checksum))
            .field("local", &self.local.as_ref().map(|p| p.device().location()))
            .field("wire_bytes", &self.wire.as_ref().map(|w| w.bytes.len()))
            .finish()
    }
}

impl PublishedWeights {
    /// These weights as a frozen policy: the shared local copy when there is one, otherwise
    /// decoded (and checksum-verified) from the bytes on `device` with `config` and `dtype`.
    pub fn policy(
        &self,
        config: &Qwen2Config,
        device: &Device,
        dtype: DType,
    ) -> Result<Arc<Policy>> {
        match (&self.local, &self.wire) {
            (Some(local), _) => Ok(local.clone()),
            (None, Some(wire)) => Ok(Arc::new(wire.to_policy(config, device, dtype)?)),
            (None, None) => Err(Error::Weights {
                version: self.version,
                message: "published without a local copy or bytes".into(),
            }),
        }
    }
}

/// How the learner publishes its weights: which forms it makes (see the module docs).
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The device of the local rollout actors' shared copy; `None` when there is no local
    /// rollout actor (then no copy is made).
    pub rollout_device: Option<Device>,
    /// Also serialise the weights for remote workers.
    pub remote: bool,
    /// The rollout engines' `bf16_weights`: the shared copy is laid out for their CPU decode
    /// kernel once, here, in bf16 or f32 ([`Policy::for_cpu_decoding`]), not once per actor.
    pub bf16_weights: bool,
}

impl Publisher {
    /// Publishes the current weights of `policy` as `version`: one frozen copy on the rollout
    /// device (if any local actor reads it), the bytes for remote workers (if any), and the
    /// checksum.
    pub fn publish(&self, policy: &Policy, version: u64) -> Result<PublishedWeights> {
        let local = match &self.rollout_device {
            Some(device) => Some(Arc::new(
                policy
                    .frozen_copy_on(device)?
                    .for_cpu_decoding(self.bf16_weights)?,
            )),
            None => None,
        };
        let wire = if self.remote {
            Some(Arc::new(WeightsSnapshot::of_policy(policy, version)?))
        } else {
            None
        };
        let checksum = match (&wire, &local) {
            (Some(wire), _) => wire.checksum,
            (None, Some(local)) => weights_checksum(&local.named_tensors())?,
            (None, None) => weights_checksum(&policy.named_tensors())?,
        };
        Ok(PublishedWeights {
            version,
            checksum,
            local,
            wire,
        })
    }
}

/// One published version of the policy weights in the form sent to remote workers.
#[derive(Debug, Clone)]
pub struct WeightsSnapshot {
    /// Learner steps that produced these weights (0 = the initial policy).
    pub version: u64,
    /// The weights in safetensors layout, in the policy's dtype.
    pub bytes: Arc<Vec<u8>>,
    /// [`weights_checksum`] of the weights the bytes hold.
    pub checksum: u64,
}

impl WeightsSnapshot {
    /// Serialises every weight of `policy` (by Hugging Face name) as version `version`.
    pub fn of_policy(policy: &Policy, version: u64) -> Result<Self> {
        let tensors = policy.named_tensors();
        let bytes = safetensors::tensor::serialize(
            tensors.iter().map(|(name, t)| (name.as_str(), t)),
            None,
        )
        .map_err(|e| Error::Weights {
            version,
            message: format!("serialising: {e}"),
        })?;
        Ok(Self {
            version,
            checksum: weights_checksum(&tensors)?,
            bytes: Arc::new(bytes),
        })
    }

    /// Decodes the bytes on `device`, verifies the checksum, then builds a frozen policy with
    /// `config`.
    pub fn to_policy(&self, config: &Qwen2Config, device: &Device, dtype: DType) -> Result<Policy> {
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load_buffer(&self.bytes, device).map_err(|e| {
                Error::Weights {
                    version: self.version,
                    message: format!("decoding safetensors: {e}"),
                }
            })?;
        let mut named: Vec<(String, Tensor)> = tensors.into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let actual = weights_checksum(&named)?;
        if actual != self.checksum {
            return Err(Error::Weights {
                version: self.version,
                message: format!(
                    "checksum mismatch: published {:016x}, received {actual:016x}",
                    self.checksum
                ),
            });
        }
        Ok(Policy::from_tensors(
            config,
            named,
            device,
            dtype,
            Trainable::No,
        )?)
    }
}

/// The latest published weights, shared by the learner (writer) and the rollout actors (readers).
/// A rollout actor reads it between groups, never inside one, and a restarted or newly joined
/// actor reads it before its first group. A version's shared copy is freed when the board and
/// the last actor that sampled with it have moved on.
#[derive(Debug, Clone)]
pub struct WeightsBoard(Arc<RwLock<Arc<PublishedWeights>>>);

impl WeightsBoard {
    /// A board holding `initial`.
    pub fn new(initial: PublishedWeights) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(initial))))
    }

    /// Publishes a new version (ignored if it is not newer than the current one).
    pub fn publish(&self, published: PublishedWeights) {
        let mut current = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if published.version >= current.version {
            *current = Arc::new(published);
        }
    }

    /// The latest version.
    pub fn latest(&self) -> Arc<PublishedWeights> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Policy {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");
        Policy::load(dir, &Device::Cpu, Some(DType::F32), Trainable::No).unwrap()
    }

    fn both_forms() -> Publisher {
        Publisher {
            rollout_device: Some(Device::Cpu),
            remote: true,
            bf16_weights: false,
        }
    }

    #[test]
    fn a_snapshot_round_trips_to_identical_weights() {
        let policy = tiny();
        let snap = WeightsSnapshot::of_policy(&policy, 3).unwrap();
        let back = snap
            .to_policy(policy.config(), &Device::Cpu, DType::F32)
            .unwrap();
        let (a, b) = (policy.named_tensors(), back.named_tensors());
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            let diff = (ta - tb).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{na}");
        }
        // Re-serialising the loaded copy gives the same checksum.
        assert_eq!(
            WeightsSnapshot::of_policy(&back, 3).unwrap().checksum,
            snap.checksum
        );
    }

    #[test]
    fn corrupted_bytes_are_refused_with_the_version() {
        let policy = tiny();
        let mut snap = WeightsSnapshot::of_policy(&policy, 7).unwrap();
        let mut bytes = (*snap.bytes).clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        snap.bytes = Arc::new(bytes);
        let Err(err) = snap.to_policy(policy.config(), &Device::Cpu, DType::F32) else {
            panic!("corrupted weights were accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains("version 7") && err.contains("checksum mismatch"),
            "{err}"
        );
    }

    /// On the CPU the shared copy comes in the decode kernel's layout, in bf16 when the engines
    /// ask for it, once for every actor; its named tensors, and so the checksum, stay those of
    /// the learner's weights.
    #[test]
    fn the_local_copy_is_laid_out_for_the_cpu_decode_kernel() {
        let policy = tiny();
        let plain = both_forms().publish(&policy, 2).unwrap();
        let bf16 = Publisher {
            bf16_weights: true,
            ..both_forms()
        }
        .publish(&policy, 2)
        .unwrap();
        assert_eq!(bf16.checksum, plain.checksum);
        for (published, dtype) in [(&plain, DType::F32), (&bf16, DType::BF16)] {
            let local = published.local.as_ref().expect("a local copy");
            assert!(local.model().has_panel_weights());
            assert_eq!(local.model().lm_head().unwrap().dtype(), dtype);
            assert_eq!(local.named_tensors().len(), policy.named_tensors().len());
        }
    }

    #[test]
    fn the_local_copy_and_the_bytes_carry_one_checksum() {
        let policy = tiny();
        let published = both_forms().publish(&policy, 5).unwrap();
        let local = published
            .local
            .as_ref()
            .expect("a local copy was asked for");
        let wire = published.wire.as_ref().expect("bytes were asked for");
        assert_eq!(published.checksum, wire.checksum);
        assert_eq!(
            weights_checksum(&local.named_tensors()).unwrap(),
            published.checksum
        );
        // Local only, or neither form: the same checksum all the same.
        for publisher in [
            Publisher {
                rollout_device: Some(Device::Cpu),
                remote: false,
                bf16_weights: false,
            },
            Publisher {
                rollout_device: None,
                remote: false,
                bf16_weights: false,
            },
        ] {
            let other = publisher.publish(&policy, 5).unwrap();
            assert_eq!(other.checksum, published.checksum);
            assert_eq!(other.local.is_some(), publisher.rollout_device.is_some());
            assert!(other.wire.is_none());
        }
        // A different weight changes it.
        let mut named = policy.named_tensors();
        named[0].1 = (&named[0].1 + 1.0).unwrap();
        assert_ne!(weights_checksum(&named).unwrap(), published.checksum);
    }

    #[test]
    fn the_shared_copy_does_not_follow_the_learner() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");
        let policy = Policy::load(dir, &Device::Cpu, Some(DType::F32), Trainable::Yes).unwrap();
        let published = both_forms().publish(&policy, 1).unwrap();
        let (name, var) = &policy.vars()[0];
        var.set(&(var.as_tensor() + 1.0).unwrap()).unwrap();
        let local = published.local.unwrap();
        let frozen = local
            .named_tensors()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1;
        let moved = (var.as_tensor() - &frozen)
            .unwrap()
            .abs()
            .unwrap()
            .min_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            moved > 0.99,
            "{name}: the published copy moved with the learner"
        );
        assert_eq!(
            weights_checksum(&local.named_tensors()).unwrap(),
            published.checksum
        );
    }

    #[test]
    fn the_board_only_moves_forward() {
        let policy = tiny();
        let publisher = Publisher {
            rollout_device: None,
            remote: false,
            bf16_weights: false,
        };
        let board = WeightsBoard::new(publisher.publish(&policy, 2).unwrap());
        board.publish(publisher.publish(&policy, 1).unwrap());
        assert_eq!(board.latest().version, 2);
        board.publish(publisher.publish(&policy, 4).unwrap());
        assert_eq!(board.latest().version, 4);
    }
}
