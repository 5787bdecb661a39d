//! SIGTERM, sent for real: the first finishes the current step and checkpoints it, the second
//! exits the process at once (checked on a child process, since it ends the process).
//!
//! Signal handlers are process-wide, so these tests live in their own test binary.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use common::{config, prompts, trainer, DigitShare};
use mathrl_actors::{StopHandle, Trainer};
use mathrl_rewards::{RewardFunction, RewardInput, RewardOutput};

/// Set in the child process that `second_sigterm_exits_at_once` starts.
const CHILD_ENV: &str = "MATHRL_ACTORS_SIGNAL_CHILD";

/// Digit-share reward that sends SIGTERM to its own process `signals` times during its 5th
/// call (the first of step 2), each time after the previous one became a stop request.
struct SignalsDuring {
    stop: StopHandle,
    signals: usize,
    calls: AtomicUsize,
}

impl RewardFunction for SignalsDuring {
    fn name(&self) -> &str {
        "signals-during"
    }

    fn score_batch(&self, inputs: &[RewardInput<'_>]) -> anyhow::Result<Vec<RewardOutput>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == 5 {
            for sent in 1..=self.signals {
                // SAFETY: kill(2) on our own pid with a signal the runtime handles.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                // Signals sent before the handler ran are coalesced: wait for this one to land.
                while self.stop.requests() < sent {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
        DigitShare.score_batch(inputs)
    }
}

fn signalling_trainer(signals: usize, dir: &std::path::Path) -> Result<Trainer> {
    let stop = StopHandle::new();
    let reward = Arc::new(SignalsDuring {
        stop: stop.clone(),
        signals,
        calls: AtomicUsize::new(0),
    });
    let mut cfg = config(5);
    cfg.reward_actors = 1;
    cfg.handle_signals = true;
    let (trainer, _) = trainer(cfg, reward)?;
    Ok(trainer
        .with_stop_handle(stop)
        .with_checkpoint_dir(dir.to_path_buf()))
}

#[test]
fn first_sigterm_finishes_the_step_and_checkpoints_it() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let report = signalling_trainer(1, dir.path())?.run(prompts(6))?;
    assert!(report.stopped_early);
    // The request lands while step 2 is being scored.
    assert_eq!(report.steps, 2);
    assert_eq!(report.checkpoints.len(), 1);
    assert!(report.checkpoints[0].ends_with("step-000002"));
    Ok(())
}

#[test]
fn second_sigterm_exits_at_once() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        // The child: this run never returns (the second signal exits the process).
        let dir = tempfile::tempdir()?;
        let outcome = signalling_trainer(2, dir.path())?.run(prompts(6));
        panic!(
            "the run returned after two signals: {:?}",
            outcome.map(|r| r.steps)
        );
    }
    let out = Command::new(std::env::current_exe()?)
        .args(["--exact", "second_sigterm_exits_at_once", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("second stop signal"), "{stderr}");
    Ok(())
}
