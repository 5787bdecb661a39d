//! The learner: a dedicated thread that owns the [`GrpoLearner`] (policy, reference, optimiser),
//! takes one batch of scored groups per message, and publishes the updated weights (one shared
//! frozen copy for the local rollout actors, bytes for remote workers: [`Publisher`]).
//!
//! It is a thread rather than a ractor actor because it is one long blocking computation per
//! message with no supervision story: the optimiser state lives only here, so a learner failure
//! ends the run and the way back is resuming from the last checkpoint.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender};
use mathrl_learners::{CheckpointConfig, GrpoLearner, GrpoStepReport, RolloutBatch, RunState};

use crate::rollout::panic_message;
use crate::weights::{PublishedWeights, Publisher};
use crate::{Error, Result};

/// Work for the learner thread.
pub enum LearnerMsg {
    /// One GRPO step on `batch`, then publish the new weights.
    Train(RolloutBatch),
    /// Write a checkpoint of the current state with the coordinator's `run` state.
    Checkpoint(CheckpointConfig, Box<RunState>),
}

/// What the learner thread reports.
#[derive(Debug)]
pub enum LearnerEvent {
    /// A step finished; `snapshot` holds the weights after it.
    Stepped {
        /// The learner's report.
        report: Box<GrpoStepReport>,
        /// The new weights.
        snapshot: PublishedWeights,
        /// Wall time of the step (publication included).
        elapsed: Duration,
        /// Set when too many updates in a row were skipped: the run must checkpoint and end.
        diverged: Option<String>,
    },
    /// A checkpoint was written.
    Checkpointed(PathBuf),
    /// A step or checkpoint failed; the run cannot continue.
    Failed(String),
}

/// The handle to the learner thread.
pub struct LearnerThread {
    tx: Sender<LearnerMsg>,
    join: JoinHandle<GrpoLearner>,
}

impl LearnerThread {
    /// Starts the thread; it publishes the weights after each step with `publisher`, and its
    /// reports go to `events`.
    pub fn spawn(
        mut learner: GrpoLearner,
        publisher: Publisher,
        events: Sender<LearnerEvent>,
    ) -> Result<Self> {
        // Capacity 2: at most one step and one checkpoint request are ever queued.
        let (tx, rx): (Sender<LearnerMsg>, Receiver<LearnerMsg>) = bounded(2);
        let join = std::thread::Builder::new()
            .name("learner".into())
            .spawn(move || {
                for message in rx {
                    let event = match message {
                        LearnerMsg::Train(batch) => {
                            let start = Instant::now();
                            let outcome =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    let report = learner.step(batch)?;
                                    // The policy version: learner steps, not optimiser updates.
                                    let policy_version = learner.step_count();
                                    let snapshot =
                                        publisher.publish(learner.policy(), policy_version)?;
                                    let diverged =
                                        learner.check_diverged().err().map(|e| e.to_string());
                                    Ok::<_, Error>((report, snapshot, diverged))
                                }));
                            match outcome {
                                Ok(Ok((report, snapshot, diverged))) => LearnerEvent::Stepped {
                                    report: Box::new(report),
                                    snapshot,
                                    elapsed: start.elapsed(),
                                    diverged,
                                },
                                Ok(Err(e)) => LearnerEvent::Failed(e.to_string()),
                                Err(panic) => LearnerEvent::Failed(format!(
                                    "learner step panicked: {}",
                                    panic_message(panic)
                                )),
                            }
                        }
                        LearnerMsg::Checkpoint(config, run) => {
                            match learner.save_checkpoint(&config, &run) {
                                Ok(dir) => LearnerEvent::Checkpointed(dir),
                                Err(e) => LearnerEvent::Failed(format!("checkpoint: {e}")),
                            }
                        }
                    };
                    if events.send(event).is_err() {
                        break;
                    }
                }
                learner
            })
            .map_err(|e| Error::Runtime(format!("spawning the learner thread: {e}")))?;
        Ok(Self { tx, join })
    }

    /// Queues a message.
    pub fn send(&self, message: LearnerMsg) -> Result<()> {
        self.tx
            .send(message)
            .map_err(|_| Error::Runtime("the learner thread has stopped".into()))
    }

    /// Lets the thread finish its queue and returns the learner.
    pub fn finish(self) -> Result<GrpoLearner> {
        drop(self.tx);
        self.join
            .join()
            .map_err(|p| Error::Runtime(format!("learner thread: {}", panic_message(p))))
    }
}
