//! Job bookkeeping: one job at a time to each idle worker, its result taken off the books (or
//! ignored when the job was superseded), deadlines enforced, and failed work re-issued or given
//! up on.

use std::time::{Duration, Instant};

use mathrl_rewards::RewardOutput;

use super::Coordinator;
use crate::event::{Event, Role, WorkerId};
use crate::report::UnscoredCompletion;
use crate::reward::{RewardItem, RewardJob};
use crate::rollout::RolloutJob;
use crate::{Error, Result};

/// A job handed to a worker.
#[derive(Debug, Clone)]
pub(super) enum Work {
    Rollout {
        step: u64,
        slot: usize,
    },
    Reward {
        step: u64,
        slot: usize,
        completions: Vec<usize>,
    },
}

/// A job in flight: what it is, who runs it, and when it is declared lost.
pub(super) struct InFlight {
    work: Work,
    worker: WorkerId,
    deadline: Instant,
}

impl InFlight {
    /// Moves the deadline `by` later (the coordinator was busy for that long, not the worker).
    pub(super) fn postpone(&mut self, by: std::time::Duration) {
        self.deadline += by;
    }
}

impl Coordinator<'_> {
    fn idle(&self, role: Role) -> Vec<WorkerId> {
        self.alive
            .iter()
            .filter(|w| w.role == role && !self.busy.contains_key(w))
            .copied()
            .collect()
    }

    /// Hands queued work to idle workers; a worker that cannot be reached is dropped from the
    /// live set and its job put back at the front of the queue.
    pub(super) fn dispatch(&mut self) {
        self.window.max_rollout_queue = self.window.max_rollout_queue.max(self.rollout_queue.len());
        self.window.max_reward_queue = self.window.max_reward_queue.max(self.reward_queue.len());
        for worker in self.idle(Role::Rollout) {
            let Some(at) = self
                .rollout_queue
                .iter()
                .position(|&(step, slot)| !self.avoids(worker, step, slot))
            else {
                continue;
            };
            let Some((step, slot)) = self.rollout_queue.remove(at) else {
                break;
            };
            let job_id = self.job_id();
            let prompt = &self.prompts[self.open[&step].prompts[slot]];
            let mut params = self.config.sampling.clone();
            params.n = self.config.group_size;
            params.seed = sampling_seed(self.config.seed, step, slot);
            let job = RolloutJob {
                job_id,
                prompt_ids: prompt.ids.clone(),
                params,
            };
            if self.workers.generate(worker, job) {
                self.start(
                    job_id,
                    worker,
                    Work::Rollout { step, slot },
                    self.config.rollout_deadline,
                );
            } else {
                self.alive.remove(&worker);
                self.rollout_queue.push_front((step, slot));
            }
        }
        for worker in self.idle(Role::Reward) {
            let Some(at) = self
                .reward_queue
                .iter()
                .position(|(step, slot, _)| !self.avoids(worker, *step, *slot))
            else {
                continue;
            };
            let Some((step, slot, completions)) = self.reward_queue.remove(at) else {
                break;
            };
            let job_id = self.job_id();
            let open = &self.open[&step];
            let record = &self.prompts[open.prompts[slot]].record;
            let group = open.groups[slot]
                .as_ref()
                .expect("scored groups were generated");
            let items = completions
                .iter()
                .map(|&c| RewardItem {
                    question: record.question.clone(),
                    response: group.completions[c].text.clone().unwrap_or_default(),
                    gold: record.gold.clone(),
                    dataset: record.dataset.clone(),
                })
                .collect();
            if self.workers.score(worker, RewardJob { job_id, items }) {
                let work = Work::Reward {
                    step,
                    slot,
                    completions,
                };
                self.start(job_id, worker, work, self.config.message_deadline);
            } else {
                self.alive.remove(&worker);
                self.reward_queue.push_front((step, slot, completions));
            }
        }
    }

    /// Whether `worker` should leave a step's slot to another worker: its result for that slot
    /// was rejected before and a live worker of its role whose result was not is there to take it.
    fn avoids(&self, worker: WorkerId, step: u64, slot: usize) -> bool {
        let Some(rejected) = self.rejected_by.get(&(step, slot)) else {
            return false;
        };
        rejected.contains(&worker)
            && self
                .alive
                .iter()
                .any(|w| w.role == worker.role && !rejected.contains(w))
    }

    fn job_id(&mut self) -> u64 {
        self.next_job += 1;
        self.next_job
    }

    pub(super) fn start(&mut self, job_id: u64, worker: WorkerId, work: Work, deadline: Duration) {
        self.busy.insert(worker, job_id);
        self.in_flight.insert(
            job_id,
            InFlight {
                work,
                worker,
                deadline: Instant::now() + deadline,
            },
        );
    }

    /// Takes a finished job off the books; `None` for a superseded one (its worker was declared
    /// lost and the job re-issued), whose result is ignored.
    fn finish_job(&mut self, job_id: u64, worker: WorkerId) -> Option<Work> {
        let flight = self.in_flight.remove(&job_id)?;
        if self.busy.get(&worker) == Some(&job_id) {
            self.busy.remove(&worker);
        }
        Some(flight.work)
    }

    /// Waits for the next report of a worker or the learner, at most until the nearest deadline.
    pub(super) fn wait_and_handle(&mut self) -> Result<()> {
        let nearest = self
            .in_flight
            .values()
            .map(|f| f.deadline)
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        crossbeam::select! {
            recv(self.events) -> event => {
                let event = event.map_err(|_| Error::Runtime("every worker pool stopped".into()))?;
                self.handle(event)?;
            }
            recv(self.learner_events) -> event => {
                let event = event.map_err(|_| Error::Runtime("the learner thread stopped".into()))?;
                self.handle_learner(event)?;
            }
            default(nearest) => {}
        }
        Ok(())
    }

    pub(super) fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::WorkerUp { worker } => {
                self.alive.insert(worker);
            }
            Event::Rejected {
                worker,
                job_id,
                reason,
            } => {
                let work = self.finish_job(job_id, worker);
                self.rejected(worker, work, reason);
            }
            Event::WorkerDown { worker, reason } => {
                self.workers.count_lost(worker, &mut self.report);
                self.alive.remove(&worker);
                if let Some(job_id) = self.busy.remove(&worker) {
                    if let Some(flight) = self.in_flight.remove(&job_id) {
                        self.failed(flight.work, format!("{worker} {reason}"))?;
                    }
                }
            }
            Event::Rollout {
                worker,
                job_id,
                result,
            } => {
                let Some(Work::Rollout { step, slot }) = self.finish_job(job_id, worker) else {
                    self.readmit(worker);
                    return Ok(());
                };
                match result {
                    Ok(r) => {
                        self.window.rollout_busy += r.busy;
                        self.accept_group(step, slot, worker, r.group, r.weights_checksum);
                    }
                    Err(reason) => {
                        self.failed(Work::Rollout { step, slot }, format!("{worker}: {reason}"))?
                    }
                }
            }
            Event::Reward {
                worker,
                job_id,
                result,
                busy,
            } => {
                let Some(work) = self.finish_job(job_id, worker) else {
                    self.readmit(worker);
                    return Ok(());
                };
                self.window.reward_busy += busy;
                match (result, work) {
                    (
                        Ok(outputs),
                        Work::Reward {
                            step,
                            slot,
                            completions,
                        },
                    ) => self.store_rewards(step, slot, &completions, outputs),
                    (Ok(_), Work::Rollout { .. }) => {}
                    (Err(reason), work) => self.failed(work, format!("{worker}: {reason}"))?,
                }
            }
        }
        Ok(())
    }

    /// A worker benched after missing a deadline takes work again once its late answer, now
    /// ignored, shows it is free (where [`super::workers::Workers::may_readmit`] allows it).
    fn readmit(&mut self, worker: WorkerId) {
        if !self.busy.contains_key(&worker) && self.workers.may_readmit(worker) {
            self.alive.insert(worker);
        }
    }

    /// A remote worker's result failed the coordinator's checks: the job (if still in flight) is
    /// re-issued, preferably to another worker, without counting against its prompt or
    /// completions (they are not at fault); the worker is counted, and dropped at its
    /// `max_attempts`-th rejection. A bad worker never ends the run.
    fn rejected(&mut self, worker: WorkerId, work: Option<Work>, reason: String) {
        self.report.failures += 1;
        self.report.rejected_results += 1;
        let label = self.workers.label(worker);
        let rejections = {
            let count = self.rejections.entry(worker).or_default();
            *count += 1;
            *count
        };
        let max_attempts = self.config.max_attempts;
        let place = match &work {
            Some(Work::Rollout { step, slot } | Work::Reward { step, slot, .. }) => {
                let prompt_id = self
                    .open
                    .get(step)
                    .map(|open| self.prompts[open.prompts[*slot]].record.id.as_str())
                    .unwrap_or("?");
                format!("step {step}, group {slot} (prompt {prompt_id})")
            }
            None => "a job already re-issued".to_string(),
        };
        let message = format!(
            "rejected a result of worker {label} ({worker}, {rejections} of {max_attempts} \
             allowed): {place}: {reason}"
        );
        tracing::warn!("{message}");
        if let Some(Work::Rollout { step, .. } | Work::Reward { step, .. }) = &work {
            self.metrics.text("faults/rejected", *step, &message);
        }
        let dropped = rejections >= max_attempts;
        if dropped {
            self.alive.remove(&worker);
            self.busy.remove(&worker);
            tracing::warn!(
                "dropped worker {label} ({worker}): {rejections} results failed the checks; \
                 the run goes on without it"
            );
            self.workers.drop_worker(
                worker,
                format!(
                    "dropped after {rejections} results failed the coordinator's checks (last: \
                     {place}: {reason})"
                ),
            );
            self.report.dropped_workers.push(label);
        }
        match work {
            Some(Work::Rollout { step, slot }) => {
                self.rejected_by
                    .entry((step, slot))
                    .or_default()
                    .insert(worker);
                self.rollout_queue.push_front((step, slot));
            }
            Some(Work::Reward {
                step,
                slot,
                completions,
            }) => {
                self.rejected_by
                    .entry((step, slot))
                    .or_default()
                    .insert(worker);
                self.reward_queue.push_front((step, slot, completions));
            }
            // The job was re-issued already (its deadline passed): only the worker is counted.
            None if !dropped => self.readmit(worker),
            None => {}
        }
    }

    /// A job failed (error, panic, deadline, disconnect): re-issue it or give up on it.
    fn failed(&mut self, work: Work, reason: String) -> Result<()> {
        self.report.failures += 1;
        tracing::warn!("{work:?} failed: {reason}");
        let max_attempts = self.config.max_attempts;
        match work {
            Work::Rollout { step, slot } => {
                let open = self.open.get_mut(&step).expect("a step in flight is open");
                open.rollout_attempts[slot] += 1;
                if open.rollout_attempts[slot] >= max_attempts {
                    return Err(Error::RolloutFailed {
                        step,
                        prompt_id: self.prompts[open.prompts[slot]].record.id.clone(),
                        attempts: open.rollout_attempts[slot],
                        reason,
                    });
                }
                self.rollout_queue.push_front((step, slot));
            }
            // A failed batch does not say which completion is at fault: retry each alone, so one
            // bad input cannot sink its neighbours; only failures alone count as attempts.
            Work::Reward {
                step,
                slot,
                completions,
            } if completions.len() > 1 => {
                for c in completions.into_iter().rev() {
                    self.reward_queue.push_front((step, slot, vec![c]));
                }
            }
            Work::Reward {
                step,
                slot,
                completions,
            } => {
                let open = self.open.get_mut(&step).expect("a step in flight is open");
                let c = completions[0];
                open.reward_attempts[slot][c] += 1;
                if open.reward_attempts[slot][c] >= max_attempts {
                    open.outputs[slot][c] = Some(RewardOutput {
                        reward: 0.0,
                        verdict: None,
                        rm_score: None,
                    });
                    let prompt_id = self.prompts[open.prompts[slot]].record.id.clone();
                    self.metrics.text(
                        "faults/unscored",
                        step,
                        &format!("prompt {prompt_id}, completion {c}: {reason}"),
                    );
                    open.unscored.push(UnscoredCompletion {
                        step,
                        prompt_id,
                        completion: c,
                        attempts: open.reward_attempts[slot][c],
                        reason,
                    });
                } else {
                    self.reward_queue.push_front((step, slot, vec![c]));
                }
            }
        }
        Ok(())
    }

    /// Declares the jobs past their deadline lost: their workers are stopped (see
    /// [`super::workers::Workers::stop_overdue`]) and their work re-issued.
    pub(super) fn enforce_deadlines(&mut self) -> Result<()> {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for job_id in overdue {
            let flight = self.in_flight.remove(&job_id).expect("listed just above");
            self.busy.remove(&flight.worker);
            self.alive.remove(&flight.worker);
            self.workers.stop_overdue(flight.worker);
            let deadline = match flight.work {
                Work::Rollout { .. } => self.config.rollout_deadline,
                Work::Reward { .. } => self.config.message_deadline,
            };
            let reason = format!(
                "{} exceeded its deadline of {} ms",
                flight.worker,
                deadline.as_millis()
            );
            self.failed(flight.work, reason)?;
        }
        Ok(())
    }
}

/// The sampling seed of a step's slot: a re-issued prompt samples the same group.
fn sampling_seed(seed: u64, step: u64, slot: usize) -> u64 {
    let mut x = seed
        ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (slot as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    // splitmix64 finaliser: nearby (step, slot) pairs get unrelated seeds.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use super::super::test_support::{coordinator, prompts};
    use super::*;
    use crate::config::TrainerConfig;

    /// A rejected remote result is the worker's fault: its job goes back to the queue, for
    /// another worker first, without using up the prompt's attempts; the worker is dropped at
    /// its `max_attempts`-th rejection, and the run goes on.
    #[test]
    fn rejections_count_against_the_worker_not_the_prompt() -> Result<()> {
        let config = TrainerConfig {
            prompts_per_step: 2,
            max_attempts: 2,
            ..TrainerConfig::default()
        };
        let prompts = prompts(&["a", "b"]);
        let mut c = coordinator(&config, &prompts, 0)?;
        c.open_steps(config.max_steps);
        c.rollout_queue.clear();
        let local = WorkerId::local(Role::Rollout, 0);
        let remote = WorkerId::remote(Role::Rollout, 0);
        c.alive.extend([local, remote]);
        let reject = |c: &mut Coordinator<'_>, job_id: u64, work: Work| {
            c.start(job_id, remote, work, Duration::from_secs(60));
            c.handle(Event::Rejected {
                worker: remote,
                job_id,
                reason: "completion 0, token 0: id 9999 is outside the vocabulary".into(),
            })
        };

        reject(&mut c, 1, Work::Rollout { step: 1, slot: 0 })?;
        assert_eq!((c.report.rejected_results, c.report.failures), (1, 1));
        assert_eq!(c.open[&1].rollout_attempts, vec![0, 0]);
        assert_eq!(c.rollout_queue, VecDeque::from([(1, 0)]));
        assert!(c.alive.contains(&remote) && !c.busy.contains_key(&remote));
        // The slot goes to the local actor first; to the remote worker only if it is alone.
        assert!(c.avoids(remote, 1, 0) && !c.avoids(local, 1, 0));
        assert!(!c.avoids(remote, 1, 1));
        c.alive.remove(&local);
        assert!(!c.avoids(remote, 1, 0));
        c.alive.insert(local);

        // As many rejections as a prompt's max_attempts: the prompt is fine, the worker dropped.
        c.rollout_queue.clear(); // as dispatch takes the slot off the queue
        reject(&mut c, 2, Work::Rollout { step: 1, slot: 0 })?;
        assert_eq!(c.open[&1].rollout_attempts, vec![0, 0]);
        assert_eq!(c.rollout_queue, VecDeque::from([(1, 0)]));
        assert!(!c.alive.contains(&remote) && c.alive.contains(&local));
        assert_eq!(c.report.dropped_workers, vec![remote.to_string()]);
        assert_eq!(c.report.rejected_results, 2);
        Ok(())
    }

    #[test]
    fn a_rejected_reward_batch_is_requeued_whole_without_using_up_attempts() -> Result<()> {
        let config = TrainerConfig {
            prompts_per_step: 1,
            ..TrainerConfig::default()
        };
        let prompts = prompts(&["a"]);
        let mut c = coordinator(&config, &prompts, 0)?;
        c.open_steps(config.max_steps);
        let remote = WorkerId::remote(Role::Reward, 0);
        c.alive.insert(remote);
        c.open.get_mut(&1).unwrap().reward_attempts[0] = vec![0; 3];
        let work = Work::Reward {
            step: 1,
            slot: 0,
            completions: vec![0, 1, 2],
        };
        c.start(7, remote, work, Duration::from_secs(60));
        c.handle(Event::Rejected {
            worker: remote,
            job_id: 7,
            reason: "completion 1 of the batch: reward NaN is not finite".into(),
        })?;
        // A failed batch would be split into single completions, each counting an attempt.
        assert_eq!(c.reward_queue, VecDeque::from([(1, 0, vec![0, 1, 2])]));
        assert_eq!(c.open[&1].reward_attempts[0], vec![0, 0, 0]);
        assert_eq!(c.report.rejected_results, 1);
        Ok(())
    }
}
