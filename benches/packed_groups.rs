//! Shared-prefix packing at the embedded default's shape: the shipped 1.7M-parameter policy and
//! RM (`recipes/assets/`), 32 groups of 8 completions of 8–40 tokens after a 61-token prompt.
//!
//! - GRPO learner step (the embedded default's settings): padded rows against packed groups
//!   (`grpo.pack_groups`) with micro-batches of 8, 16 and 32 completions (one, two, four groups);
//! - RM scoring of the same groups, a group per call: 8 right-padded rows against one packed row
//!   (`RewardModel::score_ids`);
//! - the packed rows' attention, dense over each packed row against sequence by sequence
//!   (`SharedPrefixBatch::with_attention`): the policy's training forward and backward over the
//!   learner's micro-batches (two groups), and its forward without gradients a group at a time
//!   (the RM's shape; the RM is the same Qwen2).
//!
//! `cargo bench --bench packed_groups` (results in BENCHMARKS.md). Rounds alternate the variants,
//! so that a change in the machine's load hits them alike; medians of the rounds.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mathrl::model::{SharedPrefixBatch, SharedPrefixRow, Trainable};
use mathrl::types::{Completion, FinishReason, Group};
use mathrl::{Metrics, Policy};
use mathrl_learners::{
    AdvantageEstimator, GrpoConfig, GrpoLearner, LossAggregation, LrSchedule, RolloutBatch,
    ScoredGroup,
};
use mathrl_rewards::RewardModel;
use rand::{Rng, SeedableRng};

const GROUPS: usize = 32;
const GROUP_SIZE: usize = 8;
const PROMPT: usize = 61;
const COMPLETION: std::ops::RangeInclusive<usize> = 8..=40;
const ROUNDS: usize = 5;

fn groups(vocab: usize, seed: u64) -> Vec<(Vec<u32>, Vec<Vec<u32>>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ids = |n: usize, rng: &mut rand::rngs::StdRng| {
        (0..n)
            .map(|_| rng.random_range(3..vocab as u32))
            .collect::<Vec<_>>()
    };
    (0..GROUPS)
        .map(|_| {
            let prompt = ids(PROMPT, &mut rng);
            let completions = (0..GROUP_SIZE)
                .map(|_| {
                    let len = rng.random_range(COMPLETION);
                    ids(len, &mut rng)
                })
                .collect();
            (prompt, completions)
        })
        .collect()
}

fn batch(groups: &[(Vec<u32>, Vec<Vec<u32>>)]) -> RolloutBatch {
    let groups = groups
        .iter()
        .enumerate()
        .map(|(g, (prompt, completions))| ScoredGroup {
            group: Group {
                prompt_index: g,
                prompt_ids: prompt.clone(),
                completions: completions
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Completion::sampled(i, c.clone(), -3.0, FinishReason::StopToken))
                    .collect(),
                policy_version: 0,
            },
            rewards: (0..GROUP_SIZE).map(|i| (i % 3) as f32).collect(),
            verdicts: None,
        })
        .collect();
    RolloutBatch { groups }
}

/// The embedded default's learner settings (`RlConfig::embedded_default`).
fn learner(dir: &Path, pack_groups: bool, micro_batch_size: usize) -> GrpoLearner {
    let policy = Policy::load(dir, &Device::Cpu, Some(DType::F32), Trainable::Yes).unwrap();
    let mut c = GrpoConfig::default();
    c.train_step.schedule = LrSchedule::constant(1e-4);
    c.advantage = AdvantageEstimator::DrGrpo;
    c.loss.beta = 0.0;
    c.loss.aggregation = LossAggregation::Dapo;
    c.log_entropy = false;
    c.rollout.max_new_tokens = 160;
    c.micro_batch_size = micro_batch_size;
    c.pack_groups = pack_groups;
    GrpoLearner::new(policy, None, c, Metrics::null()).unwrap()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn padded_scores(rm: &RewardModel, sequences: &[Vec<u32>]) -> Vec<f32> {
    let width = sequences.iter().map(Vec::len).max().unwrap();
    let ids: Vec<Vec<u32>> = sequences
        .iter()
        .map(|s| {
            let mut row = s.clone();
            row.resize(width, 0);
            row
        })
        .collect();
    let mask: Vec<Vec<u32>> = sequences
        .iter()
        .map(|s| (0..width).map(|i| u32::from(i < s.len())).collect())
        .collect();
    rm.forward(
        &Tensor::new(ids, &Device::Cpu).unwrap(),
        &Tensor::new(mask, &Device::Cpu).unwrap(),
    )
    .unwrap()
    .to_vec1()
    .unwrap()
}

fn main() {
    mathrl::device::pin_cpu_threads();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/assets");
    let policy_dir = assets.join("tiny-math-policy");
    let vocab = 640;

    // The learner: one step per variant per round, each on a fresh learner (same start).
    let variants = [
        ("padded, micro-batch 16", false, 16),
        ("packed, micro-batch 8", true, 8),
        ("packed, micro-batch 16", true, 16),
        ("packed, micro-batch 32", true, 32),
    ];
    let mut times = vec![Vec::new(); variants.len()];
    let mut tokens = vec![0usize; variants.len()];
    for round in 0..=ROUNDS {
        let b = batch(&groups(vocab, round as u64));
        for (v, &(_, pack, micro)) in variants.iter().enumerate() {
            let mut learner = learner(&policy_dir, pack, micro);
            let start = Instant::now();
            let report = learner.step(b.clone()).unwrap();
            // Round 0 warms the allocator and the thread pool.
            if round > 0 {
                times[v].push(start.elapsed().as_secs_f64());
            }
            tokens[v] = report.trained_tokens;
        }
    }
    let base = median(times[0].clone());
    println!("GRPO learner step, shipped policy, {GROUPS} groups x {GROUP_SIZE} x ({PROMPT} + {COMPLETION:?}), median of {ROUNDS}:");
    for (v, (name, _, _)) in variants.iter().enumerate() {
        let t = median(times[v].clone());
        println!(
            "  {name}: {t:.3} s ({:.2}x the padded step's time), {} trained tokens",
            t / base,
            tokens[v]
        );
    }

    // The RM: every group scored as one call, padded against packed.
    let rm = RewardModel::load(
        assets.join("tiny-math-rm"),
        &Device::Cpu,
        Some(DType::F32),
        Trainable::No,
    )
    .unwrap();
    let mut padded_t = Vec::new();
    let mut packed_t = Vec::new();
    let mut max_diff = 0f32;
    for round in 0..=ROUNDS {
        let sequences: Vec<Vec<Vec<u32>>> = groups(vocab, 100 + round as u64)
            .into_iter()
            .map(|(p, cs)| cs.into_iter().map(|c| [p.clone(), c].concat()).collect())
            .collect();
        let start = Instant::now();
        let padded: Vec<Vec<f32>> = sequences.iter().map(|g| padded_scores(&rm, g)).collect();
        let padded_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let packed: Vec<Vec<f32>> = sequences
            .iter()
            .map(|g| rm.score_ids(g, GROUP_SIZE).unwrap())
            .collect();
        let packed_s = start.elapsed().as_secs_f64();
        if round > 0 {
            padded_t.push(padded_s);
            packed_t.push(packed_s);
        }
        for (a, b) in padded.iter().flatten().zip(packed.iter().flatten()) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    let (padded_s, packed_s) = (median(padded_t), median(packed_t));
    println!("RM scoring, shipped RM, {GROUPS} groups of {GROUP_SIZE}, a group per call, median of {ROUNDS}:");
    println!("  padded: {padded_s:.3} s; packed: {packed_s:.3} s ({:.2}x the padded time); largest score difference {max_diff:.1e}", packed_s / padded_s);

    attention_modes(&policy_dir, vocab);
}

/// Seconds of `f` over each packed mode (dense, per sequence), alternating, medians of the rounds.
fn time_modes(mut f: impl FnMut(bool, u64)) -> [f64; 2] {
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..=ROUNDS {
        for (m, per_sequence) in [false, true].into_iter().enumerate() {
            let start = Instant::now();
            f(per_sequence, 200 + round as u64);
            if round > 0 {
                times[m].push(start.elapsed().as_secs_f64());
            }
        }
    }
    times.map(median)
}

/// The groups as the learner's packed micro-batches: two groups each.
fn rows_of(groups: &[(Vec<u32>, Vec<Vec<u32>>)]) -> Vec<Vec<SharedPrefixRow<'_>>> {
    groups
        .chunks(2)
        .map(|pair| {
            pair.iter()
                .map(|(p, cs)| SharedPrefixRow {
                    prefix: p,
                    suffixes: cs.iter().map(Vec::as_slice).collect(),
                })
                .collect()
        })
        .collect()
}

fn attention_modes(policy_dir: &Path, vocab: usize) {
    let trained = Policy::load(policy_dir, &Device::Cpu, Some(DType::F32), Trainable::Yes).unwrap();
    let train = time_modes(|per_sequence, seed| {
        let groups = groups(vocab, seed);
        for rows in rows_of(&groups) {
            let packed =
                SharedPrefixBatch::with_attention(&rows, per_sequence, &Device::Cpu).unwrap();
            let hidden = packed.forward(trained.model().backbone()).unwrap();
            hidden.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        }
    });
    let frozen = Policy::load(policy_dir, &Device::Cpu, Some(DType::F32), Trainable::No).unwrap();
    let infer = time_modes(|per_sequence, seed| {
        let groups = groups(vocab, seed);
        for rows in rows_of(&groups) {
            for row in rows.chunks(1) {
                let packed =
                    SharedPrefixBatch::with_attention(row, per_sequence, &Device::Cpu).unwrap();
                packed.forward(frozen.model().backbone()).unwrap();
            }
        }
    });
    println!("Packed rows' attention, shipped policy, {GROUPS} groups, median of {ROUNDS}: dense over the packed row / sequence by sequence");
    for (what, [dense, per_sequence]) in [
        (
            "training forward + backward, two groups per row batch",
            train,
        ),
        ("forward without gradients, a group per call", infer),
    ] {
        println!(
            "  {what}: {dense:.3} s / {per_sequence:.3} s ({:.2}x the dense time)",
            per_sequence / dense
        );
    }
}
