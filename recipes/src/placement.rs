//! Where the parts of a training run live: the learner on `--device`, the rollout engines on
//! `--rollout-device` and the reward model on `--rm-device` (each defaults to `--device`).
//!
//! A part named on the learner's device (or two parts on one device) gets the same candle
//! `Device`, not a second handle: candle gives each `Device::new_cuda` call its own stream, and
//! tensors of two handles of one GPU would not mix.

use anyhow::{Context, Result};
use candle_core::Device;
use mathrl::memory::device_label;

use crate::cli::Cli;

/// The devices of a run's learner, rollout engines and reward model.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The policy being trained, its optimiser state and the reference model (`--device`).
    pub learner: Device,
    /// The rollout actors' shared copy of the weights and their KV caches (`--rollout-device`).
    pub rollout: Device,
    /// The reward model (`--rm-device`).
    pub reward_model: Device,
}

impl Placement {
    /// The placement the command line asks for, the learner on `learner` (the run's device).
    /// An error names the flag at fault.
    pub fn from_cli(cli: &Cli, learner: &Device) -> Result<Self> {
        let rollout = on(
            cli.rollout_device.as_deref(),
            "--rollout-device",
            &[learner],
        )?;
        let reward_model = on(
            cli.rm_device.as_deref(),
            "--rm-device",
            &[learner, &rollout],
        )?;
        Ok(Self {
            learner: learner.clone(),
            rollout,
            reward_model,
        })
    }

    /// The devices by name, for the memory plan.
    pub fn labels(&self) -> mathrl::memory::Placement {
        mathrl::memory::Placement {
            learner: device_label(&self.learner),
            rollout: device_label(&self.rollout),
            reward_model: device_label(&self.reward_model),
        }
    }

    /// The distinct devices, learner first.
    pub fn devices(&self) -> Vec<&Device> {
        let mut devices: Vec<&Device> = Vec::new();
        for device in [&self.learner, &self.rollout, &self.reward_model] {
            if !devices.iter().any(|d| d.same_device(device)) {
                devices.push(device);
            }
        }
        devices
    }
}

/// The device `name` given to `flag` (the first of `known` when absent), reusing a known
/// device of the same name.
fn on(name: Option<&str>, flag: &str, known: &[&Device]) -> Result<Device> {
    let Some(name) = name else {
        return Ok(known[0].clone());
    };
    let device = mathrl::device::parse_device(name).with_context(|| format!("{flag} {name}"))?;
    let label = device_label(&device);
    Ok(known
        .iter()
        .find(|d| device_label(d) == label)
        .map_or(device, |&d| d.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mathrl").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn every_part_defaults_to_the_learners_device() {
        let placement = Placement::from_cli(&cli(&[]), &Device::Cpu).unwrap();
        assert!(placement.rollout.is_cpu() && placement.reward_model.is_cpu());
        assert_eq!(placement.labels(), mathrl::memory::Placement::all_on("cpu"));
        assert_eq!(placement.devices().len(), 1);
    }

    #[test]
    fn the_flags_are_parsed_and_reach_the_placement() {
        let args = cli(&["--rollout-device", "cpu", "--rm-device", "cpu"]);
        assert_eq!(args.rollout_device.as_deref(), Some("cpu"));
        assert_eq!(args.rm_device.as_deref(), Some("cpu"));
        let placement = Placement::from_cli(&args, &Device::Cpu).unwrap();
        assert!(placement.rollout.same_device(&Device::Cpu));
        assert!(placement.reward_model.same_device(&Device::Cpu));
    }

    #[test]
    fn a_bad_device_names_its_flag() {
        let err = Placement::from_cli(&cli(&["--rm-device", "gpu"]), &Device::Cpu).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("--rm-device gpu") && err.contains("unknown device `gpu`"),
            "{err}"
        );
        let err = Placement::from_cli(&cli(&["--rollout-device", "cuda:1"]), &Device::Cpu);
        if cfg!(not(feature = "cuda")) {
            let err = format!("{:#}", err.unwrap_err());
            assert!(
                err.contains("--rollout-device cuda:1") && err.contains("`cuda` feature"),
                "{err}"
            );
        }
    }
}
