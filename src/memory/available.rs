//! How much memory each device has free: the host's `MemAvailable` for the CPU, the driver's free
//! memory for a CUDA device, or `$MATHRL_MEMORY_AVAILABLE_BYTES` for every device (tests, or a
//! deliberate budget).

use std::collections::BTreeMap;

use candle_core::{Device, DeviceLocation};

use super::MemoryError;

/// Environment variable that, when set, is the available memory of every device in bytes.
pub const AVAILABLE_BYTES_ENV: &str = "MATHRL_MEMORY_AVAILABLE_BYTES";

/// A device's name as `--device` spells it: `cpu`, `cuda:N`, `metal:N`.
pub fn device_label(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Free memory of `device` in bytes (see the module docs).
pub fn available_bytes(device: &Device) -> Result<u64, MemoryError> {
    let label = device_label(device);
    if let Some(value) = std::env::var_os(AVAILABLE_BYTES_ENV) {
        let text = value.to_string_lossy();
        return text
            .trim()
            .parse::<u64>()
            .map_err(|e| MemoryError::Unknown {
                device: label,
                message: format!("${AVAILABLE_BYTES_ENV} = `{text}` is not a byte count: {e}"),
            });
    }
    match device {
        Device::Cpu => {
            let path = "/proc/meminfo";
            let text = std::fs::read_to_string(path).map_err(|e| MemoryError::Unknown {
                device: label.clone(),
                message: format!("reading {path}: {e} (set ${AVAILABLE_BYTES_ENV})"),
            })?;
            mem_available(&text).ok_or_else(|| MemoryError::Unknown {
                device: label,
                message: format!("{path} has no MemAvailable line (set ${AVAILABLE_BYTES_ENV})"),
            })
        }
        Device::Cuda(_) => cuda_free_bytes(device, label),
        Device::Metal(_) => Err(MemoryError::Unknown {
            device: label,
            message: format!("not measured on Metal (set ${AVAILABLE_BYTES_ENV})"),
        }),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut fields = line.split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// Free memory of a CUDA device, from the driver (`cuMemGetInfo` in the device's context).
#[cfg(feature = "cuda")]
fn cuda_free_bytes(device: &Device, label: String) -> Result<u64, MemoryError> {
    match device {
        Device::Cuda(cuda) => cuda
            .cuda_stream()
            .context()
            .mem_get_info()
            .map(|(free, _total)| free as u64)
            .map_err(|e| MemoryError::Unknown {
                device: label,
                message: format!("cuMemGetInfo: {e}"),
            }),
        _ => Err(MemoryError::Unknown {
            device: label,
            message: "not a CUDA device".into(),
        }),
    }
}

/// Without the `cuda` feature no CUDA device can exist; kept so the match above compiles.
#[cfg(not(feature = "cuda"))]
fn cuda_free_bytes(_device: &Device, label: String) -> Result<u64, MemoryError> {
    Err(MemoryError::Unknown {
        device: label,
        message: "mathrl was built without the `cuda` feature".into(),
    })
}

/// Free memory per device, by [`device_label`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Available(BTreeMap<String, u64>);

impl Available {
    /// No device measured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes` free on `device` (a label: `cpu`, `cuda:0`).
    pub fn with(mut self, device: impl Into<String>, bytes: u64) -> Self {
        self.0.insert(device.into(), bytes);
        self
    }

    /// Measures each of `devices` with [`available_bytes`].
    pub fn query<'a>(devices: impl IntoIterator<Item = &'a Device>) -> Result<Self, MemoryError> {
        let mut available = Self::new();
        for device in devices {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                available.0.entry(device_label(device))
            {
                slot.insert(available_bytes(device)?);
            }
        }
        Ok(available)
    }

    /// Free bytes of `device`, if measured.
    pub fn get(&self, device: &str) -> Option<u64> {
        self.0.get(device).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       16384000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(mem_available(text), Some(8_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: 12 MB\n"), None);
    }

    #[test]
    fn the_host_has_some_memory() {
        // Unless the variable overrides it, the CPU's figure comes from /proc/meminfo.
        if std::env::var_os(AVAILABLE_BYTES_ENV).is_none() && cfg!(target_os = "linux") {
            assert!(available_bytes(&Device::Cpu).unwrap() > 0);
        }
        assert_eq!(device_label(&Device::Cpu), "cpu");
    }
}
