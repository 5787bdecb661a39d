//! Versioned weight publication: the learner's weights as safetensors bytes, their version and a
//! checksum, so no tensor crosses an actor boundary and a receiver can prove what it loaded.
//!
//! The checksum (64-bit XXH3 over the bytes) is recomputed by every receiver before loading and
//! reported with every group it generates; the coordinator compares it with the learner's, which
//! catches the silent "rollouts ran on stale or wrong weights after a sync" failure.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use candle_core::{DType, Device, Tensor};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::Policy;

use crate::{Error, Result};

/// One published version of the policy weights.
#[derive(Debug, Clone)]
pub struct WeightsSnapshot {
    /// Learner steps that produced these weights (0 = the initial policy).
    pub version: u64,
    /// The weights in safetensors layout, in the policy's dtype.
    pub bytes: Arc<Vec<u8>>,
    /// XXH3-64 of `bytes`.
    pub checksum: u64,
}

/// The 64-bit checksum used for published weights.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
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
            checksum: checksum(&bytes),
            bytes: Arc::new(bytes),
        })
    }

    /// Verifies the checksum, then builds a frozen policy with `config` on `device`.
    pub fn to_policy(&self, config: &Qwen2Config, device: &Device, dtype: DType) -> Result<Policy> {
        let actual = checksum(&self.bytes);
        if actual != self.checksum {
            return Err(Error::Weights {
                version: self.version,
                message: format!(
                    "checksum mismatch: published {:016x}, received {actual:016x}",
                    self.checksum
                ),
            });
        }
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load_buffer(&self.bytes, device).map_err(|e| {
                Error::Weights {
                    version: self.version,
                    message: format!("decoding safetensors: {e}"),
                }
            })?;
        let mut named: Vec<(String, Tensor)> = tensors.into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
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
/// actor reads it before its first group.
#[derive(Debug, Clone)]
pub struct WeightsBoard(Arc<RwLock<Arc<WeightsSnapshot>>>);

impl WeightsBoard {
    /// A board holding `initial`.
    pub fn new(initial: WeightsSnapshot) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(initial))))
    }

    /// Publishes a new version (ignored if it is not newer than the current one).
    pub fn publish(&self, snapshot: WeightsSnapshot) {
        let mut current = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if snapshot.version >= current.version {
            *current = Arc::new(snapshot);
        }
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<WeightsSnapshot> {
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
        // Re-serialising the loaded copy gives the same bytes, hence the same checksum.
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

    #[test]
    fn the_board_only_moves_forward() {
        let policy = tiny();
        let board = WeightsBoard::new(WeightsSnapshot::of_policy(&policy, 2).unwrap());
        board.publish(WeightsSnapshot::of_policy(&policy, 1).unwrap());
        assert_eq!(board.latest().version, 2);
        board.publish(WeightsSnapshot::of_policy(&policy, 4).unwrap());
        assert_eq!(board.latest().version, 4);
    }
}
