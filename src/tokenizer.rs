//! The tokenizer (Hugging Face `tokenizer.json`) and its chat template, rendered with minijinja the
//! way transformers renders it (trim_blocks, lstrip_blocks). The template comes from
//! `chat_template.jinja` when the directory has one (where current transformers saves it),
//! else from `tokenizer_config.json`'s `chat_template`.

use std::path::Path;

use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// One message of a conversation, as in the `{"messages": [{"role", "content"}]}` format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A tokenizer with its chat template and special tokens.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    eos_token: Option<String>,
    bos_token: Option<String>,
    eos_token_id: Option<u32>,
    pad_token_id: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("eos_token", &self.eos_token)
            .field("pad_token_id", &self.pad_token_id)
            .finish()
    }
}

/// A special-token entry of tokenizer_config.json: a string or `{"content": ...}`.
fn token_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The file transformers writes the chat template to (and reads it from first).
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// `config` with its `chat_template` replaced by the text of `dir`'s `chat_template.jinja`, when
/// there is one: as in transformers, the file wins over the field.
fn with_template_file(mut config: Value, dir: &Path) -> Result<Value> {
    let path = dir.join(CHAT_TEMPLATE_FILE);
    if !path.is_file() {
        return Ok(config);
    }
    let template = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    if !config.is_object() {
        config = Value::Object(Default::default());
    }
    config["chat_template"] = Value::String(template);
    Ok(config)
}

impl Tokenizer {
    /// Whether `dir` holds a `tokenizer.json`.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join("tokenizer.json").is_file()
    }

    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json` and `chat_template.jinja`
    /// from `dir` (a directory, or a Hub id in the local cache: see [`crate::hub`]).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = &crate::hub::resolve_model_dir(dir.as_ref())?;
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.is_file() {
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: config_path.clone(),
                source,
            })?
        } else {
            Value::Null
        };
        Self::new(inner, &with_template_file(config, dir)?)
    }

    /// Builds a tokenizer from a loaded `tokenizers::Tokenizer` and a parsed tokenizer_config.json
    /// (`Value::Null` when there is none).
    pub fn new(inner: tokenizers::Tokenizer, config: &Value) -> Result<Self> {
        let eos_token = token_string(config.get("eos_token"));
        let bos_token = token_string(config.get("bos_token"));
        let pad_token = token_string(config.get("pad_token"));
        let id_of = |token: &Option<String>, field: &str| -> Result<Option<u32>> {
            match token {
                None => Ok(None),
                Some(t) => inner.token_to_id(t).map(Some).ok_or_else(|| {
                    Error::Tokenizer(format!(
                        "tokenizer_config.json field `{field}` = `{t}` is not in the vocabulary"
                    ))
                }),
            }
        };
        let eos_token_id = id_of(&eos_token, "eos_token")?;
        let pad_token_id = id_of(&pad_token, "pad_token")?;
        let chat_template = match config.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take the default one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(str::to_string),
            Some(other) => {
                return Err(Error::Tokenizer(format!(
                    "chat_template must be a string, found {other}"
                )))
            }
        };
        Ok(Self {
            inner,
            chat_template,
            eos_token,
            bos_token,
            eos_token_id,
            pad_token_id,
        })
    }

    /// This tokenizer as the text of a `tokenizer.json` and a `tokenizer_config.json` value that
    /// [`Tokenizer::from_json`] rebuilds it from (to hand it to another process).
    pub fn to_json(&self) -> Result<(String, Value)> {
        let json = self
            .inner
            .to_string(false)
            .map_err(|e| Error::Tokenizer(format!("serialising tokenizer.json: {e}")))?;
        let pad_token = self.pad_token_id.and_then(|id| self.inner.id_to_token(id));
        let config = serde_json::json!({
            "eos_token": self.eos_token,
            "bos_token": self.bos_token,
            "pad_token": pad_token,
            "chat_template": self.chat_template,
        });
        Ok((json, config))
    }

    /// Rebuilds a tokenizer from the parts [`Tokenizer::to_json`] made.
    pub fn from_json(tokenizer_json: &str, config: &Value) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes())
            .map_err(|e| Error::Tokenizer(format!("parsing tokenizer.json: {e}")))?;
        Self::new(inner, config)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The end-of-sequence id (`eos_token` of tokenizer_config.json).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_id
    }

    /// The padding id (`pad_token` of tokenizer_config.json).
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_token_id
    }

    /// Encodes `text`; special tokens written in the text (e.g. `<|im_start|>`) become single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes `ids`, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("decoding failed: {e}")))
    }

    /// Whether this tokenizer has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders `messages` with the chat template; with `add_generation_prompt` the text ends with
    /// the opening of an assistant turn.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| {
                Error::Tokenizer(format!(
                    "no chat template: neither {CHAT_TEMPLATE_FILE} nor tokenizer_config.json's chat_template"
                ))
            })?;
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let context = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            eos_token => self.eos_token.clone(),
            bos_token => self.bos_token.clone(),
        };
        env.render_str(template, context)
            .map_err(|e| Error::Tokenizer(format!("chat template: {e:#}")))
    }

    /// The prompt of a one-question conversation, with the template's default system prompt
    /// unless `system` is given.
    pub fn question_prompt(&self, question: &str, system: Option<&str>) -> Result<String> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = system {
            messages.push(ChatMessage::new("system", system));
        }
        messages.push(ChatMessage::new("user", question));
        self.apply_chat_template(&messages, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_json_and_from_json_rebuild_the_same_tokenizer() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/procedural-tokenizer"
        );
        let original = Tokenizer::from_dir(dir).unwrap();
        let (json, config) = original.to_json().unwrap();
        let back = Tokenizer::from_json(&json, &config).unwrap();
        let text = "What is 12 + 30?";
        assert_eq!(back.encode(text).unwrap(), original.encode(text).unwrap());
        assert_eq!(back.eos_token_id(), original.eos_token_id());
        assert_eq!(back.pad_token_id(), original.pad_token_id());
        assert_eq!(
            back.question_prompt(text, None).unwrap(),
            original.question_prompt(text, None).unwrap()
        );
    }

    #[test]
    fn chat_template_jinja_wins_over_tokenizer_config() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/procedural-tokenizer"
        );
        let dir = tempfile::tempdir().unwrap();
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(Path::new(fixture).join(file), dir.path().join(file)).unwrap();
        }
        let messages = [ChatMessage::new("user", "q")];
        let from_config = Tokenizer::from_dir(dir.path()).unwrap();
        let config_rendering = from_config.apply_chat_template(&messages, true).unwrap();
        assert!(!config_rendering.starts_with("FILE"), "{config_rendering}");

        let template = "FILE{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}";
        std::fs::write(dir.path().join(CHAT_TEMPLATE_FILE), template).unwrap();
        let from_file = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(
            from_file.apply_chat_template(&messages, true).unwrap(),
            "FILE[user:q]"
        );
        // It travels with the tokenizer to other processes.
        let (json, config) = from_file.to_json().unwrap();
        let back = Tokenizer::from_json(&json, &config).unwrap();
        assert_eq!(
            back.apply_chat_template(&messages, true).unwrap(),
            "FILE[user:q]"
        );

        // With neither, the error names both places a template can be.
        let mut bare: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        bare.as_object_mut().unwrap().remove("chat_template");
        let none = Tokenizer::new(from_file.inner().clone(), &bare).unwrap();
        let err = none
            .apply_chat_template(&messages, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(CHAT_TEMPLATE_FILE) && err.contains("tokenizer_config.json"),
            "{err}"
        );
    }
}
