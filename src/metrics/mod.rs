//! One metrics sink for the whole run: actors and learners log through a [`Metrics`] handle and
//! never know whether their numbers go to TensorBoard, a JSONL file, memory (tests) or nowhere.

mod hparams;
mod jsonl;
mod memory;
mod sink_file;
mod tensorboard;
mod tensorboard_plugins;

pub use hparams::{flatten_hparams, HParamValue};
pub use jsonl::JsonlSink;
pub use memory::{MemorySink, Record};
pub use tensorboard::TensorBoardSink;

use crate::Result;
use std::sync::Arc;

/// Where metrics go. Logging never fails: a sink that cannot write warns once and counts.
pub trait MetricsSink: Send + Sync {
    /// Records `value` under `tag` at training step `step`.
    fn scalar(&self, tag: &str, step: u64, value: f64);
    /// Records a piece of text (a sampled completion, a config dump) under `tag` at `step`.
    fn text(&self, tag: &str, step: u64, text: &str);
    /// Records the distribution of `values` under `tag` at `step` (TensorBoard: a histogram);
    /// sinks without one ignore it.
    fn histogram(&self, _tag: &str, _step: u64, _values: &[f64]) {}
    /// Records the run's settings once, at its start (TensorBoard: the HParams tab); sinks
    /// without a place for them ignore them.
    fn hparams(&self, _hparams: &[(String, HParamValue)]) {}
    /// Pushes buffered records to storage.
    fn flush(&self) -> Result<()>;
    /// How many writes failed since the sink was created (they were dropped, not retried).
    fn write_failures(&self) -> u64 {
        0
    }
}

/// The cheap-to-clone handle to the run's metrics sink that every part of the system takes.
#[derive(Clone)]
pub struct Metrics(Arc<dyn MetricsSink>);

impl Metrics {
    /// A handle that sends every record to `sink`.
    pub fn new(sink: impl MetricsSink + 'static) -> Self {
        Metrics(Arc::new(sink))
    }

    /// A handle that discards everything.
    pub fn null() -> Self {
        Metrics::new(NullSink)
    }

    /// A handle that sends every record to each of `sinks`.
    pub fn tee(sinks: Vec<Metrics>) -> Self {
        Metrics::new(Tee(sinks))
    }

    /// Records one scalar.
    pub fn scalar(&self, tag: &str, step: u64, value: f64) {
        self.0.scalar(tag, step, value);
    }

    /// Records several scalars at the same step.
    pub fn scalars(&self, step: u64, values: &[(&str, f64)]) {
        for &(tag, value) in values {
            self.0.scalar(tag, step, value);
        }
    }

    /// Records one piece of text.
    pub fn text(&self, tag: &str, step: u64, text: &str) {
        self.0.text(tag, step, text);
    }

    /// Records the distribution of `values` (one histogram).
    pub fn histogram(&self, tag: &str, step: u64, values: &[f64]) {
        self.0.histogram(tag, step, values);
    }

    /// Records the run's settings (see [`flatten_hparams`]).
    pub fn hparams(&self, hparams: &[(String, HParamValue)]) {
        self.0.hparams(hparams);
    }

    /// Pushes buffered records to storage.
    pub fn flush(&self) -> Result<()> {
        self.0.flush()
    }

    /// How many writes failed and were dropped, over all sinks behind this handle.
    pub fn write_failures(&self) -> u64 {
        self.0.write_failures()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::null()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

/// Discards everything.
struct NullSink;

impl MetricsSink for NullSink {
    fn scalar(&self, _tag: &str, _step: u64, _value: f64) {}
    fn text(&self, _tag: &str, _step: u64, _text: &str) {}
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Fans every record out to several sinks.
struct Tee(Vec<Metrics>);

impl MetricsSink for Tee {
    fn scalar(&self, tag: &str, step: u64, value: f64) {
        self.0.iter().for_each(|m| m.scalar(tag, step, value));
    }

    fn text(&self, tag: &str, step: u64, text: &str) {
        self.0.iter().for_each(|m| m.text(tag, step, text));
    }

    fn histogram(&self, tag: &str, step: u64, values: &[f64]) {
        self.0.iter().for_each(|m| m.histogram(tag, step, values));
    }

    fn hparams(&self, hparams: &[(String, HParamValue)]) {
        self.0.iter().for_each(|m| m.hparams(hparams));
    }

    /// Flushes every sink, even after one fails, and returns the first error.
    fn flush(&self) -> Result<()> {
        let results: Vec<Result<()>> = self.0.iter().map(Metrics::flush).collect();
        results.into_iter().collect()
    }

    fn write_failures(&self) -> u64 {
        self.0.iter().map(Metrics::write_failures).sum()
    }
}

/// Seconds since the Unix epoch, as TensorBoard's `wall_time`.
fn unix_time_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_sends_every_record_to_every_sink() {
        let (a, b) = (MemorySink::new(), MemorySink::new());
        let metrics = Metrics::tee(vec![
            Metrics::new(a.clone()),
            Metrics::new(b.clone()),
            Metrics::null(),
        ]);
        metrics.scalars(3, &[("loss", 0.5), ("reward", 1.0)]);
        metrics.text("sample", 3, "x = 2");
        metrics.histogram("rewards", 3, &[0.0, 1.0]);
        let hparams = [("lr".to_string(), HParamValue::Number(1e-5))];
        metrics.hparams(&hparams);
        metrics.flush().unwrap();
        for sink in [&a, &b] {
            assert_eq!(sink.scalars("loss"), vec![(3, 0.5)]);
            assert_eq!(sink.scalars("reward"), vec![(3, 1.0)]);
            assert_eq!(sink.texts("sample"), vec![(3, "x = 2".to_string())]);
            assert_eq!(sink.histograms("rewards"), vec![(3, vec![0.0, 1.0])]);
            assert_eq!(sink.hparams(), Some(hparams.to_vec()));
        }
        assert_eq!(metrics.write_failures(), 0);
    }

    #[test]
    fn clones_share_one_sink_across_threads() {
        let sink = MemorySink::new();
        let metrics = Metrics::new(sink.clone());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let m = metrics.clone();
                s.spawn(move || (0..100).for_each(|i| m.scalar("x", t * 100 + i, 1.0)));
            }
        });
        let mut steps: Vec<u64> = sink.scalars("x").into_iter().map(|(s, _)| s).collect();
        steps.sort_unstable();
        assert_eq!(steps, (0..400).collect::<Vec<_>>());
    }
}
