//! Recipe configuration: each recipe's config is a serde struct with documented defaults; a run
//! resolves it from the defaults, an optional TOML file (`--config`) and `--set key=value`
//! overrides, in that order. Unknown keys and wrong types are errors naming the key (and the
//! nearest known key); a key that moved is an error naming its new place.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::{Table, Value};

/// Keys that moved, with their new place. The rollout settings that the trainer and the GRPO
/// learner share have one key each, under `grpo.rollout`.
const MOVED_KEYS: &[(&str, &str)] = &[
    ("trainer.group_size", "grpo.rollout.group_size"),
    ("trainer.sampling.n", "grpo.rollout.group_size"),
    ("trainer.sampling.temperature", "grpo.rollout.temperature"),
    (
        "trainer.sampling.max_new_tokens",
        "grpo.rollout.max_new_tokens",
    ),
    ("trainer.sampling.seed", "--seed"),
    ("grpo.temperature", "grpo.rollout.temperature"),
    (
        "grpo.loss.max_completion_length",
        "grpo.rollout.max_new_tokens",
    ),
];

/// The error for `key` when it is one that moved.
fn moved(key: &str) -> Result<()> {
    match MOVED_KEYS.iter().find(|(old, _)| *old == key) {
        Some((old, new)) => bail!("config key `{old}` has moved: use `{new}`"),
        None => Ok(()),
    }
}

/// Every leaf key of `table` as a dotted path under `prefix`.
fn leaf_keys(table: &Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(t) => leaf_keys(t, &path, out),
            _ => out.push(path),
        }
    }
}

/// Resolves a recipe config: `C::default()`, then the file, then each `key=value` of `sets`.
pub fn resolve<C: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    sets: &[String],
) -> Result<C> {
    resolve_from(C::default(), file, sets)
}

/// Resolves a recipe config from `base` (a recipe's alternative defaults), then the file, then
/// each `key=value` of `sets`.
pub fn resolve_from<C: Serialize + DeserializeOwned>(
    base: C,
    file: Option<&Path>,
    sets: &[String],
) -> Result<C> {
    let mut table =
        Table::try_from(base).context("a recipe's default config must serialise to TOML")?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let overrides: Table = text
            .parse()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let mut keys = Vec::new();
        leaf_keys(&overrides, "", &mut keys);
        for key in keys {
            moved(&key).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        }
        merge(&mut table, overrides);
        from_table::<C>(&table).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {set}: expected key=value"))?;
        moved(key.trim()).map_err(|e| anyhow!("--set {set}: {e}"))?;
        let value = parse_value(raw.trim());
        set_path(&mut table, key.trim(), value).map_err(|e| anyhow!("--set {set}: {e}"))?;
        from_table::<C>(&table).map_err(|e| anyhow!("--set {set}: {e}"))?;
    }
    from_table(&table)
}

/// The resolved config as TOML, every field shown.
pub fn to_toml<C: Serialize>(config: &C) -> Result<String> {
    Ok(toml::to_string_pretty(config)?)
}

/// A `--set` value: TOML if it parses as one (`3`, `1e-5`, `true`, `"x"`, `[1, 2]`), else a string.
fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

fn merge(base: &mut Table, overrides: Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut Table, key: &str, value: Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| anyhow!("empty key"))?;
    let mut current = table;
    for part in parts {
        current = match current
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(t) => t,
            _ => bail!("`{part}` is a value, not a section"),
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// Deserialises, naming the key of any error and the nearest known key of an unknown one.
fn from_table<C: DeserializeOwned>(table: &Table) -> Result<C> {
    let value = Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, C>(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        if let Some(unknown) = unknown_field(&inner) {
            let prefix = path
                .rsplit_once('.')
                .map(|(p, _)| format!("{p}."))
                .unwrap_or_default();
            let prefix = if path == unknown || path == "?" || path == "." {
                String::new()
            } else {
                prefix
            };
            let known = expected_fields(&inner);
            match nearest(&unknown, &known) {
                Some(near) => anyhow!(
                    "unknown config key `{prefix}{unknown}`; did you mean `{prefix}{near}`?"
                ),
                None => anyhow!("unknown config key `{prefix}{unknown}`"),
            }
        } else {
            anyhow!("config key `{path}`: {inner}")
        }
    })
}

/// The field of serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// The field names listed in serde's "expected one of `a`, `b`" / "expected `a`" message.
fn expected_fields(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once("expected") else {
        return vec![];
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The candidate with the smallest edit distance to `word`, if reasonably close.
pub fn nearest(word: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= c.len().max(word.len()) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            row.push(substitute.min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        lr: f64,
        beta: f64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        group_size: usize,
        name: String,
        grpo: Inner,
    }

    impl Default for Inner {
        fn default() -> Self {
            Self {
                lr: 1e-5,
                beta: 1e-3,
            }
        }
    }

    impl Default for Outer {
        fn default() -> Self {
            Self {
                group_size: 32,
                name: "x".into(),
                grpo: Inner::default(),
            }
        }
    }

    #[test]
    fn file_then_sets_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "group_size = 8\n[grpo]\nbeta = 0.0\n").unwrap();
        let sets = vec!["grpo.lr=3e-4".to_string(), "name=hello world".to_string()];
        let c: Outer = resolve(Some(&file), &sets).unwrap();
        assert_eq!(
            c,
            Outer {
                group_size: 8,
                name: "hello world".into(),
                grpo: Inner {
                    lr: 3e-4,
                    beta: 0.0
                }
            }
        );
        let printed = to_toml(&c).unwrap();
        let again: Outer = toml::from_str(&printed).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_keys_name_the_nearest_known_key() {
        let err = resolve::<Outer>(None, &["grpo.lrr=1".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown config key `grpo.lrr`") && err.contains("`grpo.lr`"),
            "{err}"
        );
        let err = resolve::<Outer>(None, &["group_sise=4".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`group_sise`") && err.contains("did you mean `group_size`"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[grpo]\nbta = 0.0\n").unwrap();
        let err = resolve::<Outer>(Some(&file), &[]).unwrap_err().to_string();
        assert!(
            err.contains("c.toml") && err.contains("grpo.bta") && err.contains("grpo.beta"),
            "{err}"
        );
    }

    #[test]
    fn moved_keys_name_their_new_place_in_sets_and_files() {
        let err = resolve::<Outer>(None, &["trainer.group_size=8".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`trainer.group_size` has moved: use `grpo.rollout.group_size`"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[grpo.loss]\nmax_completion_length = 64\n").unwrap();
        let err = resolve::<Outer>(Some(&file), &[]).unwrap_err().to_string();
        assert!(
            err.contains("c.toml") && err.contains("use `grpo.rollout.max_new_tokens`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = resolve::<Outer>(None, &["group_size=lots".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("group_size"), "{err}");
        let err = resolve::<Outer>(None, &["grpo=3".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("grpo"), "{err}");
        assert!(resolve::<Outer>(None, &["nokey".into()])
            .unwrap_err()
            .to_string()
            .contains("key=value"));
    }
}
