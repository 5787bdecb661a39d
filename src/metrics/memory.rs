//! A sink that keeps every record in memory, for tests and for summaries at the end of a run.

use super::{HParamValue, MetricsSink};
use crate::Result;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// One logged record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A scalar under `tag` at `step`.
    Scalar { tag: String, step: u64, value: f64 },
    /// A text under `tag` at `step`.
    Text {
        tag: String,
        step: u64,
        text: String,
    },
    /// The values of a histogram under `tag` at `step`.
    Histogram {
        tag: String,
        step: u64,
        values: Vec<f64>,
    },
    /// The run's settings.
    HParams(Vec<(String, HParamValue)>),
}

/// Records everything in logging order; clones share the same records, so a test keeps one
/// clone to read back what the system logged through [`super::Metrics::new`].
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    records: Arc<Mutex<Vec<Record>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Record>> {
        // A panic elsewhere while holding the lock leaves the vector valid: keep using it.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every record, in logging order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().clone()
    }

    /// The `(step, value)` series of scalar `tag`, in logging order.
    pub fn scalars(&self, tag: &str) -> Vec<(u64, f64)> {
        let records = self.lock();
        let series = records.iter().filter_map(|r| match r {
            Record::Scalar {
                tag: t,
                step,
                value,
            } if t == tag => Some((*step, *value)),
            _ => None,
        });
        series.collect()
    }

    /// The last value logged for scalar `tag`.
    pub fn last_scalar(&self, tag: &str) -> Option<f64> {
        self.scalars(tag).last().map(|&(_, value)| value)
    }

    /// The `(step, text)` series of text `tag`, in logging order.
    pub fn texts(&self, tag: &str) -> Vec<(u64, String)> {
        let records = self.lock();
        let series = records.iter().filter_map(|r| match r {
            Record::Text { tag: t, step, text } if t == tag => Some((*step, text.clone())),
            _ => None,
        });
        series.collect()
    }

    /// The `(step, values)` series of histogram `tag`, in logging order.
    pub fn histograms(&self, tag: &str) -> Vec<(u64, Vec<f64>)> {
        let records = self.lock();
        let series = records.iter().filter_map(|r| match r {
            Record::Histogram {
                tag: t,
                step,
                values,
            } if t == tag => Some((*step, values.clone())),
            _ => None,
        });
        series.collect()
    }

    /// The last settings recorded.
    pub fn hparams(&self) -> Option<Vec<(String, HParamValue)>> {
        self.lock().iter().rev().find_map(|r| match r {
            Record::HParams(hparams) => Some(hparams.clone()),
            _ => None,
        })
    }

    /// Every tag seen, scalar, text or histogram, sorted.
    pub fn tags(&self) -> BTreeSet<String> {
        let records = self.lock();
        let tags = records.iter().filter_map(|r| match r {
            Record::Scalar { tag, .. }
            | Record::Text { tag, .. }
            | Record::Histogram { tag, .. } => Some(tag.clone()),
            Record::HParams(_) => None,
        });
        tags.collect()
    }
}

impl MetricsSink for MemorySink {
    fn scalar(&self, tag: &str, step: u64, value: f64) {
        self.lock().push(Record::Scalar {
            tag: tag.to_string(),
            step,
            value,
        });
    }

    fn text(&self, tag: &str, step: u64, text: &str) {
        self.lock().push(Record::Text {
            tag: tag.to_string(),
            step,
            text: text.to_string(),
        });
    }

    fn histogram(&self, tag: &str, step: u64, values: &[f64]) {
        self.lock().push(Record::Histogram {
            tag: tag.to_string(),
            step,
            values: values.to_vec(),
        });
    }

    fn hparams(&self, hparams: &[(String, HParamValue)]) {
        self.lock().push(Record::HParams(hparams.to_vec()));
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_per_tag_and_in_order() {
        let sink = MemorySink::new();
        sink.scalar("a", 2, 1.5);
        sink.scalar("b", 1, -1.0);
        sink.text("a", 9, "hello");
        sink.scalar("a", 1, 2.5);
        assert_eq!(sink.scalars("a"), vec![(2, 1.5), (1, 2.5)]);
        assert_eq!(sink.last_scalar("a"), Some(2.5));
        assert_eq!(sink.last_scalar("missing"), None);
        assert_eq!(sink.texts("a"), vec![(9, "hello".to_string())]);
        assert!(sink.texts("b").is_empty());
        assert_eq!(sink.tags().into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(sink.records().len(), 4);
    }
}
