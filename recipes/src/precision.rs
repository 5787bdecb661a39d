//! The precision of a run's models: the compute dtype (`--dtype`, config key `dtype`) and the
//! dtype saved models are written in (config key `save_dtype`).
//!
//! Trainable weights computed in bf16/f16 keep f32 master copies in the optimiser (see
//! `mathrl_learners::optim`); log-probs, losses and advantages are f32 whatever the dtype.

use candle_core::DType;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// A dtype setting: `auto` or a dtype.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DtypeSetting {
    /// Compute: the device's dtype (f32 on CPU, bf16 on CUDA). Save: the loaded files' dtype
    /// (config.json `dtype`/`torch_dtype`).
    #[default]
    Auto,
    /// float32.
    #[serde(alias = "float32")]
    #[value(alias = "float32")]
    F32,
    /// bfloat16.
    #[serde(alias = "bfloat16")]
    #[value(alias = "bfloat16")]
    Bf16,
    /// float16.
    #[serde(alias = "float16")]
    #[value(alias = "float16")]
    F16,
}

impl DtypeSetting {
    /// The dtype, `None` for `auto`.
    pub fn dtype(self) -> Option<DType> {
        match self {
            Self::Auto => None,
            Self::F32 => Some(DType::F32),
            Self::Bf16 => Some(DType::BF16),
            Self::F16 => Some(DType::F16),
        }
    }
}

/// The dtypes of a run's models (`None`: the default named at [`DtypeSetting::Auto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Precision {
    /// The dtype the policy, reference, RM and rollout engines compute in.
    pub compute: Option<DType>,
    /// The dtype `final/` and the checkpoints' models are written in.
    pub save: Option<DType>,
}

impl Precision {
    /// From a recipe's `dtype` and `save_dtype` keys; the `--dtype` flag, when given, wins over
    /// the `dtype` key.
    pub fn resolve(flag: Option<DtypeSetting>, dtype: DtypeSetting, save: DtypeSetting) -> Self {
        Self {
            compute: flag.unwrap_or(dtype).dtype(),
            save: save.dtype(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        dtype: DtypeSetting,
    }

    #[test]
    fn config_names_and_aliases_parse_and_unknown_ones_list_the_accepted() {
        let parse = |s: &str| toml::from_str::<Keys>(&format!("dtype = \"{s}\"")).map(|k| k.dtype);
        assert_eq!(parse("bf16").unwrap(), DtypeSetting::Bf16);
        assert_eq!(parse("bfloat16").unwrap(), DtypeSetting::Bf16);
        assert_eq!(parse("float32").unwrap(), DtypeSetting::F32);
        let err = parse("bf32").unwrap_err().to_string();
        assert!(err.contains("`auto`, `f32`, `float32`, `bf16`"), "{err}");
    }

    #[test]
    fn the_flag_wins_over_the_config_key() {
        let p = Precision::resolve(
            Some(DtypeSetting::Bf16),
            DtypeSetting::F32,
            DtypeSetting::F32,
        );
        assert_eq!(p.compute, Some(DType::BF16));
        assert_eq!(p.save, Some(DType::F32));
        let p = Precision::resolve(None, DtypeSetting::F16, DtypeSetting::Auto);
        assert_eq!(p.compute, Some(DType::F16));
        assert_eq!(p.save, None);
        assert_eq!(
            Precision::resolve(
                Some(DtypeSetting::Auto),
                DtypeSetting::F16,
                DtypeSetting::Auto
            )
            .compute,
            None
        );
    }
}
