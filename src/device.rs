//! Device and dtype selection: the one place where code differs by device.

use candle_core::{DType, Device};

use crate::{Error, Result};

/// Parses a device name: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => cuda(ordinal),
            _ => Err(Error::Input(format!(
                "unknown device `{name}`: expected cpu, cuda or cuda:N"
            ))),
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Result<Device> {
    Err(Error::Input(
        "device cuda requested but mathrl was built without the `cuda` feature \
         (rebuild with `--features cuda`)"
            .into(),
    ))
}

/// Fixes the number of CPU threads candle uses for the rest of the process: sets
/// `RAYON_NUM_THREADS` to the number of physical cores unless the user set it. Call it first
/// thing in `main`, before any other thread starts (it writes the environment).
///
/// Why: candle-core 0.11 works its thread count out again on every CPU matmul, and without
/// `RAYON_NUM_THREADS` that means parsing `/proc/cpuinfo` (`num_cpus::get_physical`). On a
/// 2-core VM that took a third of a decode step. The count it sets is the one candle would find.
pub fn pin_cpu_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var(
            "RAYON_NUM_THREADS",
            num_cpus::get_physical().max(1).to_string(),
        );
    }
}

/// The compute dtype used for weights on `device`: f32 on CPU, bf16 on GPU.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// Parses a dtype name as written in config.json (`float32`, `bfloat16`, `float16`) or short
/// (`f32`, `bf16`, `f16`).
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "float32" | "f32" => Ok(DType::F32),
        "bfloat16" | "bf16" => Ok(DType::BF16),
        "float16" | "f16" => Ok(DType::F16),
        other => Err(Error::Input(format!(
            "unknown dtype `{other}`: expected float32, bfloat16 or float16"
        ))),
    }
}

/// The config.json name of a dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    }
}
