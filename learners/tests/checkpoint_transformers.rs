//! Checkpoints written by the learners load in Hugging Face transformers and compute what the
//! trained model computes: a GRPO checkpoint as `AutoModelForCausalLM`, an RM checkpoint (the
//! sequence-classification layout) as `AutoModelForSequenceClassification`.
//!
//! Skipped (with a note on stderr) when `python3 -c "import transformers"` fails.

mod common;

use std::process::Command;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use common::{sample_groups, score, tiny_policy};
use mathrl::model::Trainable;
use mathrl::Metrics;
use mathrl_learners::{
    CheckpointConfig, GrpoConfig, GrpoLearner, RmConfig, RmLearner, RmQuery, RunState, SeededRng,
};
use mathrl_rewards::RewardModel;
use serde_json::Value;

const SCRIPT: &str = r#"
import json, sys, torch, transformers
torch.set_num_threads(1)
policy_dir, rm_dir, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
x = torch.tensor([ids])
lm = transformers.AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
rm = transformers.AutoModelForSequenceClassification.from_pretrained(rm_dir, dtype=torch.float32)
with torch.no_grad():
    logits = lm(x).logits[0].tolist()
    reward = rm(x).logits[0, 0].item()
print(json.dumps({"logits": logits, "reward": reward}))
"#;

fn transformers_available() -> bool {
    Command::new("python3")
        .args(["-c", "import transformers"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn checkpoints_load_in_transformers() -> Result<()> {
    if !transformers_available() {
        eprintln!("skipped: python3 with transformers is not available");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;

    // A GRPO checkpoint after one update.
    let mut grpo = GrpoLearner::new(
        tiny_policy(Trainable::Yes)?,
        None,
        GrpoConfig::default(),
        Metrics::null(),
    )?;
    let mut rng = SeededRng::new(1);
    let groups = sample_groups(grpo.policy(), &[vec![5, 6, 7]], 4, 3, 1.0, &mut rng)?;
    grpo.step(score(groups, |ids| ids[0] as f32))?;
    let policy_dir = grpo.save_checkpoint(
        &CheckpointConfig::new(dir.path().join("grpo"), 1, 1),
        &RunState::default(),
    )?;

    // An RM checkpoint (sequence-classification head) after one update.
    let seqcls = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/tiny-rm-seqcls"
    );
    let model = RewardModel::load(seqcls, &Device::Cpu, Some(DType::F32), Trainable::Yes)?;
    let mut rm = RmLearner::new(model, RmConfig::default(), Metrics::null())?;
    rm.step(&[RmQuery {
        sequences: vec![vec![3, 4, 5], vec![3, 4, 9]],
        is_positive: vec![true, false],
    }])?;
    let rm_dir = rm.save_checkpoint(
        &CheckpointConfig::new(dir.path().join("rm"), 1, 1),
        &RunState::default(),
    )?;

    let ids: Vec<u32> = vec![5, 17, 42, 99, 7, 300];
    let output = Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            policy_dir.to_str().context("utf-8 path")?,
            rm_dir.to_str().context("utf-8 path")?,
            &serde_json::to_string(&ids)?,
        ])
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()?;
    ensure!(
        output.status.success(),
        "transformers failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Value = serde_json::from_slice(&output.stdout)?;

    let x = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let mask = Tensor::ones(x.dims(), DType::U32, &Device::Cpu)?;
    let ours = grpo
        .policy()
        .model()
        .forward(&x, &mask)?
        .logits
        .squeeze(0)?
        .to_vec2::<f32>()?;
    let their_logits: Vec<Vec<f32>> = serde_json::from_value(theirs["logits"].clone())?;
    let mut max_diff = 0.0f32;
    for (a, b) in ours.iter().zip(&their_logits) {
        for (x, y) in a.iter().zip(b) {
            max_diff = max_diff.max((x - y).abs());
        }
    }
    assert!(max_diff < 1e-4, "policy logits differ by {max_diff}");
    let our_reward = rm.model().score_ids(&[ids], 1)?[0] as f64;
    let their_reward = theirs["reward"].as_f64().context("reward")?;
    assert!(
        (our_reward - their_reward).abs() < 1e-4,
        "reward {our_reward} vs transformers {their_reward}"
    );
    Ok(())
}
