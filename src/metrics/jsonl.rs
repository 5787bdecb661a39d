//! A sink that appends one JSON object per record to `<log_dir>/metrics.jsonl`: readable without
//! TensorBoard (`jq`, pandas) and keeps scalars at full f64 precision.
//!
//! Lines look like `{"wall_time":1700000000.5,"step":3,"tag":"loss","value":0.25}` or, for text,
//! `{"wall_time":…,"step":3,"tag":"sample","text":"…"}`. A NaN or infinite value is written as
//! `null`, since JSON has no such numbers.

use super::sink_file::SinkFile;
use super::{unix_time_secs, MetricsSink};
use crate::{Error, Result};
use std::fs::File;
use std::path::Path;
use std::time::Duration;

/// Appends records to `<log_dir>/metrics.jsonl` (a resumed run continues the same file).
pub struct JsonlSink {
    file: SinkFile,
}

impl JsonlSink {
    /// The name of the file in the log directory.
    pub const FILE_NAME: &'static str = "metrics.jsonl";

    /// Creates `log_dir` if needed and opens `metrics.jsonl` in it for appending.
    pub fn create(log_dir: impl AsRef<Path>) -> Result<Self> {
        let log_dir = log_dir.as_ref();
        std::fs::create_dir_all(log_dir).map_err(|err| Error::io(log_dir, err))?;
        let path = log_dir.join(Self::FILE_NAME);
        let file = File::options().create(true).append(true).open(&path);
        let file = file.map_err(|err| Error::io(&path, err))?;
        Ok(JsonlSink {
            file: SinkFile::new(path, file),
        })
    }

    /// Sets how long records may wait in the buffer (10 s by default).
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.file.set_flush_interval(interval);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    fn write_line(&self, line: serde_json::Value) {
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        self.file.write(&bytes);
    }
}

impl MetricsSink for JsonlSink {
    fn scalar(&self, tag: &str, step: u64, value: f64) {
        let wall_time = unix_time_secs();
        self.write_line(
            serde_json::json!({"wall_time": wall_time, "step": step, "tag": tag, "value": value}),
        );
    }

    fn text(&self, tag: &str, step: u64, text: &str) {
        let wall_time = unix_time_secs();
        self.write_line(
            serde_json::json!({"wall_time": wall_time, "step": step, "tag": tag, "text": text}),
        );
    }

    fn flush(&self) -> Result<()> {
        self.file.flush()
    }

    fn write_failures(&self) -> u64 {
        self.file.write_failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn read_lines(path: &Path) -> Vec<Value> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn one_object_per_record_appended_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonlSink::create(dir.path()).unwrap();
        sink.scalar("train/loss", 3, 0.1 + 0.2);
        sink.text("sample", 4, "naïve\n\"quoted\"");
        sink.scalar("bad", 5, f64::NAN);
        drop(sink);
        let again = JsonlSink::create(dir.path()).unwrap();
        again.scalar("train/loss", 6, -1.0);
        again.flush().unwrap();

        let lines = read_lines(&dir.path().join(JsonlSink::FILE_NAME));
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["tag"], "train/loss");
        assert_eq!(lines[0]["step"], 3);
        assert_eq!(
            lines[0]["value"].as_f64(),
            Some(0.1 + 0.2),
            "full f64 precision"
        );
        assert!(lines[0]["wall_time"].as_f64().unwrap() > 1.6e9);
        assert_eq!(lines[1]["text"], "naïve\n\"quoted\"");
        assert!(lines[1].get("value").is_none());
        assert_eq!(lines[2]["value"], Value::Null);
        assert_eq!(
            (lines[3]["step"].as_u64(), lines[3]["value"].as_f64()),
            (Some(6), Some(-1.0))
        );
    }
}
