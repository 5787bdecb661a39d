//! A run's settings as TensorBoard hyperparameters: one flat `dotted.key = value` map, so that
//! runs compare by their settings in the HParams tab.

use std::collections::BTreeMap;

use serde_json::Value;

/// One hyperparameter's value (what TensorBoard's HParams tab can show and filter on).
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    /// A number (integers included).
    Number(f64),
    /// Text: a string setting, or a list written as JSON.
    Text(String),
    /// A switch.
    Bool(bool),
}

/// The leaves of `config` (a recipe's resolved settings as JSON) by dotted key, in key order:
/// `grpo.loss.beta = 0.001`, `trainer.seed = 3`. Lists become their JSON text, since the HParams
/// tab has no list type; unset (`null`) settings are left out.
pub fn flatten_hparams(config: &Value) -> Vec<(String, HParamValue)> {
    let mut out = BTreeMap::new();
    flatten_into(config, String::new(), &mut out);
    out.into_iter().collect()
}

fn flatten_into(value: &Value, key: String, out: &mut BTreeMap<String, HParamValue>) {
    let leaf = match value {
        Value::Null => return,
        Value::Object(map) => {
            for (name, inner) in map {
                let inner_key = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                flatten_into(inner, inner_key, out);
            }
            return;
        }
        Value::Bool(b) => HParamValue::Bool(*b),
        Value::Number(n) => match n.as_f64() {
            Some(f) => HParamValue::Number(f),
            None => HParamValue::Text(n.to_string()),
        },
        Value::String(s) => HParamValue::Text(s.clone()),
        Value::Array(_) => HParamValue::Text(value.to_string()),
    };
    let key = if key.is_empty() { "value".into() } else { key };
    out.insert(key, leaf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_settings_become_dotted_keys_in_order() {
        let config = serde_json::json!({
            "trainer": {"seed": 3, "handle_signals": true},
            "grpo": {"loss": {"beta": 0.001}, "stop": ["</s>", "\n\n"], "dataset": null},
            "dtype": "bf16",
        });
        assert_eq!(
            flatten_hparams(&config),
            vec![
                ("dtype".to_string(), HParamValue::Text("bf16".into())),
                ("grpo.loss.beta".to_string(), HParamValue::Number(0.001)),
                (
                    "grpo.stop".to_string(),
                    HParamValue::Text(r#"["</s>","\n\n"]"#.into())
                ),
                (
                    "trainer.handle_signals".to_string(),
                    HParamValue::Bool(true)
                ),
                ("trainer.seed".to_string(), HParamValue::Number(3.0)),
            ]
        );
    }
}
