//! `Qwen2Config`: the fields of a Hugging Face `config.json` that change the computation.

use std::path::Path;

use candle_core::DType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::device::{dtype_name, parse_dtype};
use crate::{Error, Result};

/// The configuration of a Qwen2 model, as read from `config.json`.
///
/// Both the hub's form (top-level `rope_theta`, `torch_dtype`) and the form transformers v5
/// writes (`rope_parameters.rope_theta`, `dtype`) are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    /// Rows of the embedding table (and of the LM head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Longest sequence the model was trained for.
    pub max_position_embeddings: usize,
    /// Base of the rotary embedding frequencies.
    pub rope_theta: f64,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Whether the LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// The dtype the weights were saved in (`float32`, `bfloat16`, ...), if stated.
    pub torch_dtype: Option<String>,
    /// Beginning-of-sequence token, if any.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (config.json allows one id or a list). Loaded from a model
    /// directory, also those of its generation_config.json (see [`Qwen2Config::from_model_dir`]).
    pub eos_token_ids: Vec<u32>,
    /// Padding token, if any.
    pub pad_token_id: Option<u32>,
    /// The model architecture named in config.json (e.g. `Qwen2ForCausalLM`).
    pub architecture: Option<String>,
    /// Output labels of a sequence-classification head (`num_labels`), if stated.
    pub num_labels: Option<usize>,
}

impl Qwen2Config {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The dtype named by `torch_dtype`, if any.
    pub fn weights_dtype(&self) -> Result<Option<DType>> {
        self.torch_dtype.as_deref().map(parse_dtype).transpose()
    }

    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&value).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Reads `dir/config.json`, then adds the `eos_token_id`s of `dir/generation_config.json` (when
    /// there is one) that config.json lacks: generation stops on all of them, as it does in
    /// transformers and vLLM (Qwen2.5-Math-Instruct's config.json names only `<|im_end|>`; its
    /// generation_config.json also `<|endoftext|>`).
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let mut config = Self::from_file(dir.join("config.json"))?;
        let path = dir.join("generation_config.json");
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;
            let ids = eos_ids(value.get("eos_token_id"))
                .map_err(|message| Error::Config { path, message })?;
            for id in ids {
                if !config.eos_token_ids.contains(&id) {
                    config.eos_token_ids.push(id);
                }
            }
        }
        Ok(config)
    }

    /// Builds the config from a parsed config.json; the error names the field at fault.
    pub fn from_json(value: &Value) -> std::result::Result<Self, String> {
        let obj = value
            .as_object()
            .ok_or("config.json is not a JSON object")?;
        let get = |key: &str| obj.get(key).filter(|v| !v.is_null());
        let usize_field = |key: &str| -> std::result::Result<usize, String> {
            get(key)
                .ok_or(format!("missing field `{key}`"))?
                .as_u64()
                .map(|v| v as usize)
                .ok_or(format!("field `{key}` must be a non-negative integer"))
        };
        let f64_field = |v: &Value, key: &str| -> std::result::Result<f64, String> {
            v.as_f64().ok_or(format!("field `{key}` must be a number"))
        };
        let opt_u32 = |key: &str| -> std::result::Result<Option<u32>, String> {
            get(key)
                .map(|v| {
                    v.as_u64()
                        .map(|x| x as u32)
                        .ok_or(format!("field `{key}` must be an integer"))
                })
                .transpose()
        };

        if let Some(model_type) = get("model_type").and_then(Value::as_str) {
            if model_type != "qwen2" {
                return Err(format!(
                    "model_type `{model_type}` is not supported (expected qwen2)"
                ));
            }
        }
        if get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            return Err("use_sliding_window: true is not supported (full attention only)".into());
        }
        if let Some(act) = get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(format!(
                    "hidden_act `{act}` is not supported (expected silu)"
                ));
            }
        }
        if let Some(scaling) = get("rope_scaling") {
            return Err(format!("rope_scaling {scaling} is not supported"));
        }
        if let Some(types) = get("layer_types").and_then(Value::as_array) {
            if let Some(other) = types.iter().find(|t| t.as_str() != Some("full_attention")) {
                return Err(format!(
                    "layer_types entry {other} is not supported (full_attention only)"
                ));
            }
        }
        let rope_theta = match (get("rope_theta"), get("rope_parameters")) {
            (Some(theta), _) => f64_field(theta, "rope_theta")?,
            (None, Some(params)) => {
                if let Some(kind) = params.get("rope_type").and_then(Value::as_str) {
                    if kind != "default" {
                        return Err(format!(
                            "rope_parameters.rope_type `{kind}` is not supported"
                        ));
                    }
                }
                let theta = params
                    .get("rope_theta")
                    .ok_or("missing field `rope_parameters.rope_theta`")?;
                f64_field(theta, "rope_parameters.rope_theta")?
            }
            (None, None) => 10_000.0,
        };
        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = match get("num_key_value_heads") {
            Some(_) => usize_field("num_key_value_heads")?,
            None => num_attention_heads,
        };
        if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
            ));
        }
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(format!(
                "num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"
            ));
        }
        if let Some(head_dim) = get("head_dim").and_then(Value::as_u64) {
            if head_dim as usize != hidden_size / num_attention_heads {
                return Err(format!(
                    "head_dim {head_dim} differs from hidden_size / num_attention_heads; not supported"
                ));
            }
        }
        let eos_token_ids = eos_ids(get("eos_token_id"))?;
        let torch_dtype = get("torch_dtype")
            .or_else(|| get("dtype"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(name) = &torch_dtype {
            parse_dtype(name).map_err(|e| format!("field `torch_dtype`: {e}"))?;
        }
        let rms_norm_eps = match get("rms_norm_eps") {
            Some(v) => f64_field(v, "rms_norm_eps")?,
            None => 1e-6,
        };
        Ok(Self {
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_hidden_layers: usize_field("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            max_position_embeddings: match get("max_position_embeddings") {
                Some(_) => usize_field("max_position_embeddings")?,
                None => 32_768,
            },
            rope_theta,
            rms_norm_eps,
            tie_word_embeddings: get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            torch_dtype,
            bos_token_id: opt_u32("bos_token_id")?,
            eos_token_ids,
            pad_token_id: opt_u32("pad_token_id")?,
            architecture: get("architectures")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string),
            num_labels: get("num_labels")
                .and_then(Value::as_u64)
                .map(|v| v as usize),
        })
    }

    /// The config.json this config writes: both the hub's and transformers v5's keys, so that
    /// old and new readers (transformers, vLLM) load it.
    pub fn to_json(&self, dtype: DType) -> Value {
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => Value::from(*one),
            many => Value::from(many.to_vec()),
        };
        let mut v = serde_json::json!({
            "architectures": [self.architecture.clone().unwrap_or_else(|| "Qwen2ForCausalLM".into())],
            "model_type": "qwen2",
            "attention_dropout": 0.0,
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "max_window_layers": self.num_hidden_layers,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": dtype_name(dtype),
            "dtype": dtype_name(dtype),
            "use_sliding_window": false,
            "sliding_window": null,
            "use_cache": true,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
        });
        if let Some(n) = self.num_labels {
            v["num_labels"] = n.into();
        }
        v
    }
}

/// The ids of an `eos_token_id` field: absent or null, one integer, or a list of integers.
fn eos_ids(value: Option<&Value>) -> std::result::Result<Vec<u32>, String> {
    let id = |v: &Value| {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or(format!(
                "field `eos_token_id` must be an integer or a list of integers, found {v}"
            ))
    };
    match value {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(ids)) => ids.iter().map(id).collect(),
        Some(v) => Ok(vec![id(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
               "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 32,
               "rms_norm_eps": 1e-6, "model_type": "qwen2"})
    }

    #[test]
    fn reads_hub_and_v5_forms_of_rope_theta_and_dtype() {
        let mut hub = base();
        hub["rope_theta"] = json!(1e6);
        hub["torch_dtype"] = json!("bfloat16");
        let mut v5 = base();
        v5["rope_parameters"] = json!({"rope_theta": 1e6, "rope_type": "default"});
        v5["dtype"] = json!("bfloat16");
        let a = Qwen2Config::from_json(&hub).unwrap();
        let b = Qwen2Config::from_json(&v5).unwrap();
        assert_eq!(a.rope_theta, 1e6);
        assert_eq!(a, b);
        assert_eq!(a.weights_dtype().unwrap(), Some(DType::BF16));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (key, value, needle) in [
            ("use_sliding_window", json!(true), "use_sliding_window"),
            ("hidden_act", json!("gelu"), "hidden_act"),
            (
                "rope_scaling",
                json!({"type": "yarn", "factor": 4.0}),
                "rope_scaling",
            ),
            ("num_key_value_heads", json!(3), "num_key_value_heads"),
        ] {
            let mut c = base();
            c[key] = value;
            let err = Qwen2Config::from_json(&c).unwrap_err();
            assert!(err.contains(needle), "{key}: {err}");
        }
        let mut c = base();
        c.as_object_mut().unwrap().remove("hidden_size");
        assert!(Qwen2Config::from_json(&c)
            .unwrap_err()
            .contains("hidden_size"));
    }

    #[test]
    fn round_trips_through_written_json() {
        let mut c = base();
        c["eos_token_id"] = json!([3, 4]);
        c["tie_word_embeddings"] = json!(true);
        let cfg = Qwen2Config::from_json(&c).unwrap();
        let again = Qwen2Config::from_json(&cfg.to_json(DType::F32)).unwrap();
        assert_eq!(again.eos_token_ids, vec![3, 4]);
        assert_eq!(
            Qwen2Config {
                torch_dtype: None,
                architecture: None,
                ..again
            },
            Qwen2Config {
                architecture: None,
                ..cfg
            }
        );
    }

    #[test]
    fn generation_config_eos_ids_join_config_json_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = base();
        c["eos_token_id"] = json!(151645);
        std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
        let alone = Qwen2Config::from_model_dir(dir.path()).unwrap();
        assert_eq!(alone.eos_token_ids, vec![151645]);

        let generation = dir.path().join("generation_config.json");
        std::fs::write(&generation, r#"{"eos_token_id": [151645, 151643]}"#).unwrap();
        let joined = Qwen2Config::from_model_dir(dir.path()).unwrap();
        assert_eq!(joined.eos_token_ids, vec![151645, 151643]);

        std::fs::write(&generation, r#"{"eos_token_id": "<|im_end|>"}"#).unwrap();
        let err = Qwen2Config::from_model_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("generation_config.json") && err.contains("eos_token_id"),
            "{err}"
        );
    }
}
