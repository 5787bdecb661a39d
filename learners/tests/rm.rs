//! The RM learner on the tiny reward-model fixture: ranking-loss parity with the reference on the
//! model's own rewards, learning to rank a synthetic notion of correctness on held-out queries,
//! skipped queries, and a checkpoint that loads back as a reward model.

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use mathrl::metrics::MemorySink;
use mathrl::model::Trainable;
use mathrl::Metrics;
use mathrl_learners::{
    CheckpointConfig, LrSchedule, RmConfig, RmLearner, RmQuery, RunState, SeededRng,
    TrainStepConfig,
};
use mathrl_rewards::RewardModel;
use serde_json::Value;

const TINY_RM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-rm");

fn load(trainable: Trainable) -> Result<RewardModel> {
    Ok(RewardModel::load(
        TINY_RM,
        &Device::Cpu,
        Some(DType::F32),
        trainable,
    )?)
}

fn config(lr: f64) -> RmConfig {
    RmConfig {
        train_step: TrainStepConfig {
            schedule: LrSchedule::constant(lr),
            max_grad_norm: Some(1.0),
            ..Default::default()
        },
        micro_batch_queries: 3,
        ..RmConfig::default()
    }
}

#[test]
fn evaluation_matches_the_reference_ranking_loss() -> Result<()> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(format!(
        "{TINY_RM}/expected.json"
    ))?)?;
    let pairs = &json["pairs"];
    let sequences: Vec<Vec<u32>> = serde_json::from_value(pairs["input_ids"].clone())?;
    let labels: Vec<u32> = serde_json::from_value(pairs["labels"].clone())?;
    let query = RmQuery {
        sequences,
        is_positive: labels.iter().map(|&l| l == 1).collect(),
    };
    let learner = RmLearner::new(load(Trainable::Yes)?, config(1e-3), Metrics::null())?;
    let eval = learner.evaluate(&[query])?;
    let expected = pairs["loss"].as_f64().context("loss")?;
    let loss = eval.loss.context("a loss")?;
    assert!((loss - expected).abs() < 1e-4, "{loss} vs {expected}");
    // From the reference rewards: r = [-0.067, -0.046, -0.312, 0.389, 0.889, -0.162] with
    // positives 0, 1, 3 → 6 of the 9 (pos, neg) pairs are ranked right.
    assert_eq!(eval.pairs, 9);
    assert!((eval.pairwise_accuracy.context("accuracy")? - 6.0 / 9.0).abs() < 1e-12);
    Ok(())
}

/// A query of 4 responses to a random 5-token question; a response is "correct" when it ends
/// with token 77 (its answer) and wrong otherwise (with `positives` correct ones).
fn query(rng: &mut SeededRng, positives: usize) -> RmQuery {
    let question: Vec<u32> = (0..5).map(|_| 100 + rng.below(800) as u32).collect();
    let mut sequences = Vec::new();
    let mut is_positive = Vec::new();
    for r in 0..4 {
        let mut s = question.clone();
        let mut response: Vec<u32> = (0..4).map(|_| 100 + rng.below(800) as u32).collect();
        let positive = r < positives;
        if positive {
            response[3] = 77;
        }
        s.extend(response);
        sequences.push(s);
        is_positive.push(positive);
    }
    RmQuery {
        sequences,
        is_positive,
    }
}

const EPOCHS: usize = 4;

#[test]
fn learns_to_rank_held_out_queries_and_checkpoints_in_hf_layout() -> Result<()> {
    let mut rng = SeededRng::new(4);
    let train: Vec<RmQuery> = (0..96).map(|i| query(&mut rng, 1 + i % 3)).collect();
    let held_out: Vec<RmQuery> = (0..24).map(|i| query(&mut rng, 1 + i % 3)).collect();
    let sink = MemorySink::new();
    let mut learner = RmLearner::new(
        load(Trainable::Yes)?,
        config(1e-2),
        Metrics::new(sink.clone()),
    )?;
    let before = learner.evaluate(&held_out)?;
    for epoch in 0..EPOCHS {
        for (k, batch) in train.chunks(8).enumerate() {
            let mut batch = batch.to_vec();
            if epoch == 0 && k == 0 {
                batch.push(query(&mut rng, 4)); // all correct: no pair, skipped
            }
            learner.step(&batch)?;
        }
    }
    let after = learner.evaluate(&held_out)?;
    let (acc_before, acc_after) = (
        before.pairwise_accuracy.context("pairs")?,
        after.pairwise_accuracy.context("pairs")?,
    );
    assert!(
        acc_after > 0.9 && acc_after > acc_before + 0.2,
        "held-out pairwise accuracy {acc_before} -> {acc_after}"
    );
    assert!(after.loss < before.loss);
    assert_eq!(learner.skipped_queries(), 1);
    assert_eq!(sink.scalars("train/skipped_queries")[0], (1, 1.0));
    assert_eq!(sink.scalars("train/pairwise_accuracy").len(), 12 * EPOCHS);
    assert_eq!(sink.scalars("eval/pairwise_accuracy").len(), 2);

    // A step with nothing to learn from updates nothing.
    let report = learner.step(&[query(&mut rng, 0)])?;
    assert!(report.update.is_none() && report.eval.loss.is_none());

    // The checkpoint is a reward-model directory that scores like the trained model.
    let dir = tempfile::tempdir()?;
    let saved = learner.save_checkpoint(
        &CheckpointConfig::new(dir.path(), 1, 1),
        &RunState::default(),
    )?;
    let reloaded = RewardModel::load(&saved, &Device::Cpu, Some(DType::F32), Trainable::Yes)?;
    let seqs = held_out[0].sequences.clone();
    let a = learner.model().score_ids(&seqs, 4)?;
    let b = reloaded.score_ids(&seqs, 4)?;
    assert_eq!(a, b);
    let mut resumed = RmLearner::new(reloaded, config(1e-2), Metrics::null())?;
    resumed.restore(&saved)?;
    assert_eq!(resumed.step_count(), learner.step_count());
    assert_eq!(resumed.skipped_queries(), 2);
    let (ra, rb) = (learner.step(&train[..6])?, resumed.step(&train[..6])?);
    assert_eq!(ra.eval.loss, rb.eval.loss);
    assert_eq!(
        ra.update.and_then(|u| u.grad_norm),
        rb.update.and_then(|u| u.grad_norm)
    );
    Ok(())
}
