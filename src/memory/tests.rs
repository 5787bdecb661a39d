//! The plan's arithmetic against numbers computed by hand for the tiny fixture's shape and for
//! Qwen2.5-Math-1.5B's.

use candle_core::{DType, Device};

use super::*;
use crate::model::Trainable;
use crate::Policy;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-qwen2");

fn tiny() -> Qwen2Config {
    Qwen2Config::from_file(format!("{TINY}/config.json")).unwrap()
}

/// Qwen2.5-Math-1.5B: vocab 151,936, hidden 1,536, 28 layers, 12 heads / 2 KV heads,
/// intermediate 8,960, tied embeddings.
fn qwen25_1_5b() -> Qwen2Config {
    Qwen2Config::from_json(&serde_json::json!({
        "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
        "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": true,
    }))
    .unwrap()
}

/// The tiny shape: vocab 1,024, hidden 64, intermediate 176, 2 layers, 4 heads / 2 KV heads
/// (head dim 16, K = 32), tied.
///
/// Per layer: q 64·64 + 64 = 4,160; k and v 2 × (64·32 + 32) = 4,160; o 4,096; MLP 3·64·176 =
/// 33,792; norms 128: 46,336. Total 65,536 (embedding) + 2 × 46,336 + 64 (final norm) = 158,272.
const TINY_PARAMETERS: u64 = 158_272;

#[test]
fn parameter_counts_match_the_hand_count_and_the_model() {
    assert_eq!(causal_lm_parameters(&tiny()), TINY_PARAMETERS);
    let policy = Policy::random(&tiny(), 0, &Device::Cpu, DType::F32, Trainable::No).unwrap();
    assert_eq!(policy.num_parameters() as u64, TINY_PARAMETERS);

    // 1.5B: per layer q 2,360,832 + k,v 786,944 + o 2,359,296 + MLP 41,287,680 + norms 3,072 =
    // 46,797,824; × 28 = 1,310,339,072; + embedding 233,373,696 + final norm 1,536.
    assert_eq!(causal_lm_parameters(&qwen25_1_5b()), 1_543_714_304);
    let mut untied = qwen25_1_5b();
    untied.tie_word_embeddings = false;
    assert_eq!(causal_lm_parameters(&untied), 1_543_714_304 + 233_373_696);

    // Reward heads: sequence classification adds one row (64), Qwen2.5-Math-RM's MLP head
    // 64·64 + 64 + 64 + 1.
    let mut rm = tiny();
    assert_eq!(reward_model_parameters(&rm), TINY_PARAMETERS + 64);
    rm.architecture = Some("Qwen2ForRewardModel".into());
    assert_eq!(reward_model_parameters(&rm), TINY_PARAMETERS + 4_225);
}

/// The tiny shape in f32 with β > 0, 2 actors × group 3 × (16 + 8) tokens, micro-batches of 2
/// sequences (48 tokens).
fn tiny_input() -> PlanInput {
    let mut input = PlanInput::new(tiny());
    input.rollout = RolloutShape {
        actors: 2,
        group_size: 3,
        prompt_tokens: 16,
        max_new_tokens: 8,
        ..RolloutShape::default()
    };
    input.learner.micro_batch_sequences = 2;
    input
}

#[test]
fn the_tiny_plan_matches_the_hand_computed_bytes() {
    let plan = MemoryPlan::new(&tiny_input());
    let p = TINY_PARAMETERS;
    assert_eq!(plan.bytes_of(Component::PolicyWeights), p * 4); // 633,088
    assert_eq!(
        plan.bytes_of(Component::MasterWeights),
        0,
        "f32 keeps no master copy"
    );
    assert_eq!(plan.bytes_of(Component::Gradients), p * 4);
    assert_eq!(plan.bytes_of(Component::AdamMoments), 2 * p * 4); // 1,266,176
    assert_eq!(plan.bytes_of(Component::ReferenceModel), p * 4);
    assert_eq!(plan.bytes_of(Component::RolloutWeights), p * 4);
    assert_eq!(plan.bytes_of(Component::RewardModel), 0);
    // KV: 2 layers × 2 × 2 kv heads × 16 × 4 B = 512 B per token; 2 actors × 3 slots × 24 tokens.
    assert_eq!(plan.bytes_of(Component::RolloutKvCache), 2 * 3 * 24 * 512);
    // Activations per token and layer: 7·64 + 3·32 + 4·176 + 2·4·24 = 1,440 elements;
    // 2 layers × 48 tokens × 1,440 × 4 B.
    assert_eq!(layer_elements_per_token(&tiny(), 24), 1_440);
    assert_eq!(plan.bytes_of(Component::Activations), 2 * 48 * 1_440 * 4); // 552,960
                                                                           // LM head: 48 × (2 × 64 × 4 + 2 × 1,024 × 4).
    assert_eq!(plan.bytes_of(Component::LmHeadLogits), 48 * (512 + 8_192)); // 417,792
    assert_eq!(plan.devices(), vec!["cpu"]);
    // Policy, gradients, reference, rollout copy (4 B each) and two moments: 24 B per parameter.
    let total = 24 * p + 73_728 + 552_960 + 417_792;
    assert_eq!(plan.total_on("cpu"), total);
    let table = plan.to_string();
    assert!(
        table.contains("| policy weights | cpu | 633,088 |"),
        "{table}"
    );
    assert!(table.contains("| **total** | cpu |"), "{table}");
}

#[test]
fn packed_groups_widen_the_attention_span() {
    let mut input = tiny_input();
    input.learner.packed_groups = true;
    // 16 prompt tokens + 2 completions of a group (the micro-batch's 2) × 8 = 32 tokens spanned:
    // 7·64 + 3·32 + 4·176 + 2·4·32 = 1,504 elements a token, over the same 48 tokens.
    assert_eq!(input.attention_span(), 32);
    assert_eq!(
        MemoryPlan::new(&input).bytes_of(Component::Activations),
        2 * 48 * 1_504 * 4
    );
    // A whole group when the micro-batch holds more; the token budget caps the span, but never
    // below one padded sequence.
    input.learner.micro_batch_sequences = 8;
    assert_eq!(input.attention_span(), 16 + 3 * 8);
    input.learner.micro_batch_tokens = Some(30);
    assert_eq!(input.attention_span(), 30);
    input.learner.micro_batch_tokens = Some(10);
    assert_eq!(input.attention_span(), 24);
}

#[test]
fn checkpointing_keeps_layer_inputs_and_one_layer() {
    let mut input = tiny_input();
    input.learner.gradient_checkpointing = true;
    let plan = MemoryPlan::new(&input);
    // 2 layer inputs × 48 tokens × 64 × 4 B + one layer 48 × 1,440 × 4 B.
    assert_eq!(
        plan.bytes_of(Component::Activations),
        2 * 48 * 64 * 4 + 48 * 1_440 * 4
    );
    // A token budget below 2 sequences × 24 tokens bounds the micro-batch, but one sequence
    // (24 tokens) always goes alone.
    input.learner.micro_batch_tokens = Some(30);
    assert_eq!(
        MemoryPlan::new(&input).bytes_of(Component::LmHeadLogits),
        30 * (512 + 8_192)
    );
    input.learner.micro_batch_tokens = Some(10);
    assert_eq!(
        MemoryPlan::new(&input).bytes_of(Component::LmHeadLogits),
        24 * (512 + 8_192)
    );
}

#[test]
fn beta_zero_no_actors_and_placement_shape_the_plan() {
    let mut input = tiny_input();
    input.reference_model = false;
    input.rollout.actors = 0;
    input.reward_model = Some(tiny());
    input.placement = Placement {
        learner: "cuda:0".into(),
        rollout: "cuda:1".into(),
        reward_model: "cuda:1".into(),
    };
    let plan = MemoryPlan::new(&input);
    assert_eq!(plan.bytes_of(Component::ReferenceModel), 0);
    assert_eq!(plan.bytes_of(Component::RolloutWeights), 0);
    assert_eq!(plan.bytes_of(Component::RolloutKvCache), 0);
    assert_eq!(plan.devices(), vec!["cuda:0", "cuda:1"]);
    assert_eq!(plan.total_on("cuda:1"), (TINY_PARAMETERS + 64) * 4);
    // An RM in another dtype (bf16 on a GPU beside an f32 learner).
    input.reward_model_dtype = Some(DType::BF16);
    assert_eq!(
        MemoryPlan::new(&input).bytes_of(Component::RewardModel),
        (TINY_PARAMETERS + 64) * 2
    );
}

#[test]
fn the_kv_cache_is_bounded_like_the_engine_sizes_it() {
    let mut input = tiny_input();
    input.rollout.group_size = 100;
    input.rollout.max_live_sequences = 5;
    assert_eq!(
        MemoryPlan::new(&input).bytes_of(Component::RolloutKvCache),
        2 * 5 * 24 * 512
    );
    // A budget of 2.5 slots holds 2.
    input.rollout.kv_cache_bytes = 24 * 512 * 5 / 2;
    assert_eq!(
        MemoryPlan::new(&input).bytes_of(Component::RolloutKvCache),
        2 * 2 * 24 * 512
    );
}

/// Qwen2.5-Math-1.5B in bf16 with f32 masters, β > 0, an RM of the same shape (sequence
/// classification), 2 actors × group 32 × (512 + 2,048) tokens, micro-batches of 8 sequences.
#[test]
fn the_1_5b_plan_matches_the_hand_computed_bytes() {
    let mut input = PlanInput::new(qwen25_1_5b());
    input.dtype = DType::BF16;
    let mut rm = qwen25_1_5b();
    rm.architecture = Some("Qwen2ForSequenceClassification".into());
    input.reward_model = Some(rm);
    input.rollout = RolloutShape {
        actors: 2,
        group_size: 32,
        prompt_tokens: 512,
        max_new_tokens: 2048,
        ..RolloutShape::default()
    };
    input.placement = Placement::all_on("cuda:0");
    let plan = MemoryPlan::new(&input);
    let p = 1_543_714_304u64;
    assert!(
        input.keeps_master_weights(),
        "bf16 keeps f32 masters by default"
    );
    assert_eq!(plan.bytes_of(Component::PolicyWeights), 3_087_428_608);
    assert_eq!(plan.bytes_of(Component::MasterWeights), 6_174_857_216);
    assert_eq!(plan.bytes_of(Component::Gradients), 6_174_857_216);
    assert_eq!(plan.bytes_of(Component::AdamMoments), 12_349_714_432);
    assert_eq!(plan.bytes_of(Component::ReferenceModel), 3_087_428_608);
    assert_eq!(plan.bytes_of(Component::RolloutWeights), 3_087_428_608);
    assert_eq!(plan.bytes_of(Component::RewardModel), (p + 1_536) * 2);
    // KV: 28 × 2 × 2 × 128 × 2 B = 28,672 B per token; a slot of 2,560 tokens is 73,400,320 B,
    // and the 2 GiB budget holds 29 of them (fewer than the group's 32).
    assert_eq!(kv_bytes_per_position(&qwen25_1_5b(), 2), 28_672);
    assert_eq!(
        plan.bytes_of(Component::RolloutKvCache),
        2 * 29 * 73_400_320
    );
    // Activations: 8 × 2,560 = 20,480 tokens; per token and layer
    // 7·1,536 + 3·256 + 4·8,960 + 2·12·2,560 = 10,752 + 768 + 35,840 + 61,440 = 108,800.
    assert_eq!(layer_elements_per_token(&qwen25_1_5b(), 2560), 108_800);
    assert_eq!(
        plan.bytes_of(Component::Activations),
        28 * 20_480 * 108_800 * 2
    );
    assert_eq!(
        plan.bytes_of(Component::LmHeadLogits),
        20_480 * (2 * 1_536 * 2 + 2 * 151_936 * 4)
    );
    // It does not fit in 80 GiB: the biggest item is the activations (116.2 GiB).
    let err = plan
        .check(&Available::new().with("cuda:0", 80 << 30))
        .unwrap_err();
    let MemoryError::DoesNotFit {
        component,
        shortfall_bytes,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*component, Component::Activations);
    assert_eq!(*shortfall_bytes, plan.total_on("cuda:0") - (80 << 30));
}

#[test]
fn check_names_the_device_the_biggest_item_and_the_shortfall() {
    let plan = MemoryPlan::new(&tiny_input());
    let total = plan.total_on("cpu");
    plan.check(&Available::new().with("cpu", total)).unwrap();
    let err = plan
        .check(&Available::new().with("cpu", 1000))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not fit on cpu"), "{err}");
    assert!(err.contains("AdamW moments"), "{err}");
    // 4,843,008 needed, 1,000 free: 4,842,008 B = 4.6 MiB short.
    assert_eq!(total, 4_843_008);
    assert!(err.contains("4.6 MiB short"), "{err}");
    let err = plan.check(&Available::new()).unwrap_err().to_string();
    assert!(err.contains("cpu") && err.contains("not measured"), "{err}");
}

#[test]
fn sizes_read_well() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(1_543_714_304), "1,543,714,304");
    assert_eq!(thousands(999), "999");
    assert_eq!(gib(1000), "1000 B");
    assert_eq!(gib(3 << 29), "1.50 GiB");
}
