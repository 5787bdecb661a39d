//! The buffered, thread-shared log file behind the file sinks: writes never fail the run (the
//! first failure is logged with `tracing::warn!`, all are counted) and the buffer reaches the disk
//! on `flush()`, on drop, and at the first write after `flush_interval` has passed.

use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long records may wait in the buffer by default; short enough for a live TensorBoard.
pub(super) const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// A log file shared by all threads of a run.
pub(super) struct SinkFile {
    path: PathBuf,
    state: Mutex<State>,
    flush_interval: Duration,
    write_failures: AtomicU64,
}

struct State {
    writer: BufWriter<File>,
    last_flush: Instant,
}

impl SinkFile {
    /// Wraps `file`, opened at `path`.
    pub(super) fn new(path: PathBuf, file: File) -> Self {
        let state = State {
            writer: BufWriter::new(file),
            last_flush: Instant::now(),
        };
        SinkFile {
            path,
            state: Mutex::new(state),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            write_failures: AtomicU64::new(0),
        }
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Sets how long records may wait in the buffer before a write pushes them to the disk.
    pub(super) fn set_flush_interval(&mut self, interval: Duration) {
        self.flush_interval = interval;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock cannot corrupt a BufWriter: keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one whole record; a failure is counted and logged once, never returned.
    pub(super) fn write(&self, record: &[u8]) {
        let mut state = self.lock();
        let mut result = state.writer.write_all(record);
        if result.is_ok() && state.last_flush.elapsed() >= self.flush_interval {
            result = state.writer.flush();
            state.last_flush = Instant::now();
        }
        drop(state);
        if let Err(err) = result {
            self.count_failure(&err);
        }
    }

    /// Pushes the buffer to the disk.
    pub(super) fn flush(&self) -> Result<()> {
        let mut state = self.lock();
        state.last_flush = Instant::now();
        state
            .writer
            .flush()
            .map_err(|err| Error::io(&self.path, err))
    }

    /// How many writes failed so far.
    pub(super) fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    fn count_failure(&self, err: &std::io::Error) {
        if self.write_failures.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                path = %self.path.display(),
                "cannot write metrics ({err}); the run goes on, further failures are only counted"
            );
        }
    }
}

impl Drop for SinkFile {
    fn drop(&mut self) {
        if let Err(err) = self.flush() {
            tracing::warn!("metrics lost at close: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reach_the_disk_on_flush_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let sink = SinkFile::new(path.clone(), File::create(&path).unwrap());
        sink.write(b"one");
        assert_eq!(std::fs::read(&path).unwrap(), b"", "buffered until flushed");
        sink.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        sink.write(b"two");
        drop(sink);
        assert_eq!(std::fs::read(&path).unwrap(), b"onetwo");
    }

    #[test]
    fn a_write_after_the_interval_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut sink = SinkFile::new(path.clone(), File::create(&path).unwrap());
        sink.set_flush_interval(Duration::ZERO);
        sink.write(b"now");
        assert_eq!(std::fs::read(&path).unwrap(), b"now");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn failed_writes_are_counted_not_raised() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let Ok(file) = File::options().write(true).open("/dev/full") else {
            return;
        };
        let mut sink = SinkFile::new(PathBuf::from("/dev/full"), file);
        sink.set_flush_interval(Duration::ZERO);
        sink.write(b"a");
        sink.write(b"b");
        assert_eq!(sink.write_failures(), 2);
        assert!(sink.flush().unwrap_err().to_string().contains("/dev/full"));
    }
}
