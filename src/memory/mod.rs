//! The memory plan of a GRPO run: what each device will hold, computed from the model's shape and
//! the run's settings before any weight is loaded, and checked against the free memory.
//!
//! Pure arithmetic (no tensor is allocated). Per device, with P the policy's parameters and b the
//! bytes per element of the compute dtype:
//!
//! | component | bytes | where |
//! |---|---|---|
//! | policy weights | P · b | learner |
//! | f32 master weights | P · 4, when kept (default: whenever the dtype is not f32) | learner |
//! | gradients | P · 4 (accumulated in f32) | learner |
//! | AdamW moments | 2 · P · 4 (m and v in f32) | learner |
//! | reference model | P · b, only when β > 0 | learner |
//! | learner activations | see [`ActivationEstimate`] | learner |
//! | LM head logits | see [`ActivationEstimate`] | learner |
//! | rollout weights | P · b: one frozen copy shared by every local rollout actor | rollout |
//! | rollout KV cache | actors · slots · (prompt + max new tokens) · L · 2 · kv_heads · head_dim · b | rollout |
//! | reward model | P_rm · b | RM |
//!
//! where slots = min(group size, `max_live_sequences`, the slots `kv_cache_bytes` holds), as the
//! generation engine sizes its cache. Not counted: the CUDA context and allocator slack, the
//! reward model's and the rollouts' forward activations (inference, one layer at a time), the
//! moment a rollout actor still holds the previous version while the next is published, and the
//! bytes sent to remote workers (host memory).
//!
//! ```
//! use mathrl::memory::{Available, MemoryPlan, PlanInput};
//! # fn demo(config: mathrl::model::Qwen2Config) -> Result<(), mathrl::memory::MemoryError> {
//! let plan = MemoryPlan::new(&PlanInput::new(config));
//! println!("{plan}");
//! plan.check(&Available::new().with("cpu", 64 << 30))?;
//! # Ok(()) }
//! ```

mod available;
mod estimate;

use std::fmt;

use candle_core::DType;

use crate::device::dtype_name;
use crate::model::Qwen2Config;

pub use available::{available_bytes, device_label, Available, AVAILABLE_BYTES_ENV};
pub use estimate::{
    activation_bytes, causal_lm_parameters, kv_bytes_per_position, layer_elements_per_token,
    reward_model_parameters, ActivationEstimate,
};

/// Why a plan cannot be checked, or does not fit.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// A device needs more memory than it has free.
    #[error(
        "the memory plan does not fit on {device}: it needs {} and {} is free, {} short; the \
         biggest item there is {component} ({})",
        gib(*needed_bytes),
        gib(*available_bytes),
        gib(*shortfall_bytes),
        gib(*component_bytes)
    )]
    DoesNotFit {
        /// The device (`cpu`, `cuda:0`).
        device: String,
        /// Everything the plan puts on it.
        needed_bytes: u64,
        /// Its free memory.
        available_bytes: u64,
        /// `needed_bytes − available_bytes`.
        shortfall_bytes: u64,
        /// The biggest item on it.
        component: Component,
        /// That item's bytes.
        component_bytes: u64,
    },
    /// The free memory of a device could not be measured.
    #[error("free memory of {device}: {message}")]
    Unknown {
        /// The device.
        device: String,
        /// Why.
        message: String,
    },
}

/// Sizes of the rollout side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutShape {
    /// Local rollout actors (each with its own KV cache; all read one copy of the weights).
    /// Default 2.
    pub actors: usize,
    /// Completions per prompt (GRPO's G). Default 4.
    pub group_size: usize,
    /// Tokens of the longest prompt. Default 256.
    pub prompt_tokens: usize,
    /// Most new tokens per completion. Default 256.
    pub max_new_tokens: usize,
    /// The engine's `max_live_sequences`: most slots of an actor's KV cache. Default 64.
    pub max_live_sequences: usize,
    /// The engine's `kv_cache_bytes`: the KV budget of one actor. Default 2 GiB.
    pub kv_cache_bytes: u64,
}

impl Default for RolloutShape {
    fn default() -> Self {
        Self {
            actors: 2,
            group_size: 4,
            prompt_tokens: 256,
            max_new_tokens: 256,
            max_live_sequences: 64,
            kv_cache_bytes: 2 << 30,
        }
    }
}

impl RolloutShape {
    /// Tokens of the longest sequence: prompt + new tokens.
    pub fn sequence_tokens(&self) -> usize {
        self.prompt_tokens + self.max_new_tokens
    }
}

/// Sizes of one learner micro-batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerShape {
    /// Completions per micro-batch (GRPO's `micro_batch_size`). Default 8.
    pub micro_batch_sequences: usize,
    /// Token budget of a micro-batch (GRPO's `micro_batch_tokens`): fewer sequences go in one
    /// when `micro_batch_sequences` of them would exceed it, but never fewer than one; `None`: no
    /// budget. Default `None`.
    pub micro_batch_tokens: Option<usize>,
    /// Each decoder layer's activations are recomputed in the backward pass. Default false.
    pub gradient_checkpointing: bool,
    /// A group's prompt and completions share one row (GRPO's `pack_groups`), so attention
    /// spans the packed row rather than one completion. Default false.
    pub packed_groups: bool,
}

impl Default for LearnerShape {
    fn default() -> Self {
        Self {
            micro_batch_sequences: 8,
            micro_batch_tokens: None,
            gradient_checkpointing: false,
            packed_groups: false,
        }
    }
}

/// The device of each part of the run, by [`device_label`] (`cpu`, `cuda:1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The policy, its master copy, optimiser state, gradients, activations and the reference.
    pub learner: String,
    /// The rollout actors' shared weights and their KV caches.
    pub rollout: String,
    /// The reward model.
    pub reward_model: String,
}

impl Placement {
    /// Everything on `device`.
    pub fn all_on(device: impl Into<String>) -> Self {
        let device = device.into();
        Self {
            learner: device.clone(),
            rollout: device.clone(),
            reward_model: device,
        }
    }
}

impl Default for Placement {
    fn default() -> Self {
        Self::all_on("cpu")
    }
}

/// What the plan is computed from. Every field but the policy's shape has a default, so a
/// recipe sets only what its config knows.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    /// The policy's shape (config.json).
    pub policy: Qwen2Config,
    /// Compute dtype of the policy, reference, rollout copy and RM. Default f32.
    pub dtype: DType,
    /// Keep an f32 master copy of the trainable weights; `None`: whenever `dtype` is not f32.
    pub master_weights: Option<bool>,
    /// A reference model is kept (β > 0). Default true.
    pub reference_model: bool,
    /// The reward model's shape, when the run uses one. Default none.
    pub reward_model: Option<Qwen2Config>,
    /// The reward model's dtype; `None`: `dtype`. Default `None`.
    pub reward_model_dtype: Option<DType>,
    /// The rollout side.
    pub rollout: RolloutShape,
    /// The learner's micro-batch.
    pub learner: LearnerShape,
    /// Where each part lives. Default all on the CPU.
    pub placement: Placement,
}

impl PlanInput {
    /// The defaults (see each field) for a policy of shape `policy`.
    pub fn new(policy: Qwen2Config) -> Self {
        Self {
            policy,
            dtype: DType::F32,
            master_weights: None,
            reference_model: true,
            reward_model: None,
            reward_model_dtype: None,
            rollout: RolloutShape::default(),
            learner: LearnerShape::default(),
            placement: Placement::default(),
        }
    }

    /// Whether an f32 master copy is kept: as set, else whenever the dtype is not f32.
    pub fn keeps_master_weights(&self) -> bool {
        self.master_weights.unwrap_or(self.dtype != DType::F32)
    }

    /// Tokens a learner row's attention spans: a padded sequence (prompt + max new tokens), or
    /// with packed groups a prompt followed by as many of its group's completions as a
    /// micro-batch holds, within the token budget.
    pub fn attention_span(&self) -> usize {
        let sequence = self.rollout.sequence_tokens();
        if !self.learner.packed_groups {
            return sequence;
        }
        let completions = self
            .learner
            .micro_batch_sequences
            .clamp(1, self.rollout.group_size.max(1));
        let packed = self.rollout.prompt_tokens + completions * self.rollout.max_new_tokens;
        match self.learner.micro_batch_tokens {
            Some(budget) => packed.min(budget.max(sequence)),
            None => packed,
        }
    }

    /// Tokens of one learner micro-batch: `micro_batch_sequences` sequences padded to the
    /// longest (prompt + max new tokens), as many as the token budget allows, at least one.
    pub fn micro_batch_tokens(&self) -> u64 {
        let sequence = self.rollout.sequence_tokens();
        let rows = self.learner.micro_batch_sequences.max(1) * sequence;
        let tokens = match self.learner.micro_batch_tokens {
            Some(budget) => rows.min(budget.max(sequence)),
            None => rows,
        };
        tokens as u64
    }
}

/// One part of a run's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The trainable policy in the compute dtype.
    PolicyWeights,
    /// Its f32 master copy.
    MasterWeights,
    /// Gradients (f32).
    Gradients,
    /// AdamW's first and second moments (f32).
    AdamMoments,
    /// The frozen reference model (β > 0).
    ReferenceModel,
    /// Decoder-layer activations of a learner micro-batch.
    Activations,
    /// Final norm, logits and softmax of a learner micro-batch.
    LmHeadLogits,
    /// The rollout actors' shared frozen copy of the policy.
    RolloutWeights,
    /// The rollout actors' KV caches.
    RolloutKvCache,
    /// The reward model.
    RewardModel,
}

impl Component {
    /// Its name in the plan's table and errors.
    pub fn name(self) -> &'static str {
        match self {
            Component::PolicyWeights => "policy weights",
            Component::MasterWeights => "f32 master weights",
            Component::Gradients => "f32 gradients",
            Component::AdamMoments => "AdamW moments",
            Component::ReferenceModel => "reference model",
            Component::Activations => "learner activations",
            Component::LmHeadLogits => "LM head logits",
            Component::RolloutWeights => "rollout weights",
            Component::RolloutKvCache => "rollout KV cache",
            Component::RewardModel => "reward model",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    /// What it is.
    pub component: Component,
    /// Where it lives.
    pub device: String,
    /// Its size.
    pub bytes: u64,
    /// How the size was computed, in words and numbers.
    pub formula: String,
}

/// The memory a run will hold, item by item and device by device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The items, learner first; items of size 0 are left out.
    pub items: Vec<PlanItem>,
    /// The settings in one line (dtype, master weights, checkpointing, micro-batch).
    pub settings: String,
}

impl MemoryPlan {
    /// Computes the plan of `input`.
    pub fn new(input: &PlanInput) -> Self {
        let config = &input.policy;
        let b = input.dtype.size_in_bytes() as u64;
        let dtype = dtype_name(input.dtype);
        let p = causal_lm_parameters(config);
        let mut items = Vec::new();
        let mut add = |component, device: &str, bytes: u64, formula: String| {
            if bytes > 0 {
                items.push(PlanItem {
                    component,
                    device: device.to_string(),
                    bytes,
                    formula,
                });
            }
        };
        let place = &input.placement;
        let weights = format!("{} parameters × {b} B ({dtype})", thousands(p));

        add(
            Component::PolicyWeights,
            &place.learner,
            p * b,
            weights.clone(),
        );
        if input.keeps_master_weights() {
            add(
                Component::MasterWeights,
                &place.learner,
                p * 4,
                format!("{} parameters × 4 B", thousands(p)),
            );
        }
        add(
            Component::Gradients,
            &place.learner,
            p * 4,
            format!("{} parameters × 4 B", thousands(p)),
        );
        add(
            Component::AdamMoments,
            &place.learner,
            2 * p * 4,
            format!("2 moments × {} parameters × 4 B", thousands(p)),
        );
        if input.reference_model {
            add(
                Component::ReferenceModel,
                &place.learner,
                p * b,
                weights.clone() + ", β > 0",
            );
        }
        let tokens = input.micro_batch_tokens();
        let sequence = input.rollout.sequence_tokens();
        let checkpointing = input.learner.gradient_checkpointing;
        let span = input.attention_span();
        let activations = activation_bytes(config, b, tokens, span, checkpointing);
        let per_token = layer_elements_per_token(config, span);
        let layers = config.num_hidden_layers;
        let mut how = if checkpointing {
            format!(
                "{layers} layer inputs × {} tokens × {} + 1 layer × {} tokens × {} elements × {b} \
                 B (recomputed)",
                thousands(tokens),
                thousands(config.hidden_size as u64),
                thousands(tokens),
                thousands(per_token)
            )
        } else {
            format!(
                "{layers} layers × {} tokens × {} elements × {b} B",
                thousands(tokens),
                thousands(per_token)
            )
        };
        if input.learner.packed_groups {
            how += &format!(
                ", attention over packed rows of {} tokens",
                thousands(span as u64)
            );
        }
        add(
            Component::Activations,
            &place.learner,
            activations.decoder_bytes,
            how,
        );
        add(
            Component::LmHeadLogits,
            &place.learner,
            activations.lm_head_bytes,
            format!(
                "{} tokens × (2 × {} × {b} B + 2 × {} vocab × 4 B)",
                thousands(tokens),
                thousands(config.hidden_size as u64),
                thousands(config.vocab_size as u64)
            ),
        );

        let rollout = &input.rollout;
        if rollout.actors > 0 {
            add(
                Component::RolloutWeights,
                &place.rollout,
                p * b,
                weights.clone() + &format!(", one copy shared by {} actors", rollout.actors),
            );
            let per_position = kv_bytes_per_position(config, b);
            let per_slot = sequence as u64 * per_position;
            let budget_slots = (rollout.kv_cache_bytes / per_slot.max(1)).max(1);
            let slots = (rollout.group_size.min(rollout.max_live_sequences.max(1)) as u64)
                .min(budget_slots);
            add(
                Component::RolloutKvCache,
                &place.rollout,
                rollout.actors as u64 * slots * per_slot,
                format!(
                    "{} actors × {slots} slots × {} tokens × {} B per token ({layers} layers × 2 × \
                     {} kv heads × {} × {b} B)",
                    rollout.actors,
                    thousands(sequence as u64),
                    thousands(per_position),
                    config.num_key_value_heads,
                    config.head_dim()
                ),
            );
        }
        if let Some(rm) = &input.reward_model {
            let p_rm = reward_model_parameters(rm);
            let rm_dtype = input.reward_model_dtype.unwrap_or(input.dtype);
            let rm_b = rm_dtype.size_in_bytes() as u64;
            add(
                Component::RewardModel,
                &place.reward_model,
                p_rm * rm_b,
                format!(
                    "{} parameters × {rm_b} B ({})",
                    thousands(p_rm),
                    dtype_name(rm_dtype)
                ),
            );
        }

        let settings = format!(
            "{dtype} weights, {}, gradient checkpointing {}, micro-batch {} tokens (sequences of \
             {} = {} prompt + {} new), reference model {}",
            if input.keeps_master_weights() {
                "f32 master weights"
            } else {
                "no master copy"
            },
            if checkpointing { "on" } else { "off" },
            thousands(tokens),
            thousands(sequence as u64),
            thousands(rollout.prompt_tokens as u64),
            thousands(rollout.max_new_tokens as u64),
            if input.reference_model {
                "kept (β > 0)"
            } else {
                "none (β = 0)"
            }
        );
        Self { items, settings }
    }

    /// The devices the plan uses, in the order they first appear.
    pub fn devices(&self) -> Vec<&str> {
        let mut devices: Vec<&str> = Vec::new();
        for item in &self.items {
            if !devices.contains(&item.device.as_str()) {
                devices.push(&item.device);
            }
        }
        devices
    }

    /// Bytes the plan puts on `device`.
    pub fn total_on(&self, device: &str) -> u64 {
        self.items
            .iter()
            .filter(|i| i.device == device)
            .map(|i| i.bytes)
            .sum()
    }

    /// Bytes of `component` (0 when the plan has none).
    pub fn bytes_of(&self, component: Component) -> u64 {
        self.items
            .iter()
            .filter(|i| i.component == component)
            .map(|i| i.bytes)
            .sum()
    }

    /// Checks every device's total against its free memory; the error names the first device
    /// that does not fit, its shortfall and its biggest item. A device missing from `available`
    /// is an error, not a pass.
    pub fn check(&self, available: &Available) -> Result<(), MemoryError> {
        for device in self.devices() {
            let free = available.get(device).ok_or_else(|| MemoryError::Unknown {
                device: device.to_string(),
                message: "not measured".into(),
            })?;
            let needed = self.total_on(device);
            if needed > free {
                let biggest = self
                    .items
                    .iter()
                    .filter(|i| i.device == device)
                    .max_by_key(|i| i.bytes)
                    .expect("a device of the plan has an item");
                return Err(MemoryError::DoesNotFit {
                    device: device.to_string(),
                    needed_bytes: needed,
                    available_bytes: free,
                    shortfall_bytes: needed - free,
                    component: biggest.component,
                    component_bytes: biggest.bytes,
                });
            }
        }
        Ok(())
    }

    /// The plan as a Markdown table, with each device's total and, when given, its free memory.
    pub fn table(&self, available: Option<&Available>) -> String {
        let mut out = format!("Memory plan: {}\n\n", self.settings);
        out.push_str("| component | device | bytes | GiB | how |\n|---|---|---:|---:|---|\n");
        for item in &self.items {
            out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {} |\n",
                item.component,
                item.device,
                thousands(item.bytes),
                item.bytes as f64 / GIB,
                item.formula
            ));
        }
        for device in self.devices() {
            let total = self.total_on(device);
            let verdict = match available.and_then(|a| a.get(device)) {
                Some(free) if total <= free => format!("fits in {} free", gib(free)),
                Some(free) => format!(
                    "does not fit: {} free, {} short",
                    gib(free),
                    gib(total - free)
                ),
                None => "free memory not measured".into(),
            };
            out.push_str(&format!(
                "| **total** | {device} | {} | {:.2} | {verdict} |\n",
                thousands(total),
                total as f64 / GIB
            ));
        }
        out
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table(None))
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// `12.34 GiB`, or bytes / KiB / MiB for small sizes.
fn gib(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1 << 10 {
        format!("{bytes} B")
    } else if bytes < 1 << 20 {
        format!("{:.1} KiB", b / 1024.0)
    } else if bytes < 1 << 30 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", b / GIB)
    }
}

/// `1,543,714,304`.
fn thousands(n: u64) -> String {
    let reversed: Vec<char> = n.to_string().chars().rev().collect();
    let groups: Vec<String> = reversed
        .chunks(3)
        .rev()
        .map(|group| group.iter().rev().collect())
        .collect();
    groups.join(",")
}

#[cfg(test)]
mod tests;
