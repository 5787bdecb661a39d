//! The guards of a long run: training that diverges ends with a checkpoint and an error instead
//! of skipping updates forever, and a resume with another seed, other prompts or changed
//! settings is refused unless the run says it may change.

mod common;

use std::sync::Arc;

use anyhow::Result;
use candle_core::Tensor;
use common::{config, learner, prompts, tiny_policy, tokenizer, DigitShare};
use mathrl::model::Trainable;
use mathrl::Metrics;
use mathrl_actors::Trainer;
use mathrl_learners::{
    latest_checkpoint, read_trainer_state, GrpoConfig, GrpoLearner, LrSchedule, ResumeConfig,
};
use serde_json::json;

/// A learner whose reference model has a NaN weight: every KL term, so every loss, is NaN and
/// every update is skipped (the sampled policy itself stays finite).
fn diverging_learner(max_consecutive_skips: u64) -> Result<GrpoLearner> {
    let mut config = GrpoConfig::default();
    config.train_step.schedule = LrSchedule::constant(1e-3);
    config.train_step.max_consecutive_skips = max_consecutive_skips;
    config.loss.beta = 0.04;
    config.rollout.group_size = 3;
    config.rollout.max_new_tokens = 6;
    let reference = tiny_policy(Trainable::Yes)?;
    let (_, var) = reference
        .vars()
        .into_iter()
        .find(|(name, _)| name.ends_with("norm.weight"))
        .expect("the fixture has norm weights");
    var.set(&Tensor::full(f32::NAN, var.shape(), var.device())?)?;
    Ok(GrpoLearner::new(
        tiny_policy(Trainable::Yes)?,
        Some(reference.frozen_copy()?),
        config,
        Metrics::null(),
    )?)
}

#[test]
fn a_diverged_run_ends_with_a_checkpoint_and_an_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let trainer = Trainer::new(
        config(6),
        diverging_learner(2)?,
        tokenizer()?,
        Arc::new(DigitShare),
        Metrics::null(),
    )?
    .with_checkpoint_dir(dir.path().to_path_buf());
    let err = trainer.run(prompts(8)).unwrap_err().to_string();
    assert!(
        err.contains("diverged") && err.contains("2 updates in a row"),
        "{err}"
    );
    assert!(err.contains("step-000002"), "{err}");
    // The checkpoint of the last step is there and resumable.
    let latest = latest_checkpoint(dir.path())?.expect("a checkpoint");
    assert!(latest.ends_with("step-000002"), "{}", latest.display());
    let state = read_trainer_state(&latest)?;
    assert_eq!(
        (state.step, state.skipped_steps, state.optimizer_step),
        (2, 2, 0)
    );

    // Without the bound the same run goes on to its last step, skipping every update.
    let report = Trainer::new(
        config(3),
        diverging_learner(0)?,
        tokenizer()?,
        Arc::new(DigitShare),
        Metrics::null(),
    )?
    .run(prompts(8))?;
    assert_eq!(report.steps, 3);
    Ok(())
}

/// A trainer of `max_steps` with `seed`, the recipe settings `settings` and `resume`.
fn trainer(
    max_steps: u64,
    seed: u64,
    settings: serde_json::Value,
    resume: ResumeConfig,
    dir: &std::path::Path,
) -> Result<Trainer> {
    let mut config = config(max_steps);
    config.seed = seed;
    Ok(Trainer::new(
        config,
        learner(&Metrics::null())?,
        tokenizer()?,
        Arc::new(DigitShare),
        Metrics::null(),
    )?
    .with_checkpoint_dir(dir.to_path_buf())
    .with_identity(settings, Some("train.jsonl".into()), resume))
}

#[test]
fn a_resume_with_another_seed_data_or_settings_is_refused_unless_allowed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = json!({ "grpo": { "lr": 1e-3 } });
    let strict = ResumeConfig::default();
    let first = trainer(1, 5, settings.clone(), strict, dir.path())?.run(prompts(6))?;
    assert_eq!(first.steps, 1);
    let recorded = read_trainer_state(latest_checkpoint(dir.path())?.unwrap())?;
    let identity = recorded.run.identity.expect("the identity is recorded");
    assert_eq!((identity.seed, identity.data_items), (5, 6));
    assert_eq!(identity.data_file.as_deref(), Some("train.jsonl".as_ref()));

    let refused = |seed: u64, settings: serde_json::Value, n: usize| -> Result<String> {
        let err = trainer(2, seed, settings, strict, dir.path())?
            .run(prompts(n))
            .unwrap_err();
        Ok(err.to_string())
    };
    let err = refused(6, settings.clone(), 6)?;
    assert!(
        err.contains("seed: 5 → 6") && err.contains("resume.allow_changed"),
        "{err}"
    );
    let err = refused(5, settings.clone(), 7)?;
    assert!(
        err.contains("data: train.jsonl (6 items") && err.contains("(7 items"),
        "{err}"
    );
    let err = refused(5, json!({ "grpo": { "lr": 2e-3 } }), 6)?;
    assert!(err.contains("grpo.lr: 0.001 → 0.002"), "{err}");
    // Nothing was trained by the refused runs.
    assert_eq!(
        read_trainer_state(latest_checkpoint(dir.path())?.unwrap())?.step,
        1
    );

    // The same run resumes; a changed one does when allowed.
    let same = trainer(2, 5, settings.clone(), strict, dir.path())?.run(prompts(6))?;
    assert_eq!((same.resumed_from_step, same.steps), (1, 2));
    let allowed = ResumeConfig {
        allow_changed: true,
    };
    let changed = trainer(3, 6, settings, allowed, dir.path())?.run(prompts(6))?;
    assert_eq!((changed.resumed_from_step, changed.steps), (2, 3));
    // From then on the checkpoints carry the changed run's identity.
    let recorded = read_trainer_state(latest_checkpoint(dir.path())?.unwrap())?;
    assert_eq!(recorded.run.identity.unwrap().seed, 6);
    Ok(())
}
