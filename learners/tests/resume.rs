//! Exact resume: a seeded 20-step GRPO run on the tiny policy, killed with SIGKILL right after its
//! step-10 checkpoint and resumed from it, gives bit-identical per-step losses, gradient norms and
//! final weights (and f32 master weights) to the same run uninterrupted, in f32 and in bf16.
//!
//! The interrupted run is this test binary re-executed as a child process (selected by the
//! `MATHRL_RESUME_CHILD_DIR` environment variable), so the kill is a real one: no destructor,
//! no flush, no polite stop.
#![cfg(unix)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use common::{sample_groups, score, TINY};
use mathrl::model::Trainable;
use mathrl::{Metrics, Policy};
use mathrl_learners::{
    latest_checkpoint, CheckpointConfig, DataCursor, Decay, GrpoConfig, GrpoLearner, LrSchedule,
    RunState, SeededRng,
};

const STEPS: u64 = 20;
const KILL_AFTER: u64 = 10;
const CHILD_ENV: &str = "MATHRL_RESUME_CHILD_DIR";
const F32_TEST: &str = "resume_after_sigkill_is_bit_identical";
const BF16_TEST: &str = "bf16_resume_after_sigkill_is_bit_identical";
const PROMPTS_PER_STEP: usize = 3;
const SEED: u64 = 2024;

/// The prompt stream: prompt `i` of the run, a pure function of `i`.
fn prompt(i: u64) -> Vec<u32> {
    let len = 2 + (i % 3) as usize;
    (0..len as u64)
        .map(|k| ((i * 37 + k * 101) % 1000 + 1) as u32)
        .collect()
}

fn config() -> GrpoConfig {
    let mut c = GrpoConfig::default();
    c.loss.beta = 0.05;
    c.optimizer.weight_decay = 0.01;
    c.train_step.schedule = LrSchedule {
        peak_lr: 5e-3,
        warmup_steps: 3,
        decay: Decay::Cosine {
            total_steps: STEPS,
            min_lr_ratio: 0.1,
        },
    };
    c.micro_batch_size = 5;
    c.rollout.temperature = 0.9;
    c
}

/// One step's record: loss and gradient norm as raw bits.
type StepBits = (u64, u64, u64);

/// Runs (or continues, from the latest checkpoint under `dir`) the seeded run to `STEPS`,
/// appending each step's record to `dir/steps.txt`. With `kill_after`, the process SIGKILLs
/// itself right after that step's checkpoint is on disk.
fn train(dir: &Path, kill_after: Option<u64>, dtype: DType) -> Result<GrpoLearner> {
    let checkpoints = CheckpointConfig::new(dir.join("checkpoints"), 5, 2);
    let resume_from = latest_checkpoint(&checkpoints.dir)?;
    let load = |dir: &Path, trainable| Policy::load(dir, &Device::Cpu, Some(dtype), trainable);
    let policy = match &resume_from {
        Some(checkpoint) => load(checkpoint, Trainable::Yes)?,
        None => load(Path::new(TINY), Trainable::Yes)?,
    };
    // The reference is the initial policy, always read from the original files.
    let reference = load(Path::new(TINY), Trainable::No)?;
    let mut learner = GrpoLearner::new(policy, Some(reference), config(), Metrics::null())?;
    let mut rng = SeededRng::new(SEED);
    let mut cursor = 0u64;
    if let Some(checkpoint) = &resume_from {
        let run = learner.restore(checkpoint)?;
        rng = SeededRng::from_state(*run.rngs.get("sampler").context("sampler state")?);
        cursor = run.data_cursor.context("data cursor")?.position;
    }
    let log = dir.join("steps.txt");
    while learner.step_count() < STEPS {
        let prompts: Vec<Vec<u32>> = (cursor..cursor + PROMPTS_PER_STEP as u64)
            .map(prompt)
            .collect();
        let mut groups = sample_groups(learner.policy(), &prompts, 4, 4, 0.9, &mut rng)?;
        for g in &mut groups {
            g.policy_version = learner.policy_version();
        }
        let batch = score(groups, |ids| {
            ids.iter().filter(|&&t| t % 2 == 0).count() as f32
        });
        let report = learner.step(batch)?;
        cursor += PROMPTS_PER_STEP as u64;
        let line = format!(
            "{} {} {}\n",
            report.step,
            report.loss.to_bits(),
            report.grad_norm.context("a gradient norm")?.to_bits()
        );
        append(&log, &line)?;
        if checkpoints.due(report.step) || report.step == STEPS {
            let run = RunState {
                rngs: [("sampler".to_string(), rng.state())].into_iter().collect(),
                data_cursor: Some(DataCursor {
                    epoch: 0,
                    position: cursor,
                }),
                extra: serde_json::Value::Null,
                identity: None,
            };
            learner.save_checkpoint(&checkpoints, &run)?;
        }
        if kill_after == Some(report.step) {
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
    Ok(learner)
}

fn append(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(line.as_bytes())?;
    Ok(())
}

fn read_steps(dir: &Path) -> Result<Vec<StepBits>> {
    let text = std::fs::read_to_string(dir.join("steps.txt"))?;
    text.lines()
        .map(|l| {
            let v: Vec<u64> = l.split(' ').map(str::parse).collect::<Result<_, _>>()?;
            Ok((v[0], v[1], v[2]))
        })
        .collect()
}

/// The policy's weights and the optimiser's f32 masters, as raw f32 bits by name.
fn weights(learner: &GrpoLearner) -> Result<Vec<(String, Vec<u32>)>> {
    learner
        .policy()
        .named_tensors()
        .into_iter()
        .chain(learner.master_weights()?)
        .map(|(n, t)| {
            let bits = t
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .map(|x| x.to_bits())
                .collect();
            Ok((n, bits))
        })
        .collect()
}

#[test]
fn resume_after_sigkill_is_bit_identical() -> Result<()> {
    kill_resume_and_compare(DType::F32, F32_TEST)
}

/// In bf16 the checkpoint's f32 master weights carry the run: the bf16 model files alone would
/// round them.
#[test]
fn bf16_resume_after_sigkill_is_bit_identical() -> Result<()> {
    kill_resume_and_compare(DType::BF16, BF16_TEST)
}

/// The run of `dtype`, killed after step 10 by re-executing test `test` as a child, then resumed
/// and compared with the run uninterrupted.
fn kill_resume_and_compare(dtype: DType, test: &str) -> Result<()> {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // The child: train until killed after checkpoint 10.
        train(Path::new(&dir), Some(KILL_AFTER), dtype)?;
        unreachable!("the child kills itself after step {KILL_AFTER}");
    }
    assert!(Path::new(TINY).is_dir());

    let interrupted = tempfile::tempdir()?;
    let status = Command::new(std::env::current_exe()?)
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, interrupted.path())
        .status()?;
    ensure!(
        status.signal() == Some(libc::SIGKILL),
        "the child should have died of SIGKILL, got {status:?}"
    );
    let before_resume = read_steps(interrupted.path())?;
    ensure!(
        before_resume.len() == KILL_AFTER as usize,
        "{before_resume:?}"
    );
    let latest = latest_checkpoint(interrupted.path().join("checkpoints"))?;
    ensure!(latest.as_deref().and_then(Path::file_name) == Some("step-000010".as_ref()));
    // A write that crashed half-way must not be picked up.
    std::fs::create_dir(interrupted.path().join("checkpoints/step-000011.tmp"))?;
    let resumed = train(interrupted.path(), None, dtype)?;
    assert_eq!(resumed.policy().dtype(), dtype);

    let straight = tempfile::tempdir()?;
    let uninterrupted = train(straight.path(), None, dtype)?;

    let (a, b) = (
        read_steps(interrupted.path())?,
        read_steps(straight.path())?,
    );
    assert_eq!(a.len(), STEPS as usize);
    assert_eq!(a, b, "per-step loss and grad-norm bits");
    assert!(
        weights(&resumed)? == weights(&uninterrupted)?,
        "final weights differ"
    );
    // Keep-last-2 left the last two checkpoints of the resumed run.
    let kept: Vec<String> = std::fs::read_dir(interrupted.path().join("checkpoints"))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    let mut kept = kept;
    kept.sort();
    assert_eq!(kept, ["step-000015", "step-000020"]);
    Ok(())
}
