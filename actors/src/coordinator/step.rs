//! Steps: opening them when the weights may sample them, accepting their groups and scores,
//! assembling the learner's batch once every completion is scored, and finishing a trained step
//! (publishing its weights, then its metrics, record and checkpoint).

use std::time::Instant;

use mathrl::types::Group;
use mathrl_learners::{policy_lag, DataCursor, RolloutBatch, ScoredGroup};
use mathrl_rewards::RewardOutput;

use super::Coordinator;
use crate::event::WorkerId;
use crate::learner::{LearnerEvent, LearnerMsg};
use crate::progress::StepSummary;
use crate::report::UnscoredCompletion;
use crate::weights::PublishedWeights;
use crate::{Error, Result};

/// A step whose groups are being generated and scored.
pub(super) struct OpenStep {
    pub(super) prompts: Vec<usize>,
    pub(super) groups: Vec<Option<Group>>,
    pub(super) generated_by: Vec<Option<WorkerId>>,
    pub(super) outputs: Vec<Vec<Option<RewardOutput>>>,
    pub(super) reward_attempts: Vec<Vec<usize>>,
    pub(super) rollout_attempts: Vec<usize>,
    pub(super) cursor_before: DataCursor,
    pub(super) opened_at: Instant,
    pub(super) generated_at: Option<Instant>,
    pub(super) sampled_tokens: usize,
    pub(super) checksum_matches: usize,
    pub(super) unscored: Vec<UnscoredCompletion>,
}

impl OpenStep {
    fn is_scored(&self) -> bool {
        self.outputs
            .iter()
            .all(|g| !g.is_empty() && g.iter().all(Option::is_some))
    }
}

impl Coordinator<'_> {
    /// Opens the steps up to `last` that the current weights may sample.
    pub(super) fn open_steps(&mut self, last: u64) {
        let lag = self.config.sync.max_policy_lag();
        while self.next_open <= last.min(self.config.max_steps)
            && self.next_open <= self.trained + 1 + lag
        {
            let step = self.next_open;
            let cursor_before = self.stream.cursor();
            let prompts = self.stream.take(self.config.prompts_per_step);
            let n = prompts.len();
            self.open.insert(
                step,
                OpenStep {
                    prompts,
                    groups: vec![None; n],
                    generated_by: vec![None; n],
                    outputs: vec![Vec::new(); n],
                    reward_attempts: vec![Vec::new(); n],
                    rollout_attempts: vec![0; n],
                    cursor_before,
                    opened_at: Instant::now(),
                    generated_at: None,
                    sampled_tokens: 0,
                    checksum_matches: 0,
                    unscored: Vec::new(),
                },
            );
            self.rollout_queue.extend((0..n).map(|slot| (step, slot)));
            self.next_open += 1;
        }
    }

    /// Stores a generated group and queues its completions for scoring, unless its weights lag
    /// too far behind the step (then it is dropped, counted and its prompt generated again).
    pub(super) fn accept_group(
        &mut self,
        step: u64,
        slot: usize,
        worker: WorkerId,
        group: Group,
        checksum: u64,
    ) {
        // Step s starts from policy version s − 1; its groups may lag it by `max_policy_lag`.
        if policy_lag(&group, step - 1) > self.config.sync.max_policy_lag() {
            self.report.dropped_stale_groups += 1;
            self.rollout_queue.push_front((step, slot));
            return;
        }
        let matches = self.checksums.get(&group.policy_version) == Some(&checksum);
        let open = self.open.get_mut(&step).expect("a step in flight is open");
        open.checksum_matches += usize::from(matches);
        open.sampled_tokens += group
            .completions
            .iter()
            .map(|c| c.num_sampled_tokens())
            .sum::<usize>();
        let n = group.completions.len();
        open.outputs[slot] = vec![None; n];
        open.reward_attempts[slot] = vec![0; n];
        open.groups[slot] = Some(group);
        open.generated_by[slot] = Some(worker);
        if open.groups.iter().all(Option::is_some) {
            open.generated_at = Some(Instant::now());
        }
        let label = self.workers.label(worker);
        *self.report.groups_by_worker.entry(label).or_default() += 1;
        self.reward_queue.push_back((step, slot, (0..n).collect()));
    }

    /// Stores the rewards a reward job gave the `completions` of a step's slot.
    pub(super) fn store_rewards(
        &mut self,
        step: u64,
        slot: usize,
        completions: &[usize],
        outputs: Vec<RewardOutput>,
    ) {
        let open = self.open.get_mut(&step).expect("a step in flight is open");
        for (&c, output) in completions.iter().zip(outputs) {
            open.outputs[slot][c] = Some(output);
        }
    }

    /// Sends the next step to the learner once every completion of it is scored.
    pub(super) fn feed_learner(&mut self) -> Result<()> {
        let step = self.trained + 1;
        if self.learner_busy || !self.open.get(&step).is_some_and(OpenStep::is_scored) {
            return Ok(());
        }
        let open = &self.open[&step];
        let groups = open
            .groups
            .iter()
            .zip(&open.outputs)
            .map(|(group, outputs)| {
                let outputs: Vec<&RewardOutput> = outputs
                    .iter()
                    .map(|o| o.as_ref().expect("scored"))
                    .collect();
                let verdicts: Option<Vec<bool>> = outputs
                    .iter()
                    .map(|o| o.verdict.as_ref().map(|v| v.is_correct()))
                    .collect();
                ScoredGroup {
                    group: group.clone().expect("generated"),
                    rewards: outputs.iter().map(|o| o.reward).collect(),
                    verdicts,
                }
            })
            .collect();
        self.learner
            .send(LearnerMsg::Train(RolloutBatch { groups }))?;
        self.learner_busy = true;
        self.log_queues(step);
        Ok(())
    }

    /// Handles a report of the learner thread: a trained step is finished here.
    pub(super) fn handle_learner(&mut self, event: LearnerEvent) -> Result<()> {
        match event {
            LearnerEvent::Failed(message) => Err(Error::Runtime(format!("learner: {message}"))),
            LearnerEvent::Checkpointed(dir) => {
                self.report.checkpoints.push(dir);
                Ok(())
            }
            LearnerEvent::Stepped {
                report,
                snapshot,
                elapsed,
                diverged,
            } => {
                self.learner_busy = false;
                if let Some(message) = diverged {
                    tracing::error!(step = self.trained + 1, "{message}");
                    self.diverged = Some(message);
                }
                let step = self.trained + 1;
                self.trained = step;
                let open = self.open.remove(&step).expect("the trained step was open");
                self.rejected_by.retain(|&(s, _), _| s > step);
                self.checksums.insert(snapshot.version, snapshot.checksum);
                // Keep the checksums a group could still be stamped with.
                let oldest = step.saturating_sub(self.config.sync.max_policy_lag() + 1);
                self.checksums.retain(|&v, _| v >= oldest);
                let watched = self
                    .policy_watch
                    .as_ref()
                    .is_some_and(|(watch, _)| watch.due(step))
                    .then(|| snapshot.clone());
                self.board.publish(snapshot);
                let (tokens_per_second, seconds) = self.log_step(step, &open, elapsed);
                let summary =
                    StepSummary::new(&report, self.config.max_steps, tokens_per_second, seconds);
                self.record_step(step, open, *report);
                if let Some(observer) = &mut self.observer {
                    observer(&summary);
                }
                if let Some(published) = watched {
                    self.show_policy(step, &published)?;
                }
                if self.checkpoints.as_ref().is_some_and(|c| c.due(step)) {
                    self.request_checkpoint()?;
                }
                Ok(())
            }
        }
    }
}

impl Coordinator<'_> {
    /// Shows the policy watch the weights published after `step` (if there is a watch). Training waits meanwhile (no
    /// job is dispatched, the learner is idle), and the time it takes is charged neither to
    /// the jobs in flight nor to `max_train_seconds`: a long evaluation must not make a worker
    /// look overdue or end the run early.
    pub(super) fn show_policy(&mut self, step: u64, published: &PublishedWeights) -> Result<()> {
        let Some((watch, shape)) = &mut self.policy_watch else {
            return Ok(());
        };
        let started = Instant::now();
        let policy = published.policy(&shape.config, &shape.device, shape.dtype)?;
        (watch.observer)(step, &policy);
        let paused = started.elapsed();
        for flight in self.in_flight.values_mut() {
            flight.postpone(paused);
        }
        self.started += paused;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use super::super::jobs::Work;
    use super::super::test_support::{coordinator, prompts};
    use super::super::Coordinator;
    use super::*;
    use crate::config::{SyncMode, TrainerConfig};
    use crate::event::{Event, Role, RolloutResult};

    fn group(policy_version: u64) -> Group {
        Group {
            prompt_index: 0,
            prompt_ids: vec![1, 2],
            completions: Vec::new(),
            policy_version,
        }
    }

    /// In one process a rollout actor always samples with weights recent enough (steps open
    /// only when the lag allows it); a remote worker that missed a sync does not. The guard
    /// is tested here by handing the coordinator groups of chosen versions.
    #[test]
    fn groups_older_than_the_lag_are_dropped_counted_and_regenerated() -> Result<()> {
        let config = TrainerConfig {
            sync: SyncMode::Async { max_policy_lag: 1 },
            prompts_per_step: 2,
            ..TrainerConfig::default()
        };
        let prompts = prompts(&["a", "b"]);
        // As after 3 learner steps: with lag 1, steps 4 and 5 may be sampled now.
        let mut c = coordinator(&config, &prompts, 3)?;
        let checksum = c.checksums[&3];
        c.open_steps(config.max_steps);
        assert_eq!(c.open.keys().copied().collect::<Vec<_>>(), vec![4, 5]);
        c.rollout_queue.clear();
        let worker = WorkerId::local(Role::Rollout, 0);
        let deliver = |c: &mut Coordinator<'_>, job_id: u64, version: u64| {
            c.start(
                job_id,
                worker,
                Work::Rollout { step: 5, slot: 1 },
                Duration::from_secs(60),
            );
            c.handle(Event::Rollout {
                worker,
                job_id,
                result: Ok(RolloutResult {
                    group: group(version),
                    weights_checksum: checksum,
                    busy: Duration::ZERO,
                }),
            })
        };

        // Step 5 trains on versions 3 ..= 4: a group of version 2 lags by 2 and is dropped,
        // counted, and its prompt queued again for generation.
        deliver(&mut c, 1, 2)?;
        assert_eq!(c.report.dropped_stale_groups, 1);
        assert_eq!(c.rollout_queue, VecDeque::from([(5, 1)]));
        assert!(c.open[&5].groups[1].is_none());
        assert!(c.reward_queue.is_empty());

        // Version 3 lags by 1: accepted and sent on to scoring.
        c.rollout_queue.clear();
        deliver(&mut c, 2, 3)?;
        assert_eq!(c.report.dropped_stale_groups, 1);
        assert_eq!(
            c.open[&5].groups[1].as_ref().map(|g| g.policy_version),
            Some(3)
        );
        assert_eq!(c.reward_queue, VecDeque::from([(5, 1, vec![])]));
        assert_eq!(c.report.groups_by_worker["rollout-0"], 1);
        Ok(())
    }
}
