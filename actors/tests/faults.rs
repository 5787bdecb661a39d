//! Faults: panicking and hanging reward functions, asynchronous sampling with a bounded lag,
//! and a stop request that finishes the step, checkpoints, and resumes.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use common::{config, digit_share, prompts, trainer, DigitShare};
use mathrl_actors::{StopHandle, SyncMode, TrainReport, Trainer};
use mathrl_rewards::{RewardFunction, RewardInput, RewardOutput};

/// How a marked question misbehaves.
#[derive(Clone, Copy)]
enum Misbehave {
    /// Panics on every call that contains it.
    PanicAlways,
    /// Panics on the first call that contains it only.
    PanicOnce,
    /// Sleeps this long on the first call that contains it.
    SleepOnce(Duration),
}

/// Digit-share reward that misbehaves on batches containing the question `marked`.
struct Faulty {
    marked: String,
    how: Misbehave,
    hits: AtomicUsize,
    /// Successful scorings per (question, response): nothing may be scored twice by success.
    scored: std::sync::Mutex<Vec<(String, String)>>,
}

impl Faulty {
    fn new(marked: &str, how: Misbehave) -> Arc<Self> {
        Arc::new(Self {
            marked: marked.into(),
            how,
            hits: AtomicUsize::new(0),
            scored: Default::default(),
        })
    }
}

impl RewardFunction for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        if inputs.iter().any(|i| i.question == self.marked) {
            let hit = self.hits.fetch_add(1, Ordering::SeqCst);
            match self.how {
                Misbehave::PanicAlways => panic!("marked input {}", self.marked),
                Misbehave::PanicOnce if hit == 0 => panic!("marked input {} (once)", self.marked),
                Misbehave::SleepOnce(d) if hit == 0 => std::thread::sleep(d),
                _ => {}
            }
        }
        let mut scored = self.scored.lock().unwrap();
        Ok(inputs
            .iter()
            .map(|i| {
                scored.push((i.question.to_string(), i.response.to_string()));
                RewardOutput {
                    reward: digit_share(i.response),
                    verdict: None,
                    rm_score: None,
                }
            })
            .collect())
    }
}

/// Every step trained exactly `per_step` distinct prompts with full groups.
fn assert_nothing_lost_or_duplicated(report: &TrainReport, per_step: usize, group: usize) {
    for record in &report.step_records {
        let ids: BTreeSet<&str> = record.groups.iter().map(|g| g.prompt_id.as_str()).collect();
        assert_eq!(record.groups.len(), per_step, "step {}", record.step);
        assert_eq!(ids.len(), per_step, "step {}: a prompt twice", record.step);
        assert!(record.groups.iter().all(|g| g.rewards.len() == group));
    }
    // Reward faults never cost a generation: one group per prompt drawn.
    assert_eq!(
        report.groups_by_worker.values().sum::<u64>(),
        report.step_records.len() as u64 * per_step as u64
    );
}

#[test]
fn a_reward_that_panics_once_is_restarted_and_its_batch_rescored() -> Result<()> {
    // 4 prompts per step over 4 prompts: every step contains the marked one.
    let reward = Faulty::new("What is 1 + 2?", Misbehave::PanicOnce);
    let (trainer, sink) = trainer(config(2), reward.clone())?;
    let report = trainer.run(prompts(4))?;
    assert_eq!(report.steps, 2);
    assert_nothing_lost_or_duplicated(&report, 4, 3);
    assert_eq!(report.failures, 1);
    assert_eq!(report.restarts, 1);
    assert_eq!(report.unscored, 0);
    // Each completion was scored successfully exactly once: 2 steps × 4 prompts × 3.
    assert_eq!(reward.scored.lock().unwrap().len(), 24);
    assert_eq!(
        sink.scalars("faults/failures").last().map(|s| s.1),
        Some(1.0)
    );
    assert_eq!(
        sink.scalars("faults/restarts").last().map(|s| s.1),
        Some(1.0)
    );
    Ok(())
}

#[test]
fn a_reward_that_always_panics_scores_zero_after_max_attempts_with_the_reason() -> Result<()> {
    let reward = Faulty::new("What is 1 + 2?", Misbehave::PanicAlways);
    let mut cfg = config(1);
    cfg.max_attempts = 2;
    let (trainer, sink) = trainer(cfg, reward.clone())?;
    let report = trainer.run(prompts(4))?;
    assert_eq!(report.steps, 1);
    assert_nothing_lost_or_duplicated(&report, 4, 3);
    // The batch of 3 failed once, then each completion failed twice alone.
    assert_eq!(report.failures, 1 + 3 * 2);
    assert_eq!(report.restarts, 7);
    assert_eq!(report.unscored, 3);
    let record = &report.step_records[0];
    let marked = record.groups.iter().find(|g| g.prompt_id == "q1").unwrap();
    assert_eq!(marked.rewards, vec![0.0; 3]);
    let mut completions: Vec<usize> = record.unscored.iter().map(|u| u.completion).collect();
    completions.sort_unstable();
    assert_eq!(completions, vec![0, 1, 2]);
    for u in &record.unscored {
        assert_eq!((u.prompt_id.as_str(), u.attempts), ("q1", 2));
        assert!(u.reason.contains("marked input"), "{}", u.reason);
    }
    // The other prompts were scored normally; nothing of the marked one was.
    let scored = reward.scored.lock().unwrap();
    assert_eq!(scored.len(), 9);
    assert!(scored.iter().all(|(q, _)| q != "What is 1 + 2?"));
    assert_eq!(sink.scalars("faults/unscored"), vec![(1, 3.0)]);
    assert_eq!(sink.texts("faults/unscored").len(), 3);
    Ok(())
}

#[test]
fn a_reward_past_its_deadline_is_killed_restarted_and_its_batch_reissued() -> Result<()> {
    let reward = Faulty::new(
        "What is 2 + 2?",
        Misbehave::SleepOnce(Duration::from_secs(3)),
    );
    let mut cfg = config(1);
    cfg.message_deadline = Duration::from_millis(500);
    let (trainer, sink) = trainer(cfg, reward.clone())?;
    let report = trainer.run(prompts(4))?;
    assert_eq!(report.steps, 1);
    assert_nothing_lost_or_duplicated(&report, 4, 3);
    assert_eq!(report.failures, 1);
    assert_eq!(report.restarts, 1);
    assert_eq!(report.unscored, 0);
    // The sleeper's late result (if it ever came) was ignored: 4 prompts × 3 scored once each.
    assert_eq!(reward.scored.lock().unwrap().len(), 12);
    assert_eq!(sink.scalars("faults/failures"), vec![(1, 1.0)]);
    Ok(())
}

#[test]
fn async_mode_keeps_every_group_within_the_policy_lag() -> Result<()> {
    let mut cfg = config(4);
    cfg.sync = SyncMode::Async { max_policy_lag: 1 };
    let (trainer, sink) = trainer(cfg, Arc::new(DigitShare))?;
    let report = trainer.run(prompts(6))?;
    assert_eq!(report.steps, 4);
    assert_nothing_lost_or_duplicated(&report, 4, 3);
    for record in &report.step_records {
        for g in &record.groups {
            // Step s trains on versions s − 2 ..= s − 1.
            assert!(
                g.policy_version + 2 >= record.step && g.policy_version < record.step,
                "step {}: version {}",
                record.step,
                g.policy_version
            );
        }
        assert!(record.learner.policy_lag_max <= 1);
    }
    assert_eq!(report.dropped_stale_groups, 0);
    for (_, v) in sink.scalars("weights/checksum_match") {
        assert_eq!(v, 1.0);
    }
    Ok(())
}

#[test]
fn a_stop_request_finishes_the_step_checkpoints_and_the_run_resumes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (trainer, _) = trainer(config(3), Arc::new(DigitShare))?;
    let trainer = trainer.with_checkpoint_dir(dir.path().to_path_buf());
    trainer.stop_handle().request();
    let first = trainer.run(prompts(6))?;
    assert!(first.stopped_early);
    assert_eq!(first.steps, 1);
    assert_eq!(first.checkpoints.len(), 1);
    assert!(first.checkpoints[0].ends_with("step-000001"));

    let (trainer, _) = trainer_fresh()?;
    let second = trainer
        .with_checkpoint_dir(dir.path().to_path_buf())
        .run(prompts(6))?;
    assert!(!second.stopped_early);
    assert_eq!((second.resumed_from_step, second.steps), (1, 3));
    let steps: Vec<u64> = second.step_records.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![2, 3]);
    for r in &second.step_records {
        assert!(r.groups.iter().all(|g| g.policy_version == r.step - 1));
    }
    // The prompts continue the seeded order: step 1 and the resumed step 2 draw 8 prompts, the
    // first 6 of which are one permutation of the data set.
    let drawn: Vec<&str> = first.step_records[0]
        .groups
        .iter()
        .chain(&second.step_records[0].groups)
        .map(|g| g.prompt_id.as_str())
        .collect();
    let epoch: BTreeSet<&str> = drawn[..6].iter().copied().collect();
    assert_eq!(epoch.len(), 6, "{drawn:?}");
    assert!(second.checkpoints.last().unwrap().ends_with("step-000003"));
    Ok(())
}

fn trainer_fresh() -> Result<(mathrl_actors::Trainer, mathrl::metrics::MemorySink)> {
    trainer(config(3), Arc::new(DigitShare))
}

/// Digit-share reward that requests `stops` stops during its `on_call`-th call (1-based).
struct StopsDuring {
    stop: StopHandle,
    on_call: usize,
    stops: usize,
    calls: AtomicUsize,
}

impl RewardFunction for StopsDuring {
    fn name(&self) -> &str {
        "stops-during"
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.on_call {
            for _ in 0..self.stops {
                self.stop.request();
            }
        }
        DigitShare.score_batch(inputs)
    }
}

/// A trainer whose reward requests `stops` stops while scoring step 2: on-policy, step 1's 4
/// groups are the first 4 reward calls, so call 5 belongs to step 2.
fn stopping_trainer(stops: usize, dir: &std::path::Path) -> Result<Trainer> {
    let stop = StopHandle::new();
    let reward = Arc::new(StopsDuring {
        stop: stop.clone(),
        on_call: 5,
        stops,
        calls: AtomicUsize::new(0),
    });
    let mut cfg = config(5);
    cfg.reward_actors = 1; // one batch per call, in order
    let (trainer, _) = trainer(cfg, reward)?;
    Ok(trainer
        .with_stop_handle(stop)
        .with_checkpoint_dir(dir.to_path_buf()))
}

#[test]
fn a_stop_request_mid_step_finishes_that_step_and_checkpoints_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let report = stopping_trainer(1, dir.path())?.run(prompts(6))?;
    assert!(report.stopped_early);
    assert_eq!(report.steps, 2);
    assert_eq!(report.step_records.len(), 2);
    assert_nothing_lost_or_duplicated(&report, 4, 3);
    assert_eq!(report.checkpoints.len(), 1);
    assert!(report.checkpoints[0].ends_with("step-000002"));
    assert!(dir.path().join("step-000002/model.safetensors").is_file());
    Ok(())
}

#[test]
fn a_second_stop_request_abandons_the_step_without_training_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let err = stopping_trainer(2, dir.path())?
        .run(prompts(6))
        .expect_err("a second stop request abandons the run");
    assert!(matches!(err, mathrl_actors::Error::Stopped), "{err}");
    // Step 2 was being scored: it was never trained, so it was never checkpointed.
    assert!(!dir.path().join("step-000002").exists());
    Ok(())
}

#[test]
fn max_train_seconds_stops_starting_steps() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(3);
    // Passed before the loop first looks at the clock: no step is ever started.
    cfg.max_train_seconds = 1e-9;
    let (trainer, _) = trainer(cfg, Arc::new(DigitShare))?;
    let report = trainer
        .with_checkpoint_dir(dir.path().to_path_buf())
        .run(prompts(6))?;
    assert!(report.time_limit_reached && !report.stopped_early);
    assert_eq!(report.steps, 0);
    assert!(report.step_records.is_empty() && report.checkpoints.is_empty());
    // Without a limit the same run trains its 3 steps.
    let (trainer, _) = trainer_fresh()?;
    let report = trainer.run(prompts(6))?;
    assert!(!report.time_limit_reached);
    assert_eq!(report.steps, 3);
    Ok(())
}
