//! `LearnerCore`: what the GRPO, SFT and RM learners share — the trained model, its AdamW, the
//! guarded train step, the step counter, and checkpoint save and restore of all of it.
//!
//! A learner keeps its own loss and metrics and hands the core its micro-batch gradients; the core
//! owns everything a resumed run needs to continue bit-identically. [`LearnerCore::restore`] puts
//! back the weights too, so a caller resumes with one call whatever its model was loaded from.
//!
//! The step counter is the single meaning of *policy version*: learner steps completed, one per
//! batch, whether the optimiser applied the update or skipped it (a non-finite gradient, nothing
//! to train on) and however many optimiser passes (μ) the step made. Rollout groups are stamped
//! with it and the policy lag is measured in it. The optimiser's own count of applied updates
//! ([`Optimizer::step_count`]) is the learning-rate schedule's position, nothing more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use mathrl::model::weights::checkpoint_files;
use mathrl::Policy;
use mathrl_rewards::RewardModel;
use serde::Serialize;

use crate::checkpoint::{
    read_checkpoint, restore_optimizer, write_checkpoint, CheckpointConfig, RunState, TrainerState,
    FORMAT_VERSION,
};
use crate::optim::{AdamW, AdamWConfig, Optimizer};
use crate::train_step::{GradAccumulator, StepStats, TrainStep, TrainStepConfig};
use crate::{Error, Result};

/// A model a learner trains: trainable variables under their Hugging Face names, saved in the
/// Hugging Face layout (so a checkpoint directory is also a model directory).
pub trait TrainableModel {
    /// The trainable variables by name, in name order.
    fn vars(&self) -> Vec<(String, Var)>;
    /// The device of the weights.
    fn device(&self) -> &Device;
    /// Writes `config.json`, the weights and the side files into `dir`, taking the weights named
    /// in `masters` from those f32 master copies instead of the (possibly bf16) variables.
    fn save(&self, dir: &Path, masters: &[(String, Tensor)]) -> Result<()>;
}

impl TrainableModel for Policy {
    fn vars(&self) -> Vec<(String, Var)> {
        Policy::vars(self)
    }

    fn device(&self) -> &Device {
        Policy::device(self)
    }

    fn save(&self, dir: &Path, masters: &[(String, Tensor)]) -> Result<()> {
        Ok(Policy::save_with_masters(self, dir, masters)?)
    }
}

impl TrainableModel for RewardModel {
    fn vars(&self) -> Vec<(String, Var)> {
        RewardModel::vars(self)
    }

    fn device(&self) -> &Device {
        RewardModel::device(self)
    }

    fn save(&self, dir: &Path, masters: &[(String, Tensor)]) -> Result<()> {
        Ok(RewardModel::save_with_masters(self, dir, masters)?)
    }
}

/// What a learner gets back from [`LearnerCore::restore`] besides the state the core restores
/// itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Restored {
    /// The learner's own counters as it saved them (absent ones read as 0).
    pub counters: BTreeMap<String, u64>,
    /// The caller's state (random generators, data cursor).
    pub run: RunState,
}

impl Restored {
    /// The counter `name`, 0 when the checkpoint did not record it.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// The model, optimiser, train step and step counter of one learner.
pub struct LearnerCore<M> {
    learner: &'static str,
    model: M,
    optimizer: AdamW,
    train_step: TrainStep,
    step: u64,
}

impl<M: TrainableModel> LearnerCore<M> {
    /// The core of the learner called `learner` (`grpo`, `sft`, `rm`: the name its checkpoints
    /// carry) training `model`, which must have been loaded trainable. Biases and norm gains are
    /// not weight-decayed.
    pub fn new(
        learner: &'static str,
        model: M,
        optimizer: AdamWConfig,
        train_step: TrainStepConfig,
    ) -> Result<Self> {
        optimizer.validate()?;
        let params = model.vars();
        if params.is_empty() {
            return Err(Error::Input(format!(
                "the {learner} learner's model has no trainable weights (load it with \
                 Trainable::Yes)"
            )));
        }
        let optimizer = AdamW::new(params, optimizer)?
            .exclude_from_weight_decay(|name| name.ends_with(".bias") || name.contains("norm"));
        Ok(Self {
            learner,
            model,
            optimizer,
            train_step: TrainStep::new(train_step)?,
            step: 0,
        })
    }

    /// The model being trained (its weights change in place with each update).
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// Learner steps completed.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The version of the weights: learner steps completed (see the module docs).
    pub fn policy_version(&self) -> u64 {
        self.step
    }

    /// Counts one more learner step and returns it (1-based).
    pub fn advance_step(&mut self) -> u64 {
        self.step += 1;
        self.step
    }

    /// An empty gradient accumulator over the optimiser's parameters.
    pub fn gradients(&self) -> GradAccumulator {
        GradAccumulator::new(self.optimizer.params())
    }

    /// One guarded optimiser update from the accumulated gradients (see [`TrainStep::apply`]).
    pub fn apply(&mut self, gradients: GradAccumulator) -> Result<StepStats> {
        self.train_step.apply(&mut self.optimizer, gradients)
    }

    /// Optimiser updates skipped for a non-finite loss or gradient.
    pub fn skipped_steps(&self) -> u64 {
        self.train_step.skipped_steps()
    }

    /// An error once too many updates in a row were skipped ([`TrainStep::check_diverged`]).
    pub fn check_diverged(&self) -> Result<()> {
        self.train_step.check_diverged()
    }

    /// Writes the checkpoint of the current step: the model, the optimiser, the step, the
    /// learner's `counters` and `config` (for the record) and the caller's `run` state.
    pub fn save_checkpoint(
        &self,
        config: &CheckpointConfig,
        learner_config: &impl Serialize,
        counters: &[(&str, u64)],
        run: &RunState,
    ) -> Result<PathBuf> {
        let updates = self.optimizer.step_count();
        // A model saved in a wider dtype than it computes in (`save_dtype`) gets the masters' bits.
        let masters = self.optimizer.master_weights()?;
        let state = TrainerState {
            format_version: FORMAT_VERSION,
            learner: self.learner.into(),
            step: self.step,
            optimizer_step: updates,
            learning_rate: self.train_step.config().schedule.lr_at(updates),
            skipped_steps: self.train_step.skipped_steps(),
            counters: counters
                .iter()
                .map(|&(name, value)| (name.to_string(), value))
                .collect(),
            config: serde_json::to_value(learner_config).expect("a learner config serialises"),
            run: run.clone(),
        };
        write_checkpoint(
            config,
            self.step,
            |dir| self.model.save(dir, &masters),
            &self.optimizer,
            &state,
        )
    }

    /// Restores the checkpoint in `dir`: the weights into the model's variables, the optimiser
    /// moments, the skip count and the step. Returns the learner's counters and the caller's
    /// state. A checkpoint written by another learner is refused.
    pub fn restore(&mut self, dir: impl AsRef<Path>) -> Result<Restored> {
        let checkpoint = read_checkpoint(dir, self.model.device())?;
        // The model files first; the optimiser's f32 master weights then replace them, since
        // the files are in the dtype the model was loaded from, which may round (see `optim`).
        load_weights(&checkpoint.dir, &self.model.vars(), self.model.device())?;
        restore_optimizer(
            &checkpoint,
            self.learner,
            &mut self.optimizer,
            &mut self.train_step,
        )?;
        self.step = checkpoint.state.step;
        Ok(Restored {
            counters: checkpoint.state.counters,
            run: checkpoint.state.run,
        })
    }
}

/// Sets every variable in `vars` from the model files of `dir` (`model.safetensors` or its
/// shards), converted to the variable's dtype.
fn load_weights(dir: &Path, vars: &[(String, Var)], device: &Device) -> Result<()> {
    let mut found = std::collections::HashMap::new();
    for file in checkpoint_files(dir)? {
        let tensors =
            candle_core::safetensors::load(&file, device).map_err(|e| Error::Checkpoint {
                path: file.clone(),
                message: format!("reading the weights: {e}"),
            })?;
        found.extend(tensors);
    }
    for (name, var) in vars {
        let tensor = found.get(name).ok_or_else(|| Error::Checkpoint {
            path: dir.to_path_buf(),
            message: format!("no tensor `{name}` to restore the weights from"),
        })?;
        if tensor.dims() != var.dims() {
            return Err(Error::Shape {
                tensor: format!("{name} in {}", dir.display()),
                expected: var.dims().to_vec(),
                got: tensor.dims().to_vec(),
            });
        }
        var.set(&tensor.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Tensor};
    use std::collections::HashMap;

    /// One trainable vector, saved as `model.safetensors`.
    struct Vector(Var, Device);

    impl TrainableModel for Vector {
        fn vars(&self) -> Vec<(String, Var)> {
            vec![("w".into(), self.0.clone())]
        }

        fn device(&self) -> &Device {
            &self.1
        }

        fn save(&self, dir: &Path, _masters: &[(String, Tensor)]) -> Result<()> {
            let tensors: HashMap<String, Tensor> = [("w".to_string(), self.0.as_tensor().clone())]
                .into_iter()
                .collect();
            candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
            Ok(())
        }
    }

    fn core(values: &[f32]) -> LearnerCore<Vector> {
        let w = Var::new(values, &Device::Cpu).unwrap();
        LearnerCore::new(
            "test",
            Vector(w, Device::Cpu),
            AdamWConfig::default(),
            TrainStepConfig::default(),
        )
        .unwrap()
    }

    /// One step on the loss sum((w − 3)²).
    fn train(core: &mut LearnerCore<Vector>) {
        core.advance_step();
        let mut grads = core.gradients();
        let loss = (core.model().0.as_tensor() - 3.0)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        grads.backward(&loss).unwrap();
        core.apply(grads).unwrap();
    }

    fn values(core: &LearnerCore<Vector>) -> Vec<u32> {
        let w = core.model().0.as_tensor().to_dtype(DType::F32).unwrap();
        w.to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    #[test]
    fn restore_brings_back_weights_moments_and_step_and_continues_bit_identically() {
        let root = tempfile::tempdir().unwrap();
        let checkpoints = CheckpointConfig::new(root.path(), 0, 0);
        let mut straight = core(&[1.0, -2.0]);
        train(&mut straight);
        train(&mut straight);
        let dir = straight
            .save_checkpoint(
                &checkpoints,
                &"settings",
                &[("seen", 7)],
                &RunState::default(),
            )
            .unwrap();
        train(&mut straight);

        // A fresh core from the *initial* weights: restore must put the trained ones back.
        let mut resumed = core(&[1.0, -2.0]);
        let restored = resumed.restore(&dir).unwrap();
        assert_eq!(restored.counter("seen"), 7);
        assert_eq!(restored.counter("absent"), 0);
        assert_eq!((resumed.step_count(), resumed.policy_version()), (2, 2));
        assert_eq!(resumed.optimizer().step_count(), 2);
        train(&mut resumed);
        assert_eq!(values(&resumed), values(&straight));
        assert_eq!(resumed.step_count(), 3);
    }

    #[test]
    fn a_missing_or_misshapen_weight_and_another_learners_checkpoint_are_errors() {
        let root = tempfile::tempdir().unwrap();
        let checkpoints = CheckpointConfig::new(root.path(), 0, 0);
        let mut saved = core(&[1.0, 2.0]);
        train(&mut saved);
        let dir = saved
            .save_checkpoint(&checkpoints, &(), &[], &RunState::default())
            .unwrap();

        // A model of another shape is refused.
        let err = core(&[1.0, 2.0, 3.0])
            .restore(&dir)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected shape [3], got [2]"), "{err}");

        let model_file = |name: &str, len: usize| {
            let tensors: HashMap<String, Tensor> = [(
                name.to_string(),
                Tensor::zeros(len, DType::F32, &Device::Cpu).unwrap(),
            )]
            .into_iter()
            .collect();
            candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
        };
        model_file("w", 3);
        let err = core(&[1.0, 2.0]).restore(&dir).unwrap_err().to_string();
        assert!(
            err.contains("w in") && err.contains("expected shape [2], got [3]"),
            "{err}"
        );
        model_file("other", 2);
        let err = core(&[1.0, 2.0]).restore(&dir).unwrap_err().to_string();
        assert!(err.contains("no tensor `w`"), "{err}");

        model_file("w", 2);
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let mut other = LearnerCore::new(
            "sft",
            Vector(w, Device::Cpu),
            AdamWConfig::default(),
            TrainStepConfig::default(),
        )
        .unwrap();
        let err = other.restore(&dir).unwrap_err().to_string();
        assert!(err.contains("test learner, not sft"), "{err}");
    }
}
