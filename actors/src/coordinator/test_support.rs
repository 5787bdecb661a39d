//! A coordinator over the tiny fixture for unit tests that hand it events directly: no actors,
//! no remote workers, a learner thread on the tiny policy.

use candle_core::{DType, Device};
use crossbeam::channel::bounded;
use mathrl::data::QaRecord;
use mathrl::model::Trainable;
use mathrl::{Metrics, Policy};
use mathrl_learners::{GrpoConfig, GrpoLearner};

use super::{Coordinator, EncodedPrompt, Wiring};
use crate::cluster::RemoteWorkers;
use crate::config::TrainerConfig;
use crate::learner::LearnerThread;
use crate::prompt::PromptStream;
use crate::stop::StopHandle;
use crate::supervision::Slots;
use crate::weights::{Publisher, WeightsBoard};
use crate::Result;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");

/// Prompts with these ids (and the token ids `[1, 2]`).
pub(super) fn prompts(ids: &[&str]) -> Vec<EncodedPrompt> {
    ids.iter()
        .map(|id| EncodedPrompt {
            record: QaRecord {
                id: id.to_string(),
                question: id.to_string(),
                gold: None,
                ..QaRecord::default()
            },
            ids: vec![1, 2],
        })
        .collect()
}

/// A coordinator as after `trained` learner steps; the checksum of that version is
/// `checksums[&trained]`.
pub(super) fn coordinator<'a>(
    config: &'a TrainerConfig,
    prompts: &'a [EncodedPrompt],
    trained: u64,
) -> Result<Coordinator<'a>> {
    let policy = Policy::load(TINY, &Device::Cpu, Some(DType::F32), Trainable::Yes)?;
    let publisher = Publisher {
        rollout_device: Some(Device::Cpu),
        remote: false,
        bf16_weights: false,
    };
    let snapshot = publisher.publish(&policy, trained)?;
    let checksum = snapshot.checksum;
    let learner = GrpoLearner::new(policy, None, GrpoConfig::default(), Metrics::null())?;
    // The coordinator is handed events directly: nothing sends on these channels.
    let (_events_tx, events_rx) = bounded(4);
    let (learner_tx, learner_rx) = bounded(4);
    let wiring = Wiring {
        rollout: Slots::new(1),
        reward: Slots::new(1),
        events: events_rx,
        learner: LearnerThread::spawn(learner, publisher, learner_tx)?,
        learner_events: learner_rx,
        board: WeightsBoard::new(snapshot),
        remote: RemoteWorkers::none(),
    };
    Ok(Coordinator::new(
        config,
        prompts,
        PromptStream::new(prompts.len(), 0),
        Metrics::null(),
        StopHandle::new(),
        None,
        wiring,
        trained,
        checksum,
    ))
}
