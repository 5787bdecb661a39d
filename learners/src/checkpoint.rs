//! Checkpoints: every N steps and at the end of a run, a directory `step-000123/` holding
//!
//! - the model in the Hugging Face layout (`config.json`, `model.safetensors`, tokenizer files),
//!   so `transformers.AutoModel*.from_pretrained("step-000123")` and vLLM load it as it is;
//! - `optimizer.safetensors`: the AdamW moments and step counts ([`Optimizer::state_tensors`]);
//! - `trainer_state.json`: everything else a resumed run needs ([`TrainerState`]).
//!
//! - `manifest.json`, written last: every file's size and XXH3 ([`crate::checkpoint_manifest`]).
//!
//! A checkpoint is written into `step-000123.tmp/`, every file and the directory are fsynced, and
//! only then is the directory renamed: a crash at any point leaves either the complete checkpoint
//! or a `.tmp` directory that [`latest_checkpoint`] ignores (and the next write removes). A step
//! written again (a resumed run repeating it) moves the old copy aside to `step-000123.old/`
//! first and deletes it only once the new one is in place, so there is always one copy on disk.
//! [`latest_checkpoint`] checks the manifest and falls back to the newest checkpoint that is
//! whole.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint_manifest::{verify, write_manifest};
use crate::optim::Optimizer;
use crate::run_identity::RunIdentity;
use crate::train_step::TrainStep;
use crate::{Error, Result};

/// File of the optimiser state inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the [`TrainerState`] inside a checkpoint.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// Version of the `trainer_state.json` layout; bumped when it changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// Where checkpoints go and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Directory holding the `step-NNNNNN/` checkpoints.
    pub dir: PathBuf,
    /// Write a checkpoint every this many learner steps (0 = only when asked, e.g. at the end).
    pub every_steps: u64,
    /// Keep this many most recent checkpoints and delete older ones (0 keeps all).
    pub keep_last: usize,
}

impl CheckpointConfig {
    /// Checkpoints in `dir` every `every_steps` steps, keeping the last `keep_last`.
    pub fn new(dir: impl Into<PathBuf>, every_steps: u64, keep_last: usize) -> Self {
        Self {
            dir: dir.into(),
            every_steps,
            keep_last,
        }
    }

    /// Whether a checkpoint is due after learner step `step` (1-based).
    // `%` rather than `is_multiple_of`, which is newer than the workspace's rust-version (1.85).
    #[allow(clippy::manual_is_multiple_of)]
    pub fn due(&self, step: u64) -> bool {
        self.every_steps > 0 && step > 0 && step % self.every_steps == 0
    }
}

/// Where a data loader stands: the epoch and the position in that epoch's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataCursor {
    /// Completed passes over the data.
    pub epoch: u64,
    /// Examples of the current epoch already consumed.
    pub position: u64,
}

/// What the caller's loop (a recipe) stores beside the learner's own state: its random
/// generators, where its data stands, and anything else it needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunState {
    /// States of the run's [`crate::SeededRng`]s by name (samplers, shuffles).
    pub rngs: BTreeMap<String, u64>,
    /// Position in the prompt or example stream.
    pub data_cursor: Option<DataCursor>,
    /// Free-form state of the caller.
    pub extra: serde_json::Value,
    /// The run's seed, data and settings, checked on resume ([`RunIdentity::check_resume`]);
    /// `None` in checkpoints written before it was recorded.
    pub identity: Option<RunIdentity>,
}

/// `trainer_state.json`: the training state that is not a tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Which learner wrote it (`grpo`, `sft`, `rm`); a learner refuses another's checkpoint.
    pub learner: String,
    /// Learner steps completed (one per batch).
    pub step: u64,
    /// Optimiser updates applied: the learning-rate schedule's position.
    pub optimizer_step: u64,
    /// Learning rate of the last update.
    pub learning_rate: f64,
    /// Updates skipped for a non-finite loss or gradient.
    pub skipped_steps: u64,
    /// The learner's own running counters (e.g. zero-variance groups seen).
    pub counters: BTreeMap<String, u64>,
    /// The learner's configuration when the checkpoint was written, for the record.
    pub config: serde_json::Value,
    /// The caller's state.
    pub run: RunState,
}

/// A checkpoint read back from disk.
#[derive(Debug)]
pub struct Checkpoint {
    /// Its directory (also the model directory to load the weights from).
    pub dir: PathBuf,
    /// `trainer_state.json`.
    pub state: TrainerState,
    /// `optimizer.safetensors`, on the device it was read to.
    pub optimizer: HashMap<String, Tensor>,
}

/// The directory name of the checkpoint after `step`: `step-000123`.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// The step of a complete checkpoint's directory name (`step-000123` → 123); `None` for
/// anything else, `.tmp` directories included.
fn step_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The step of a checkpoint moved aside while its step was written again (`step-000123.old`).
fn aside_step_of(name: &str) -> Option<u64> {
    name.strip_suffix(".old").and_then(step_of)
}

/// Complete checkpoints under `root`, by step (ascending): `step-N/` directories, and a
/// `step-N.old/` where a crash came between moving it aside and renaming its replacement in.
fn complete_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let step = match (step_of(&name), aside_step_of(&name)) {
            (Some(step), _) => step,
            (None, Some(step)) if !root.join(checkpoint_name(step)).exists() => step,
            _ => continue,
        };
        if path.join(TRAINER_STATE_FILE).is_file() {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found)
}

/// The most recent complete checkpoint under `root` (`None` when there is none). Incomplete
/// `.tmp` directories are ignored; one whose files do not match its manifest is skipped with a
/// warning naming the damage, for the one before it.
pub fn latest_checkpoint(root: impl AsRef<Path>) -> Result<Option<PathBuf>> {
    for (_, path) in complete_checkpoints(root.as_ref())?.into_iter().rev() {
        match verify(&path) {
            Ok(_) => return Ok(Some(path)),
            Err(e) => {
                tracing::warn!("skipping a damaged checkpoint, resuming from an older one: {e}")
            }
        }
    }
    Ok(None)
}

/// Flushes a file or directory to disk.
fn fsync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Writes the checkpoint of `step` under `config.dir` atomically and prunes old ones; returns
/// its directory. `save_model` writes the model's Hugging Face files into the directory it is
/// given.
pub fn write_checkpoint<O: Optimizer>(
    config: &CheckpointConfig,
    step: u64,
    save_model: impl FnOnce(&Path) -> Result<()>,
    optimizer: &O,
    state: &TrainerState,
) -> Result<PathBuf> {
    write_checkpoint_in_stages(config, step, save_model, optimizer, state, &mut |_| Ok(()))
}

/// The points of a checkpoint write after which a crash leaves something different on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteStage {
    /// `step-N.tmp/` exists, empty.
    TmpCreated,
    /// The model files are in `.tmp`.
    ModelWritten,
    /// The optimiser state and `trainer_state.json` are in `.tmp`, the manifest is not.
    StateWritten,
    /// Everything, the manifest included, is in `.tmp` and synced.
    TmpComplete,
    /// A previous `step-N/` was moved aside to `step-N.old/`.
    OldMovedAside,
    /// `.tmp` was renamed to `step-N/`.
    Renamed,
    /// The `.old` copy is gone; old checkpoints are pruned next.
    OldRemoved,
}

/// [`write_checkpoint`], calling `after` at each [`WriteStage`]; an error from it stops the write
/// there, as a crash would (the tests of every stage use it).
fn write_checkpoint_in_stages<O: Optimizer>(
    config: &CheckpointConfig,
    step: u64,
    save_model: impl FnOnce(&Path) -> Result<()>,
    optimizer: &O,
    state: &TrainerState,
    after: &mut dyn FnMut(WriteStage) -> Result<()>,
) -> Result<PathBuf> {
    let root = &config.dir;
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let name = checkpoint_name(step);
    let tmp = root.join(format!("{name}.tmp"));
    let done = root.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    after(WriteStage::TmpCreated)?;

    save_model(&tmp)?;
    after(WriteStage::ModelWritten)?;
    let optimizer_state: HashMap<String, Tensor> = optimizer
        .state_tensors()?
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let optimizer_path = tmp.join(OPTIMIZER_FILE);
    candle_core::safetensors::save(&optimizer_state, &optimizer_path).map_err(|e| {
        Error::Checkpoint {
            path: optimizer_path.clone(),
            message: format!("writing the optimiser state: {e}"),
        }
    })?;
    let json = serde_json::to_vec_pretty(state).expect("the trainer state always serialises");
    let state_path = tmp.join(TRAINER_STATE_FILE);
    std::fs::write(&state_path, json).map_err(|e| Error::io(&state_path, e))?;
    after(WriteStage::StateWritten)?;
    write_manifest(&tmp)?;

    for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
        let path = entry.map_err(|e| Error::io(&tmp, e))?.path();
        if path.is_file() {
            fsync(&path)?;
        }
    }
    fsync(&tmp)?;
    after(WriteStage::TmpComplete)?;
    // A checkpoint of the same step can exist when a resumed run repeats a step: it is moved
    // aside, not deleted, until the new one is in place (a crash in between leaves it to resume
    // from).
    let aside = root.join(format!("{name}.old"));
    if done.exists() {
        if aside.exists() {
            std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
        }
        std::fs::rename(&done, &aside).map_err(|e| Error::io(&aside, e))?;
        fsync(root)?;
        after(WriteStage::OldMovedAside)?;
    }
    std::fs::rename(&tmp, &done).map_err(|e| Error::io(&done, e))?;
    fsync(root)?;
    after(WriteStage::Renamed)?;
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
    }
    after(WriteStage::OldRemoved)?;
    prune(root, config.keep_last)?;
    tracing::info!(checkpoint = %done.display(), "checkpoint written");
    Ok(done)
}

/// Deletes all but the last `keep_last` complete checkpoints, any leftover `.tmp` directories of
/// crashed writes and any `.old` copy whose replacement is in place.
fn prune(root: &Path, keep_last: usize) -> Result<()> {
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let name = entry.file_name();
        let is_stale_tmp = name
            .to_str()
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(step_of)
            .is_some();
        let is_replaced_old = name
            .to_str()
            .and_then(aside_step_of)
            .is_some_and(|step| root.join(checkpoint_name(step)).is_dir());
        if (is_stale_tmp || is_replaced_old) && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    if keep_last == 0 {
        return Ok(());
    }
    let all = complete_checkpoints(root)?;
    let excess = all.len().saturating_sub(keep_last);
    for (_, path) in &all[..excess] {
        std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Reads `trainer_state.json` of the checkpoint in `dir` (not its tensors).
pub fn read_trainer_state(dir: impl AsRef<Path>) -> Result<TrainerState> {
    let dir = dir.as_ref();
    let state_path = dir.join(TRAINER_STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path: state_path.clone(),
        message: format!("malformed {TRAINER_STATE_FILE}: {e}"),
    })?;
    if state.format_version != FORMAT_VERSION {
        return Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            message: format!(
                "format_version {} is not the supported {FORMAT_VERSION}",
                state.format_version
            ),
        });
    }
    Ok(state)
}

/// Reads the checkpoint in `dir`; optimiser tensors are placed on `device`.
pub fn read_checkpoint(dir: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
    let dir = dir.as_ref();
    let state = read_trainer_state(dir)?;
    let optimizer_path = dir.join(OPTIMIZER_FILE);
    let optimizer =
        candle_core::safetensors::load(&optimizer_path, device).map_err(|e| Error::Checkpoint {
            path: optimizer_path.clone(),
            message: format!("reading the optimiser state: {e}"),
        })?;
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
        optimizer,
    })
}

/// Restores the optimiser moments and the skipped-step count of `checkpoint`, after checking
/// that it was written by the `learner` restoring it.
pub fn restore_optimizer<O: Optimizer>(
    checkpoint: &Checkpoint,
    learner: &str,
    optimizer: &mut O,
    train_step: &mut TrainStep,
) -> Result<()> {
    if checkpoint.state.learner != learner {
        return Err(Error::Checkpoint {
            path: checkpoint.dir.clone(),
            message: format!(
                "written by the {} learner, not {learner}",
                checkpoint.state.learner
            ),
        });
    }
    optimizer
        .load_state_tensors(&checkpoint.optimizer)
        .map_err(|e| Error::Checkpoint {
            path: checkpoint.dir.join(OPTIMIZER_FILE),
            message: e.to_string(),
        })?;
    if optimizer.step_count() != checkpoint.state.optimizer_step {
        return Err(Error::Checkpoint {
            path: checkpoint.dir.clone(),
            message: format!(
                "{OPTIMIZER_FILE} holds {} updates but {TRAINER_STATE_FILE} says {}",
                optimizer.step_count(),
                checkpoint.state.optimizer_step
            ),
        });
    }
    train_step.set_skipped_steps(checkpoint.state.skipped_steps);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdamW, AdamWConfig};
    use candle_core::Var;

    fn state(step: u64) -> TrainerState {
        TrainerState {
            format_version: FORMAT_VERSION,
            learner: "test".into(),
            step,
            optimizer_step: 0,
            learning_rate: 0.0,
            skipped_steps: 0,
            counters: BTreeMap::new(),
            config: serde_json::Value::Null,
            run: RunState::default(),
        }
    }

    fn optimizer() -> AdamW {
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        AdamW::new(vec![("w".into(), w)], AdamWConfig::default()).unwrap()
    }

    fn write_model(dir: &Path) -> Result<()> {
        std::fs::write(dir.join("config.json"), "{}").map_err(|e| Error::io(dir, e))
    }

    #[test]
    fn names_parse_and_tmp_directories_are_ignored() {
        assert_eq!(checkpoint_name(123), "step-000123");
        assert_eq!(step_of("step-000123"), Some(123));
        assert_eq!(step_of("step-1234567"), Some(1234567));
        assert_eq!(step_of("step-000123.tmp"), None);
        assert_eq!(step_of("step-"), None);
        assert_eq!(step_of("best"), None);

        let root = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(root.path(), 1, 0);
        write_checkpoint(&config, 3, write_model, &optimizer(), &state(3)).unwrap();
        // A crashed later write: complete-looking contents, but still named .tmp.
        let crashed = root.path().join("step-000004.tmp");
        std::fs::create_dir(&crashed).unwrap();
        std::fs::write(crashed.join(TRAINER_STATE_FILE), "{").unwrap();
        assert_eq!(
            latest_checkpoint(root.path()).unwrap(),
            Some(root.path().join("step-000003"))
        );
        // The next write removes the leftover.
        write_checkpoint(&config, 5, write_model, &optimizer(), &state(5)).unwrap();
        assert!(!crashed.exists());
        assert_eq!(
            latest_checkpoint(root.path()).unwrap(),
            Some(root.path().join("step-000005"))
        );
        assert_eq!(latest_checkpoint(root.path().join("absent")).unwrap(), None);
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_one_before() {
        let root = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(root.path(), 1, 0);
        for step in [1, 2] {
            write_checkpoint(&config, step, write_model, &optimizer(), &state(step)).unwrap();
        }
        let newest = root.path().join("step-000002");
        assert_eq!(
            latest_checkpoint(root.path()).unwrap(),
            Some(newest.clone())
        );
        // A flipped byte in the optimiser state (a bad copy, a disk error).
        let file = newest.join(OPTIMIZER_FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        assert_eq!(
            latest_checkpoint(root.path()).unwrap(),
            Some(root.path().join("step-000001"))
        );
        // Checkpoints from before manifests existed are taken as they are.
        std::fs::remove_file(newest.join(crate::checkpoint_manifest::MANIFEST_FILE)).unwrap();
        assert_eq!(latest_checkpoint(root.path()).unwrap(), Some(newest));
    }

    #[test]
    fn a_crash_while_replacing_a_step_leaves_the_old_copy_to_resume_from() {
        let root = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(root.path(), 1, 2);
        write_checkpoint(&config, 2, write_model, &optimizer(), &state(2)).unwrap();
        // Killed after moving step 2 aside and before renaming its replacement in.
        let (done, aside) = (
            root.path().join("step-000002"),
            root.path().join("step-000002.old"),
        );
        std::fs::rename(&done, &aside).unwrap();
        std::fs::create_dir(root.path().join("step-000002.tmp")).unwrap();
        assert_eq!(latest_checkpoint(root.path()).unwrap(), Some(aside.clone()));
        let back = read_checkpoint(&aside, &Device::Cpu).unwrap();
        assert_eq!(back.state.step, 2);
        // The resumed run writes step 2 again: one copy in place, nothing left aside.
        write_checkpoint(&config, 2, write_model, &optimizer(), &state(2)).unwrap();
        assert_eq!(latest_checkpoint(root.path()).unwrap(), Some(done.clone()));
        assert!(!aside.exists() && !root.path().join("step-000002.tmp").exists());
        // A replacement that completes leaves no `.old` either.
        write_checkpoint(&config, 2, write_model, &optimizer(), &state(2)).unwrap();
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step-000002"]);
    }

    #[test]
    fn a_crash_at_any_stage_of_a_write_leaves_a_checkpoint_to_resume_from() {
        use WriteStage::*;
        let stages = [
            TmpCreated,
            ModelWritten,
            StateWritten,
            TmpComplete,
            OldMovedAside,
            Renamed,
            OldRemoved,
        ];
        let crash = || Error::Input("killed".into());
        // Step 2 rewritten (a resumed run repeating it), or a new step 3 written after it.
        for (step, replaces) in [(2, true), (3, false)] {
            for &stage in &stages {
                let root = tempfile::tempdir().unwrap();
                let config = CheckpointConfig::new(root.path(), 1, 2);
                for s in [1, 2] {
                    write_checkpoint(&config, s, write_model, &optimizer(), &state(s)).unwrap();
                }
                let mut new_state = state(step);
                new_state.learning_rate = 1.0; // tells the new copy from the old
                let err = write_checkpoint_in_stages(
                    &config,
                    step,
                    write_model,
                    &optimizer(),
                    &new_state,
                    &mut |at| if at == stage { Err(crash()) } else { Ok(()) },
                );
                if stage == OldMovedAside && !replaces {
                    // No old copy to move aside: the write never stops there.
                    err.unwrap();
                    continue;
                }
                assert!(err.is_err(), "{stage:?}");
                let latest = latest_checkpoint(root.path())
                    .unwrap()
                    .expect("a checkpoint");
                let back = read_checkpoint(&latest, &Device::Cpu).unwrap();
                let renamed = matches!(stage, Renamed | OldRemoved);
                let (want_step, want_new) = if renamed { (step, true) } else { (2, false) };
                assert_eq!(back.state.step, want_step, "{step} crashed at {stage:?}");
                assert_eq!(back.state.learning_rate == 1.0, want_new, "{stage:?}");

                // The resumed run writes the step again: one clean copy of each kept step.
                write_checkpoint(&config, step, write_model, &optimizer(), &new_state).unwrap();
                let mut names: Vec<String> = std::fs::read_dir(root.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                let want: &[&str] = if replaces {
                    &["step-000001", "step-000002"]
                } else {
                    &["step-000002", "step-000003"]
                };
                assert_eq!(names, want, "{step} crashed at {stage:?}");
                let latest = latest_checkpoint(root.path()).unwrap().unwrap();
                assert_eq!(
                    read_checkpoint(&latest, &Device::Cpu).unwrap().state,
                    new_state
                );
            }
        }
    }

    #[test]
    fn keeps_the_last_k_and_round_trips() {
        let root = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(root.path(), 2, 2);
        assert!(!config.due(1) && config.due(2) && config.due(4) && !config.due(0));
        let mut st = state(0);
        st.run.rngs.insert("sampler".into(), u64::MAX - 3);
        st.run.data_cursor = Some(DataCursor {
            epoch: 1,
            position: 17,
        });
        st.run.extra = serde_json::json!({"note": "x"});
        for step in [2, 4, 6] {
            st.step = step;
            write_checkpoint(&config, step, write_model, &optimizer(), &st).unwrap();
        }
        let names: Vec<u64> = complete_checkpoints(root.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(names, vec![4, 6]);
        let back = read_checkpoint(root.path().join("step-000006"), &Device::Cpu).unwrap();
        assert_eq!(back.state, st);
        assert!(back.optimizer.contains_key("exp_avg.w"));
        assert!(back.dir.join("config.json").is_file());

        let mut opt = optimizer();
        let mut ts = TrainStep::new(Default::default()).unwrap();
        let err = restore_optimizer(&back, "grpo", &mut opt, &mut ts).unwrap_err();
        assert!(err.to_string().contains("test learner"), "{err}");
        restore_optimizer(&back, "test", &mut opt, &mut ts).unwrap();
    }
}
