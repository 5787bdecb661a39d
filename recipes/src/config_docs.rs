//! The doc comments of config keys, for `--print-config` and the TensorBoard `hyperparameters`
//! text.
//!
//! The `///` comments of the config structs are the keys' documentation. They are read from the
//! sources of the workspace's crates, embedded at compile time, rather than through a derive
//! (`schemars` or our own): that would need a derive on every config type of four crates and
//! rebuild them all, while the sources already hold the text. A test checks that every key of
//! every recipe's config finds its comment, so a renamed file or struct cannot silently drop
//! them.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Every source file that defines a config type (a struct or enum reachable from a recipe's
/// config), relative to this file.
const SOURCES: &[&str] = &[
    include_str!("../../src/generation/engine.rs"),
    include_str!("../../src/generation/params.rs"),
    include_str!("../../src/data/procedural/mod.rs"),
    include_str!("../../learners/src/optim.rs"),
    include_str!("../../learners/src/grpo_config.rs"),
    include_str!("../../learners/src/train_step.rs"),
    include_str!("../../learners/src/run_identity.rs"),
    include_str!("../../learners/src/advantage.rs"),
    include_str!("../../learners/src/rollout_settings.rs"),
    include_str!("../../learners/src/checkpoint.rs"),
    include_str!("../../learners/src/sft.rs"),
    include_str!("../../learners/src/rm.rs"),
    include_str!("../../learners/src/policy_loss.rs"),
    include_str!("../../learners/src/schedule.rs"),
    include_str!("../../actors/src/config.rs"),
    include_str!("../../rewards/src/spec.rs"),
    include_str!("../../rewards/src/shaping.rs"),
    include_str!("../../sandbox/src/config.rs"),
    include_str!("train/qwen25_math_rl.rs"),
    include_str!("train/pipeline.rs"),
    include_str!("train/memory_plan.rs"),
    include_str!("train/sft.rs"),
    include_str!("train/tiny_bootstrap.rs"),
    include_str!("train/query_filter.rs"),
    include_str!("train/rm_retraining.rs"),
    include_str!("train/sft_data_evolution.rs"),
    include_str!("train/tir_data_evolution.rs"),
    include_str!("precision.rs"),
    include_str!("eval/prompts.rs"),
    include_str!("eval/recipe.rs"),
    include_str!("tools/synthesize.rs"),
    include_str!("tools/synthesize/operators.rs"),
    include_str!("tools/generate.rs"),
    include_str!("tools/python.rs"),
];

/// A field of a config type: its type's name (wrappers such as `Option` removed) and its doc.
#[derive(Debug, Clone, Default)]
struct Field {
    type_name: String,
    doc: String,
}

/// A struct or enum of the sources: its doc and its fields (an enum's: those of its variants).
#[derive(Debug, Clone, Default)]
struct TypeDocs {
    doc: String,
    is_enum: bool,
    fields: HashMap<String, Field>,
}

/// The doc comments of the config keys of the type named `root` (`RlConfig`).
pub struct ConfigDocs {
    root: String,
}

impl ConfigDocs {
    /// The docs of the config type `C`.
    pub fn of<C>() -> Self {
        let full = std::any::type_name::<C>();
        let root = full.split('<').next().unwrap_or(full);
        Self {
            root: root.rsplit("::").next().unwrap_or(root).to_string(),
        }
    }

    /// The doc comment of the dotted `key` (a section or a leaf), if the sources have one.
    /// A key not among its type's fields, such as the tag of an enum (`sync.mode`), gets the
    /// type's own doc.
    pub fn doc(&self, key: &str) -> Option<&'static str> {
        let types = types();
        let mut current = types.get(&self.root);
        let mut doc = None;
        for segment in key.split('.') {
            let ty = current?;
            match ty.fields.get(segment) {
                Some(field) => {
                    doc = Some(field.doc.as_str());
                    current = types.get(&field.type_name);
                }
                // An internally tagged enum's tag key (`mode`) is not a field.
                None if ty.is_enum => {
                    doc = Some(ty.doc.as_str());
                    current = None;
                }
                None => return None,
            }
        }
        doc.filter(|d| !d.is_empty())
    }
}

/// The config types of [`SOURCES`] by name (the first definition of a name wins).
fn types() -> &'static HashMap<String, TypeDocs> {
    static TYPES: OnceLock<HashMap<String, TypeDocs>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let mut types = HashMap::new();
        for source in SOURCES {
            parse_types(source, &mut types);
        }
        types
    })
}

/// Adds the structs and enums of `source` with their doc comments and fields to `out`.
///
/// A line-based reading of rustfmt-formatted code: a type starts at `struct Name {` or
/// `enum Name {`; its fields are the `name: Type,` lines one brace level in (an enum's: inside
/// its variants, two levels in); `///` lines before them are their docs, attributes between a
/// doc and its item are skipped.
fn parse_types(source: &str, out: &mut HashMap<String, TypeDocs>) {
    let mut doc: Vec<&str> = Vec::new();
    let mut open: Option<(String, TypeDocs, i32)> = None;
    let mut depth = 0i32;
    for line in source.lines() {
        let line = line.trim();
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text));
            continue;
        }
        if line.starts_with("#[") || (line.starts_with("//") && !line.starts_with("//!")) {
            continue;
        }
        match open.as_mut() {
            None => {
                if let Some((name, field_depth)) = type_start(line) {
                    let ty = TypeDocs {
                        doc: doc.join("\n"),
                        is_enum: field_depth == 2,
                        fields: HashMap::new(),
                    };
                    open = Some((name, ty, field_depth));
                    depth = 1;
                }
            }
            Some((_, ty, field_depth)) => {
                if depth == *field_depth {
                    if let Some((name, type_name)) = field(line) {
                        ty.fields.entry(name).or_insert(Field {
                            type_name,
                            doc: doc.join("\n"),
                        });
                    }
                }
                depth += braces(line);
                if depth <= 0 {
                    if let Some((name, ty, _)) = open.take() {
                        out.entry(name).or_insert(ty);
                    }
                }
            }
        }
        doc.clear();
    }
}

/// `(Name, depth of its fields)` of a line opening a struct or enum with braces.
fn type_start(line: &str) -> Option<(String, i32)> {
    let rest = line.strip_suffix('{')?.trim_end();
    let rest = strip_visibility(rest);
    let (rest, field_depth) = match rest.strip_prefix("struct ") {
        Some(rest) => (rest, 1),
        None => (rest.strip_prefix("enum ")?, 2),
    };
    let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
    (!name.is_empty()).then_some((name, field_depth))
}

/// `(name, type name)` of a `name: Type,` line.
fn field(line: &str) -> Option<(String, String)> {
    let (name, ty) = strip_visibility(line).split_once(':')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(is_ident) || ty.starts_with(':') {
        return None;
    }
    Some((name.to_string(), base_type(ty.trim().trim_end_matches(','))))
}

/// The type a key's sub-keys come from: `Option<crate::x::Y>` → `Y`.
fn base_type(ty: &str) -> String {
    let mut ty = ty.trim();
    for wrapper in ["Option<", "Vec<", "Box<", "Arc<"] {
        if let Some(inner) = ty.strip_prefix(wrapper) {
            ty = inner.strip_suffix('>').unwrap_or(inner);
        }
    }
    let ty = ty.split('<').next().unwrap_or(ty);
    ty.rsplit("::").next().unwrap_or(ty).trim().to_string()
}

fn strip_visibility(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("pub(") {
        return rest.split_once(')').map_or(rest, |(_, r)| r.trim_start());
    }
    line.strip_prefix("pub ").unwrap_or(line)
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Opening minus closing braces of a line (outside string literals).
fn braces(line: &str) -> i32 {
    let mut in_string = false;
    let mut escaped = false;
    let mut count = 0;
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' if !in_string => count += 1,
            '}' if !in_string => count -= 1,
            _ => {}
        }
    }
    count
}

/// `text` (a config as TOML) with each key's and section's doc comment above it; the keys of
/// `set_by_recipe` (`(key, by what)`) are commented out with a note, since the recipe replaces
/// whatever they hold. The result still parses as the same config, less those keys.
pub fn annotate(text: &str, docs: &ConfigDocs, set_by_recipe: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut section = String::new();
    let mut commenting = false;
    for line in text.lines() {
        if let Some(header) = table_header(line) {
            section = header;
            commenting = false;
            push_comment(&mut out, docs.doc(&section));
        } else if let Some(key) = key_of(line) {
            let full = if section.is_empty() {
                key
            } else {
                format!("{section}.{key}")
            };
            push_comment(&mut out, docs.doc(&full));
            commenting = false;
            if let Some((_, by)) = set_by_recipe.iter().find(|(k, _)| *k == full) {
                out.push_str(&format!(
                    "# Set by the recipe ({by}): a value here is ignored.\n"
                ));
                commenting = true;
            }
        }
        if commenting {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn push_comment(out: &mut String, doc: Option<&str>) {
    for line in doc.into_iter().flat_map(str::lines) {
        out.push_str(format!("# {line}").trim_end());
        out.push('\n');
    }
}

/// `a.b` of a `[a.b]` or `[[a.b]]` line.
fn table_header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.trim_start_matches('[').trim_end_matches(']');
    Some(inner.split('.').map(unquote).collect::<Vec<_>>().join("."))
}

/// The key of a top-level `key = value` line (not a value's continuation line).
fn key_of(line: &str) -> Option<String> {
    if line.starts_with(|c: char| c.is_whitespace() || c == '#' || c == ']') {
        return None;
    }
    let (key, _) = line.split_once(" = ")?;
    Some(unquote(key))
}

fn unquote(key: &str) -> String {
    key.trim().trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_parsing_finds_docs_of_fields_nested_types_and_enum_tags() {
        let docs = ConfigDocs {
            root: "TrainerConfig".into(),
        };
        assert!(docs
            .doc("prompts_per_step")
            .is_some_and(|d| d.starts_with("Prompts (groups) per learner step")));
        // A field whose serde form is another type's keys: the doc of the field's own type.
        assert!(docs
            .doc("sampling.top_p")
            .is_some_and(|d| d.contains("top")));
        // An enum's tag gets the enum's doc; its variants' fields their own.
        assert_eq!(
            docs.doc("sync.mode"),
            Some("How far rollouts may run ahead of the learner.")
        );
        assert!(docs
            .doc("sync.max_policy_lag")
            .is_some_and(|d| d.contains("lag")));
        assert_eq!(docs.doc("no_such_key"), None);
        assert_eq!(docs.doc("sampling.top_p.deeper"), None);
    }

    #[test]
    fn annotation_puts_docs_above_keys_and_comments_out_recipe_set_keys() {
        let docs = ConfigDocs {
            root: "TrainerConfig".into(),
        };
        let text = "prompts_per_step = 8\nmax_steps = 10\n\n[sync]\nmode = \"on_policy\"\n";
        let out = annotate(text, &docs, &[("max_steps", "--max-steps")]);
        let lines: Vec<&str> = out.lines().collect();
        let at = |l: &str| lines.iter().position(|x| *x == l).unwrap();
        assert_eq!(
            lines[at("prompts_per_step = 8") - 1],
            "# Prompts (groups) per learner step. Default 8."
        );
        assert_eq!(
            lines[at("# max_steps = 10") - 1],
            "# Set by the recipe (--max-steps): a value here is ignored."
        );
        assert_eq!(
            lines[at("[sync]") - 1],
            "# On-policy or asynchronous with a bounded lag. Default on-policy."
        );
        let parsed: toml::Table = out.parse().unwrap();
        assert!(parsed.get("max_steps").is_none());
        assert_eq!(parsed["prompts_per_step"].as_integer(), Some(8));
    }
}
