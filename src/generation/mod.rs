//! Generation: batched sampling from the policy with a KV cache, groups of `n` completions that
//! share one prefill of their prompt, continuous batching, and tool-integrated reasoning.
//!
//! ```no_run
//! # fn main() -> mathrl::Result<()> {
//! use mathrl::generation::{Engine, EngineConfig, SamplingParams};
//! use mathrl::model::Trainable;
//! let device = candle_core::Device::Cpu;
//! let policy = mathrl::Policy::load("model-dir", &device, None, Trainable::No)?;
//! let mut engine = Engine::from_policy(&policy, EngineConfig::default());
//! let params = SamplingParams { n: 8, temperature: 1.0, max_new_tokens: 256, ..Default::default() };
//! let out = engine.generate(&[vec![1, 2, 3]], &params)?;
//! assert_eq!(out.groups[0].completions.len(), 8);
//! # Ok(())
//! # }
//! ```

pub mod device_sampler;
mod engine;
pub mod forward;
pub mod kv_cache;
mod params;
pub mod sampler;
mod sequence;
pub mod stop;
pub mod tool;

pub use engine::{Engine, EngineConfig, EngineStats, GenerateOutput};
pub use kv_cache::SlotKvCache;
pub use params::SamplingParams;
pub use sampler::{SampledToken, Sampler, SamplerSettings};
pub use sequence::sequence_rng;
pub use tool::{extract_program, tool_output_spans, ToolExecutor, TOOL_CALL_TRIGGER};
