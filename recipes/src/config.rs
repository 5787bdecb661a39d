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
    let mut known = Vec::new();
    leaf_keys(&table, "", &mut known);
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
        from_table::<C>(&table, &known).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {set}: expected key=value"))?;
        moved(key.trim()).map_err(|e| anyhow!("--set {set}: {e}"))?;
        let value = parse_value(raw.trim());
        set_path(&mut table, key.trim(), value).map_err(|e| anyhow!("--set {set}: {e}"))?;
        from_table::<C>(&table, &known).map_err(|e| anyhow!("--set {set}: {e}"))?;
    }
    from_table(&table, &known)
}

/// The resolved config as TOML, every field shown.
pub fn to_toml<C: Serialize>(config: &C) -> Result<String> {
    Ok(toml::to_string_pretty(config)?)
}

/// The dotted keys of every value of `config` (`grpo.loss.beta`), sorted.
pub fn dotted_keys<C: Serialize>(config: &C) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    leaf_keys(&Table::try_from(config)?, "", &mut keys);
    Ok(keys)
}

/// `config` as a markdown table of key | value, sorted by key (TensorBoard's `hyperparameters`
/// text).
pub fn markdown_table<C: Serialize>(config: &C) -> Result<String> {
    let mut rows = Vec::new();
    leaf_values(&Table::try_from(config)?, "", &mut rows);
    let mut out = String::from("| key | value |\n|---|---|\n");
    for (key, value) in rows {
        let value = value.to_string().replace('|', "\\|");
        out.push_str(&format!("| {key} | {value} |\n"));
    }
    Ok(out)
}

/// Every leaf of `table` with its dotted path under `prefix`.
fn leaf_values(table: &Table, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(t) => leaf_values(t, &path, out),
            _ => out.push((path, value.clone())),
        }
    }
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

/// Deserialises, naming the key of any error and, for an unknown key, the nearest of `known`
/// (the defaults' dotted keys, across sections).
fn from_table<C: DeserializeOwned>(table: &Table, known: &[String]) -> Result<C> {
    let value = Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, C>(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        let Some(unknown) = unknown_field(&inner) else {
            return anyhow!("config key `{path}`: {inner}");
        };
        let prefix = match path.rsplit_once('.') {
            Some((p, _)) if path != unknown && path != "?" && path != "." => format!("{p}."),
            _ => String::new(),
        };
        let key = format!("{prefix}{unknown}");
        // Keys serde lists for this section: an `Option` key whose default is `None` is missing
        // from the serialised defaults.
        let mut candidates: Vec<String> = expected_fields(&inner)
            .into_iter()
            .map(|field| format!("{prefix}{field}"))
            .collect();
        candidates.extend(known.iter().cloned());
        match nearest_key(&key, &candidates) {
            Some(near) => anyhow!("unknown config key `{key}`; did you mean `{near}`?"),
            None => anyhow!("unknown config key `{key}`"),
        }
    })
}

/// The dotted key of `candidates` nearest to `key`: one with the same last segment first (`grpo.beta`
/// → `grpo.loss.beta`), else the nearest last segment, ties broken by the whole key's distance.
pub fn nearest_key(key: &str, candidates: &[String]) -> Option<String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let wanted = last(key);
    candidates
        .iter()
        .map(|c| {
            let distance = edit_distance(&wanted, &last(c));
            (distance, edit_distance(key, c), c)
        })
        .filter(|(d, _, c)| *d <= last(c).len().max(wanted.len()) / 2)
        .min_by_key(|(d, full, _)| (*d, *full))
        .map(|(_, _, c)| c.clone())
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
    fn unknown_keys_name_the_nearest_key_of_another_section() {
        let err = resolve::<Outer>(None, &["beta=0".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--set beta=0: unknown config key `beta`; did you mean `grpo.beta`?"
        );
        let err = resolve::<Outer>(None, &["grpo.group_size=4".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--set grpo.group_size=4: unknown config key `grpo.group_size`; did you mean \
             `group_size`?"
        );
        // Same last segment wins over a nearer whole key.
        let keys = ["grpo.beta1", "grpo.loss.beta"].map(String::from);
        assert_eq!(
            nearest_key("grpo.beta", &keys).as_deref(),
            Some("grpo.loss.beta")
        );
        assert_eq!(nearest_key("zzz", &keys), None);
    }

    #[test]
    fn markdown_table_has_a_row_per_key_with_pipes_escaped() {
        let c = Outer {
            name: "a|b".into(),
            ..Outer::default()
        };
        let table = markdown_table(&c).unwrap();
        assert_eq!(
            table,
            "| key | value |\n|---|---|\n| group_size | 32 |\n| grpo.beta | 0.001 |\n\
             | grpo.lr | 0.00001 |\n| name | \"a\\|b\" |\n"
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
