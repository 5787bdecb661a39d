//! The reward actor: scores a batch of completions with the run's [`RewardFunction`].
//!
//! The function runs on tokio's blocking pool (checkers and RMs are CPU-bound). A panic inside it
//! fails the actor, so its supervisor restarts it and the coordinator re-issues the batch; an
//! error it returns is reported as a failed attempt and the actor stays up.

use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Sender;
use mathrl_rewards::RewardOutput;
use mathrl_rewards::{RewardFunction, RewardInput};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;
use serde::{Deserialize, Serialize};

use crate::event::{Event, WorkerId};
use crate::rollout::panic_message;

/// One completion to score, owned (it crosses threads and nodes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewardItem {
    /// The question.
    pub question: String,
    /// The completion's text.
    pub response: String,
    /// The gold answer.
    pub gold: Option<String>,
    /// The data set's name.
    pub dataset: Option<String>,
}

/// A batch of completions to score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewardJob {
    /// The coordinator's id for this attempt.
    pub job_id: u64,
    /// The completions.
    pub items: Vec<RewardItem>,
}

/// Messages of the reward actor (local only: a remote worker gets [`crate::cluster::WorkerMsg`]).
#[derive(Debug, RactorMessage)]
pub enum RewardMsg {
    /// Score a batch and report it as [`Event::Reward`].
    Score(RewardJob),
}

/// What a reward actor needs.
#[derive(Clone)]
pub struct RewardSetup {
    /// The reward.
    pub reward: Arc<dyn RewardFunction>,
    /// Where results go.
    pub events: Sender<Event>,
}

/// The reward actor.
#[derive(Clone)]
pub struct RewardActor {
    /// Its id, as reported with every result.
    pub worker: WorkerId,
}

impl Actor for RewardActor {
    type Msg = RewardMsg;
    type State = RewardSetup;
    type Arguments = RewardSetup;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        setup: RewardSetup,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(setup)
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.events.send(Event::WorkerUp {
            worker: self.worker,
        })?;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RewardMsg::Score(job) = message;
        let reward = state.reward.clone();
        let items = job.items;
        let start = Instant::now();
        let result = tokio::task::spawn_blocking(move || score_items(reward.as_ref(), &items))
            .await
            .map_err(|e| -> ActorProcessingErr {
                if e.is_panic() {
                    format!(
                        "reward function panicked: {}",
                        panic_message(e.into_panic())
                    )
                    .into()
                } else {
                    format!("reward task cancelled: {e}").into()
                }
            })?;
        state.events.send(Event::Reward {
            worker: self.worker,
            job_id: job.job_id,
            result,
            busy: start.elapsed(),
        })?;
        Ok(())
    }
}

/// Scores `items` with `reward`; an error (or a wrong number of outputs) is the failure's text
/// (shared by the local actor and the remote worker).
pub(crate) fn score_items(
    reward: &dyn RewardFunction,
    items: &[RewardItem],
) -> Result<Vec<RewardOutput>, String> {
    let inputs: Vec<RewardInput<'_>> = items
        .iter()
        .map(|item| RewardInput {
            question: &item.question,
            response: &item.response,
            gold: item.gold.as_deref(),
            dataset: item.dataset.as_deref(),
        })
        .collect();
    let outputs = reward.score_batch(&inputs).map_err(|e| format!("{e:#}"))?;
    if outputs.len() != inputs.len() {
        return Err(format!(
            "reward `{}` returned {} outputs for {} inputs",
            reward.name(),
            outputs.len(),
            inputs.len()
        ));
    }
    Ok(outputs)
}
