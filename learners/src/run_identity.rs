//! What makes a run the run it is — its seed, its training data and its settings — recorded in
//! every checkpoint, so that a resume with another `--seed`, another data file or changed
//! hyper-parameters is refused instead of silently becoming a different run.
//!
//! Data is identified by the XXH3 of its items (as the run read them), not by the file's path:
//! the same data moved elsewhere is the same run, an edited file at the same path is not.
//! Settings a resumed run may change without changing what it computes (the step budget, the
//! checkpoint cadence, actor counts, time limits) are left out of the comparison by the caller.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

use crate::{Error, Result};

/// The `resume` settings of a training recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResumeConfig {
    /// Resume even when the seed, the data or the settings differ from the checkpoint's (the
    /// differences are logged as warnings). Default false: such a resume is refused.
    pub allow_changed: bool,
}

/// The seed, data and settings of a run, as recorded in its checkpoints' `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The run's seed.
    pub seed: u64,
    /// The training data file, when the data came from one (for the record: the hash decides).
    pub data_file: Option<PathBuf>,
    /// Training items read.
    pub data_items: u64,
    /// XXH3-64 of the training items, 16 hex digits.
    pub data_xxh3: String,
    /// XXH3-64 of `config`'s canonical JSON, 16 hex digits.
    pub config_xxh3: String,
    /// The settings that define the run (the caller's config less the keys a resume may change).
    pub config: Value,
}

impl RunIdentity {
    /// The identity of a run with `seed`, training on `items` (each item's bytes in a canonical
    /// form, e.g. its JSON) read from `data_file`, with the settings `config`.
    pub fn new<I, B>(seed: u64, data_file: Option<&Path>, items: I, config: Value) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut hasher = Xxh3::new();
        let mut data_items = 0u64;
        for item in items {
            let bytes = item.as_ref();
            // Length-prefixed, so that ["ab", "c"] and ["a", "bc"] differ.
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
            data_items += 1;
        }
        let canonical = serde_json::to_vec(&config).expect("a JSON value serialises");
        Self {
            seed,
            data_file: data_file.map(Path::to_path_buf),
            data_items,
            data_xxh3: format!("{:016x}", hasher.digest()),
            config_xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&canonical)),
            config,
        }
    }

    /// What differs between this run and the `recorded` one of a checkpoint, one line each (the
    /// seed, the data, each changed setting by its dotted key); empty when they are the same run.
    pub fn differences(&self, recorded: &RunIdentity) -> Vec<String> {
        let mut found = Vec::new();
        if self.seed != recorded.seed {
            found.push(format!("seed: {} → {}", recorded.seed, self.seed));
        }
        if self.data_xxh3 != recorded.data_xxh3 {
            found.push(format!(
                "data: {} ({} items, xxh3 {}) → {} ({} items, xxh3 {})",
                describe_file(recorded.data_file.as_deref()),
                recorded.data_items,
                recorded.data_xxh3,
                describe_file(self.data_file.as_deref()),
                self.data_items,
                self.data_xxh3
            ));
        }
        if self.config_xxh3 != recorded.config_xxh3 {
            let mut keys = Vec::new();
            changed_keys(&recorded.config, &self.config, String::new(), &mut keys);
            if keys.is_empty() {
                keys.push("settings (same values, another hash)".into());
            }
            found.extend(keys);
        }
        found
    }

    /// Checks that resuming the checkpoint in `checkpoint`, which recorded `recorded` (`None`:
    /// written before identities were recorded, taken as it is), continues this run. A changed
    /// run is an error naming every difference, unless `resume.allow_changed`, which warns.
    pub fn check_resume(
        &self,
        recorded: Option<&RunIdentity>,
        checkpoint: &Path,
        resume: ResumeConfig,
    ) -> Result<()> {
        let Some(recorded) = recorded else {
            tracing::warn!(
                checkpoint = %checkpoint.display(),
                "the checkpoint records no seed, data or settings hash; resuming unchecked"
            );
            return Ok(());
        };
        let differences = self.differences(recorded);
        if differences.is_empty() {
            return Ok(());
        }
        let list = differences.join("; ");
        if resume.allow_changed {
            tracing::warn!(
                checkpoint = %checkpoint.display(),
                "resuming a changed run (resume.allow_changed): {list}"
            );
            return Ok(());
        }
        Err(Error::Checkpoint {
            path: checkpoint.to_path_buf(),
            message: format!(
                "this run differs from the one that wrote the checkpoint ({list}); resume with \
                 the same seed, data and settings, or pass --set resume.allow_changed=true to \
                 continue it changed"
            ),
        })
    }
}

fn describe_file(path: Option<&Path>) -> String {
    path.map_or_else(|| "built-in data".into(), |p| p.display().to_string())
}

/// The dotted keys whose values differ between `old` and `new`, with both values.
fn changed_keys(old: &Value, new: &Value, prefix: String, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => changed_keys(x, y, path, out),
                    (x, y) => out.push(format!("{path}: {} → {}", show(x), show(y))),
                }
            }
        }
        _ if old != new => out.push(format!("{prefix}: {old} → {new}")),
        _ => {}
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".into(), Value::to_string)
}

/// Removes the dotted `keys` (e.g. `trainer.max_steps`) from `config`: the settings a resumed
/// run may change. Keys that are not there are ignored.
pub fn without_keys(mut config: Value, keys: &[&str]) -> Value {
    for key in keys {
        let (parent, last) = match key.rsplit_once('.') {
            Some((parent, last)) => (Some(parent), last),
            None => (None, *key),
        };
        let node = match parent {
            Some(parent) => config.pointer_mut(&format!("/{}", parent.replace('.', "/"))),
            None => Some(&mut config),
        };
        if let Some(map) = node.and_then(Value::as_object_mut) {
            map.remove(last);
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(seed: u64, items: &[&str], lr: f64) -> RunIdentity {
        RunIdentity::new(
            seed,
            Some(Path::new("data/train.jsonl")),
            items.iter().map(|s| s.as_bytes()),
            json!({ "grpo": { "lr": lr, "beta": 0.0 }, "steps": 3 }),
        )
    }

    #[test]
    fn the_same_run_passes_and_each_change_is_named() {
        let recorded = identity(1, &["a", "b"], 1e-5);
        let dir = Path::new("runs/x/checkpoints/step-000002");
        let same = identity(1, &["a", "b"], 1e-5);
        assert!(same.differences(&recorded).is_empty());
        same.check_resume(Some(&recorded), dir, ResumeConfig::default())
            .unwrap();

        let changed = identity(2, &["a", "bc"], 2e-5);
        let differences = changed.differences(&recorded);
        assert_eq!(differences.len(), 3, "{differences:?}");
        assert_eq!(differences[0], "seed: 1 → 2");
        assert!(differences[1].starts_with("data: data/train.jsonl (2 items"));
        assert_eq!(differences[2], "grpo.lr: 0.00001 → 0.00002");
        let err = changed
            .check_resume(Some(&recorded), dir, ResumeConfig::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("step-000002") && err.contains("seed: 1 → 2"),
            "{err}"
        );
        assert!(err.contains("resume.allow_changed"), "{err}");
        changed
            .check_resume(
                Some(&recorded),
                dir,
                ResumeConfig {
                    allow_changed: true,
                },
            )
            .unwrap();
        // A checkpoint from before identities were recorded is taken as it is.
        changed
            .check_resume(None, dir, ResumeConfig::default())
            .unwrap();
    }

    #[test]
    fn items_are_length_prefixed_and_moved_data_is_the_same_data() {
        let a = RunIdentity::new(0, None, ["ab", "c"], Value::Null);
        let b = RunIdentity::new(0, None, ["a", "bc"], Value::Null);
        assert_ne!(a.data_xxh3, b.data_xxh3);
        let moved = RunIdentity::new(
            0,
            Some(Path::new("elsewhere.jsonl")),
            ["ab", "c"],
            Value::Null,
        );
        assert!(moved.differences(&a).is_empty());
    }

    #[test]
    fn volatile_keys_are_removed_and_added_keys_are_named() {
        let config = json!({ "steps": 5, "trainer": { "max_steps": 5, "seed": 1, "n": 2 } });
        let kept = without_keys(config, &["steps", "trainer.max_steps", "absent.key", "x"]);
        assert_eq!(kept, json!({ "trainer": { "seed": 1, "n": 2 } }));
        let mut out = Vec::new();
        changed_keys(
            &json!({ "a": 1 }),
            &json!({ "a": 1, "b": true }),
            String::new(),
            &mut out,
        );
        assert_eq!(out, ["b: (absent) → true"]);
    }
}
