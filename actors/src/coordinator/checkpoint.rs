//! Checkpoints: the coordinator asks the learner thread for one when a step is due and at the
//! end, with the run state only it knows (where the prompt stream resumes, groups per worker).

use std::time::Duration;

use mathrl_learners::{DataCursor, RunState};

use super::{Coordinator, Ending};
use crate::learner::LearnerMsg;
use crate::{Error, Result};

impl Coordinator<'_> {
    /// The cursor a resumed run starts from: where the first untrained step drew its prompts.
    fn resume_cursor(&self) -> DataCursor {
        self.open
            .values()
            .next()
            .map(|o| o.cursor_before)
            .unwrap_or_else(|| self.stream.cursor())
    }

    /// Asks the learner thread for a checkpoint of the step it just trained.
    pub(super) fn request_checkpoint(&mut self) -> Result<()> {
        let Some(config) = self.checkpoints.clone() else {
            return Ok(());
        };
        let run = RunState {
            data_cursor: Some(self.resume_cursor()),
            extra: serde_json::json!({ "groups_by_worker": self.report.groups_by_worker }),
            identity: self.identity.clone(),
            ..RunState::default()
        };
        self.learner
            .send(LearnerMsg::Checkpoint(config, Box::new(run)))
    }

    /// Writes the final checkpoint (unless the last step's was already requested) and waits
    /// for it.
    pub(super) fn finish_with_checkpoint(&mut self) -> Result<Ending> {
        let Some(config) = self.checkpoints.clone() else {
            return Ok(Ending::Finished);
        };
        if self.trained == self.report.resumed_from_step {
            return Ok(Ending::Finished);
        }
        if !config.due(self.trained) {
            self.request_checkpoint()?;
        }
        let wanted = mathrl_learners::checkpoint::checkpoint_name(self.trained);
        loop {
            if self.report.checkpoints.iter().any(|d| d.ends_with(&wanted)) {
                return Ok(Ending::Finished);
            }
            if self.stop.requests() >= 2 {
                return Ok(Ending::Abandoned);
            }
            crossbeam::select! {
                recv(self.learner_events) -> event => {
                    let event = event
                        .map_err(|_| Error::Runtime("the learner thread stopped".into()))?;
                    self.handle_learner(event)?;
                }
                default(Duration::from_millis(200)) => {}
            }
        }
    }
}
