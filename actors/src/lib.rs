//! The mathrl runtime: rollout, reward and learner actors, the TIR tool runner, multi-node workers.

pub mod tool;
