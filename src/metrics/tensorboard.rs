//! A small TensorBoard event-file writer of our own: scalars, text, histograms and the run's
//! hyperparameters, TFRecord-framed protobuf `Event`s encoded by hand (histograms and
//! hyperparameters in [`super::tensorboard_plugins`]).
//!
//! Why not a crate: `tensorboard-rs`, the one on crates.io, is unmaintained since 2022, pulls
//! protobuf 2.x and leaves text summaries unimplemented; what we need is a hundred lines.
//!
//! Format (TensorFlow's `event.proto`, `summary.proto`, `tensor.proto`): each record is
//! `u64 length LE, masked CRC-32C of the length, data, masked CRC-32C of the data`; the first
//! record is an `Event` carrying `file_version = "brain.Event:2"` (which also tells TensorBoard
//! not to drop data when steps go backwards); the others carry a one-value `Summary`. Scalars are
//! `simple_value` (TensorBoard stores them as f32); text is a rank-1 `DT_STRING` tensor tagged for
//! the text plugin. `tests/tensorboard_readback.rs` reads a file back with TensorBoard itself.

use super::sink_file::SinkFile;
use super::tensorboard_plugins::{histogram_value, session_start_value};
use super::{unix_time_secs, HParamValue, MetricsSink};
use crate::{Error, Result};
use std::fs::File;
use std::path::Path;
use std::time::Duration;

/// Writes `events.out.tfevents.<unix secs>.<hostname>` in a log directory.
pub struct TensorBoardSink {
    file: SinkFile,
}

impl TensorBoardSink {
    /// Creates `log_dir` if needed and a new event file in it (never overwriting one).
    pub fn create(log_dir: impl AsRef<Path>) -> Result<Self> {
        let log_dir = log_dir.as_ref();
        std::fs::create_dir_all(log_dir).map_err(|err| Error::io(log_dir, err))?;
        let wall_time = unix_time_secs();
        let base = format!("events.out.tfevents.{}.{}", wall_time as u64, hostname());
        for attempt in 0..1000 {
            let name = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}.{attempt}")
            };
            let path = log_dir.join(name);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let sink = TensorBoardSink {
                        file: SinkFile::new(path, file),
                    };
                    sink.file
                        .write(&frame_record(&file_version_event(wall_time)));
                    sink.file.flush()?;
                    return Ok(sink);
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(Error::io(path, err)),
            }
        }
        let taken = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "1000 event files");
        Err(Error::io(log_dir.join(base), taken))
    }

    /// Sets how long records may wait in the buffer (10 s by default).
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.file.set_flush_interval(interval);
        self
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl MetricsSink for TensorBoardSink {
    fn scalar(&self, tag: &str, step: u64, value: f64) {
        let event = summary_event(unix_time_secs(), step, &scalar_value(tag, value as f32));
        self.file.write(&frame_record(&event));
    }

    fn text(&self, tag: &str, step: u64, text: &str) {
        let event = summary_event(unix_time_secs(), step, &text_value(tag, text));
        self.file.write(&frame_record(&event));
    }

    fn histogram(&self, tag: &str, step: u64, values: &[f64]) {
        if let Some(value) = histogram_value(tag, values) {
            let event = summary_event(unix_time_secs(), step, &value);
            self.file.write(&frame_record(&event));
        }
    }

    fn hparams(&self, hparams: &[(String, HParamValue)]) {
        let wall_time = unix_time_secs();
        let event = summary_event(wall_time, 0, &session_start_value(hparams, wall_time));
        self.file.write(&frame_record(&event));
    }

    fn flush(&self) -> Result<()> {
        self.file.flush()
    }

    fn write_failures(&self) -> u64 {
        self.file.write_failures()
    }
}

/// The machine's name, as TensorFlow puts it in event file names.
fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the pointer and length describe `buf`, which outlives the call.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if rc == 0 && len > 0 {
            return String::from_utf8_lossy(&buf[..len]).replace(['/', '\\'], "_");
        }
    }
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".to_string())
}

// ---- TFRecord framing -------------------------------------------------------------------------

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) lookup table, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc32c(data: &[u8]) -> u32 {
    let crc = data.iter().fold(!0u32, |crc, &byte| {
        CRC32C_TABLE[((crc ^ byte as u32) & 0xFF) as usize] ^ (crc >> 8)
    });
    !crc
}

/// TFRecord's masked CRC: a CRC stored next to its data would checksum badly if CRC'd again.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
fn frame_record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    record
}

// ---- Protobuf encoding (fields written in field-number order, as protoc does) ----------------

pub(super) const WIRE_VARINT: u32 = 0;
pub(super) const WIRE_FIXED64: u32 = 1;
pub(super) const WIRE_LEN: u32 = 2;
pub(super) const WIRE_FIXED32: u32 = 5;
/// `DataType.DT_STRING` in `types.proto`.
const DT_STRING: u64 = 7;

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from(field << 3 | wire_type));
}

pub(super) fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, WIRE_VARINT);
    put_varint(out, value);
}

pub(super) fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `Event { wall_time = 1, step = 2 }`, the head of every event; proto3 omits a zero step.
fn event_head(wall_time: f64, step: u64) -> Vec<u8> {
    let mut event = Vec::new();
    put_key(&mut event, 1, WIRE_FIXED64);
    event.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        // int64 on the wire: a step above i64::MAX would read back negative.
        put_varint_field(&mut event, 2, step);
    }
    event
}

/// `Event { wall_time, file_version = 3: "brain.Event:2" }`, the first record of a file.
fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut event = event_head(wall_time, 0);
    put_bytes_field(&mut event, 3, b"brain.Event:2");
    event
}

/// `Event { wall_time, step, summary = 5: Summary { value = 1: [value] } }`.
pub(super) fn summary_event(wall_time: f64, step: u64, value: &[u8]) -> Vec<u8> {
    let mut summary = Vec::with_capacity(value.len() + 4);
    put_bytes_field(&mut summary, 1, value);
    let mut event = event_head(wall_time, step);
    put_bytes_field(&mut event, 5, &summary);
    event
}

/// `Summary.Value { tag = 1, simple_value = 2 }`.
fn scalar_value(tag: &str, value: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 8);
    put_bytes_field(&mut out, 1, tag.as_bytes());
    put_key(&mut out, 2, WIRE_FIXED32);
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// `Summary.Value { tag = 1, tensor = 8, metadata = 9 }` holding `[text]` for the text plugin.
fn text_value(tag: &str, text: &str) -> Vec<u8> {
    // TensorShapeProto { dim = 2: [Dim { size = 1: 1 }] }
    let mut dim = Vec::new();
    put_varint_field(&mut dim, 1, 1);
    let mut shape = Vec::new();
    put_bytes_field(&mut shape, 2, &dim);
    // TensorProto { dtype = 1, tensor_shape = 2, string_val = 8 }
    let mut tensor = Vec::with_capacity(text.len() + 16);
    put_varint_field(&mut tensor, 1, DT_STRING);
    put_bytes_field(&mut tensor, 2, &shape);
    put_bytes_field(&mut tensor, 8, text.as_bytes());
    // SummaryMetadata { plugin_data = 1: PluginData { plugin_name = 1: "text" } }
    let mut plugin_data = Vec::new();
    put_bytes_field(&mut plugin_data, 1, b"text");
    let mut metadata = Vec::new();
    put_bytes_field(&mut metadata, 1, &plugin_data);

    let mut out = Vec::with_capacity(tag.len() + tensor.len() + metadata.len() + 8);
    put_bytes_field(&mut out, 1, tag.as_bytes());
    put_bytes_field(&mut out, 8, &tensor);
    put_bytes_field(&mut out, 9, &metadata);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads TFRecords back, checking both CRCs of each, as TensorBoard's reader does.
    fn read_records(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        while !bytes.is_empty() {
            let u32_at =
                |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let length_bytes = &bytes[..8];
            assert_eq!(u32_at(bytes, 8), masked_crc32c(length_bytes), "length CRC");
            let length = u64::from_le_bytes(length_bytes.try_into().unwrap()) as usize;
            let data = &bytes[12..12 + length];
            assert_eq!(u32_at(bytes, 12 + length), masked_crc32c(data), "data CRC");
            records.push(data.to_vec());
            bytes = &bytes[16 + length..];
        }
        records
    }

    #[test]
    fn crc32c_matches_the_standard_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 (iSCSI) appendix B.4.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn masked_crc_matches_tensorboard() {
        // Values of tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c.
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn varints_are_little_endian_base_128() {
        let encode = |v| {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            out
        };
        assert_eq!(encode(0), [0x00]);
        assert_eq!(encode(127), [0x7F]);
        assert_eq!(encode(128), [0x80, 0x01]);
        assert_eq!(encode(300), [0xAC, 0x02]);
        assert_eq!(
            encode(u64::MAX),
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        );
    }

    // The expected bytes are Python protobuf's serialisation of the same messages built with
    // TensorBoard's own `event_pb2`/`summary_pb2`/`tensor_pb2` (wall_time = 1700000000.5).
    #[test]
    fn events_encode_like_protoc() {
        let wall_time = 1_700_000_000.5;
        assert_eq!(
            hex(&file_version_event(wall_time)),
            "0900002040fc54d9411a0d627261696e2e4576656e743a32"
        );
        assert_eq!(
            hex(&summary_event(wall_time, 42, &scalar_value("loss", 0.25))),
            "0900002040fc54d941102a2a0d0a0b0a046c6f7373150000803e"
        );
        assert_eq!(
            hex(&summary_event(wall_time, 7, &text_value("sample", "héllo\nworld"))),
            "0900002040fc54d94110072a2c0a2a0a0673616d706c6542160807120412020801420c68c3a96c6c6f0a77\
             6f726c644a080a060a0474657874"
        );
    }

    #[test]
    fn records_frame_and_parse_back() {
        let payloads: [&[u8]; 3] = [b"", b"brain.Event:2", &[0xAB; 300]];
        let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame_record(p)).collect();
        assert_eq!(bytes.len(), 16 * 3 + 13 + 300);
        assert_eq!(read_records(&bytes), payloads.map(<[u8]>::to_vec));
    }

    #[test]
    fn the_file_starts_with_the_version_and_holds_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let first = TensorBoardSink::create(dir.path().join("run")).unwrap();
        let second = TensorBoardSink::create(dir.path().join("run")).unwrap();
        assert_ne!(
            first.path(),
            second.path(),
            "a second writer gets its own file"
        );
        let name = first
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        first.scalar("loss", 42, 0.25);
        first.text("sample", 7, "héllo\nworld");
        let path = first.path().to_path_buf();
        drop(first);

        let records = read_records(&std::fs::read(&path).unwrap());
        assert_eq!(records.len(), 3);
        assert!(records[0].ends_with(b"\x1a\x0dbrain.Event:2"));
        // Past the 9-byte wall time, each event is exactly what `events_encode_like_protoc` checks.
        assert_eq!(hex(&records[1][9..]), "102a2a0d0a0b0a046c6f7373150000803e");
        assert_eq!(
            records[2][9..],
            summary_event(0.0, 7, &text_value("sample", "héllo\nworld"))[9..]
        );
    }
}
