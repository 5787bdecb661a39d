//! The memory plans of Qwen2.5-Math-1.5B and 7B GRPO runs on one 80 GB GPU, computed from the
//! shapes alone (nothing is loaded or run): `cargo run --example memory_plan`.
//!
//! Settings (the `qwen25-math-rl` recipe's report settings, with the report-scale length):
//! bf16 compute with f32 master weights, β = 1e-3 (a reference model), a reward model of the
//! policy's shape (as the pipeline's `rm` stage trains it from the policy), 2 rollout actors
//! sampling groups of 32 completions of up to 2,048 new tokens after prompts of up to 512, the
//! engine's default KV budget (2 GiB per actor), learner micro-batches of 8 sequences of
//! 512 + 2,048 tokens, everything on `cuda:0`, checked against 80 GiB free.
//!
//! For each model: the full plan with those settings, then the totals with gradient
//! checkpointing on, and on with 4,096-token micro-batches.

use candle_core::DType;
use mathrl::memory::{
    Available, Component, MemoryError, MemoryPlan, Placement, PlanInput, RolloutShape,
};
use mathrl::model::Qwen2Config;

const GPU: &str = "cuda:0";
const FREE_BYTES: u64 = 80 << 30;

/// A Qwen2.5 shape (rope θ 10,000 as the Math models' config.json; it does not enter the plan).
fn shape(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
    tied: bool,
) -> Qwen2Config {
    Qwen2Config::from_json(&serde_json::json!({
        "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "intermediate_size": intermediate, "tie_word_embeddings": tied,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    }))
    .expect("a valid Qwen2 shape")
}

fn report_settings(policy: Qwen2Config) -> PlanInput {
    let mut rm = policy.clone();
    rm.architecture = Some("Qwen2ForSequenceClassification".into());
    let mut input = PlanInput::new(policy);
    input.dtype = DType::BF16;
    input.master_weights = Some(true);
    input.reference_model = true;
    input.reward_model = Some(rm);
    input.rollout = RolloutShape {
        actors: 2,
        group_size: 32,
        prompt_tokens: 512,
        max_new_tokens: 2048,
        ..RolloutShape::default()
    };
    input.learner.micro_batch_sequences = 8;
    input.placement = Placement::all_on(GPU);
    input
}

/// `fits`, or the shortfall and the biggest item.
fn verdict(plan: &MemoryPlan, available: &Available) -> String {
    match plan.check(available) {
        Ok(()) => "fits".into(),
        Err(MemoryError::DoesNotFit {
            shortfall_bytes,
            component,
            ..
        }) => format!(
            "refused: {} GiB short, biggest {component}",
            gib(shortfall_bytes)
        ),
        Err(e) => format!("refused: {e}"),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1u64 << 30) as f64)
}

fn main() {
    let available = Available::new().with(GPU, FREE_BYTES);
    let models = [
        (
            "Qwen2.5-Math-1.5B",
            shape(151_936, 1_536, 28, 12, 2, 8_960, true),
        ),
        (
            "Qwen2.5-Math-7B",
            shape(152_064, 3_584, 28, 28, 4, 18_944, false),
        ),
    ];
    for (name, config) in models {
        let input = report_settings(config);
        let plan = MemoryPlan::new(&input);
        println!("### {name}\n");
        println!("{}", plan.table(Some(&available)));
        if let Err(e) = plan.check(&available) {
            println!("Refused: {e}\n");
        }

        println!("| variant | learner activations (GiB) | LM head logits (GiB) | total (GiB) | verdict |");
        println!("|---|---:|---:|---:|---|");
        let variants: [(&str, bool, Option<usize>); 3] = [
            ("checkpointing off, 8 × 2,560 tokens", false, None),
            ("checkpointing on, 8 × 2,560 tokens", true, None),
            (
                "checkpointing on, 4,096-token micro-batches",
                true,
                Some(4096),
            ),
        ];
        for (label, checkpointing, tokens) in variants {
            let mut variant = input.clone();
            variant.learner.gradient_checkpointing = checkpointing;
            variant.learner.micro_batch_tokens = tokens;
            let plan = MemoryPlan::new(&variant);
            println!(
                "| {label} | {} | {} | {} | {} |",
                gib(plan.bytes_of(Component::Activations)),
                gib(plan.bytes_of(Component::LmHeadLogits)),
                gib(plan.total_on(GPU)),
                verdict(&plan, &available)
            );
        }
        println!();
    }
}
