//! The `Summary.Value`s of TensorBoard's histograms and of its HParams plugin, encoded by hand
//! like the rest of [`super::tensorboard`].
//!
//! - A histogram is the classic `histo = 5: HistogramProto` (min, max, count, sum, sum of
//!   squares, right bucket edges, counts) over equal-width buckets between the smallest and the
//!   largest value, as TensorBoard's own `tf.summary.histogram` buckets them.
//! - The hyperparameters are the HParams plugin's `_hparams_/session_start_info` summary: an
//!   empty float tensor whose metadata names the `hparams` plugin and carries a serialised
//!   `HParamsPluginData { session_start_info: SessionStartInfo { hparams, start_time_secs } }`
//!   (`tensorboard/plugins/hparams/plugin_data.proto`). No `experiment` summary is written: the
//!   HParams tab then builds the experiment from the runs' session infos and scalar tags, so
//!   every scalar can be a metric column without the writer knowing them in advance.

use super::tensorboard::{
    put_bytes_field, put_key, put_varint, put_varint_field, WIRE_FIXED64, WIRE_LEN,
};
use super::HParamValue;

/// Buckets of a histogram (TensorBoard's default for `tf.summary.histogram`).
const HISTOGRAM_BUCKETS: usize = 30;
/// `DataType.DT_FLOAT` in `types.proto`.
const DT_FLOAT: u64 = 1;
/// The summary tag the HParams plugin reads a run's settings from.
const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";

/// A double field, left out when zero as protoc leaves out proto3 defaults.
fn put_double_field(out: &mut Vec<u8>, field: u32, value: f64) {
    if value.to_bits() != 0 {
        put_key(out, field, WIRE_FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// A packed `repeated double`.
fn put_packed_doubles(out: &mut Vec<u8>, field: u32, values: &[f64]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, 8 * values.len() as u64);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// `Summary.Value { tag = 1, histo = 5 }` of the finite `values` (`None` when there is none).
pub(super) fn histogram_value(tag: &str, values: &[f64]) -> Option<Vec<u8>> {
    let histo = histogram_proto(values, HISTOGRAM_BUCKETS)?;
    let mut out = Vec::with_capacity(tag.len() + histo.len() + 8);
    put_bytes_field(&mut out, 1, tag.as_bytes());
    put_bytes_field(&mut out, 5, &histo);
    Some(out)
}

/// `HistogramProto { min = 1, max = 2, num = 3, sum = 4, sum_squares = 5, bucket_limit = 6,
/// bucket = 7 }` over at most `buckets` equal-width buckets; bucket i holds the values in
/// [limit(i−1), limit(i)), the last one also the maximum. Non-finite values are left out: one
/// NaN would make every edge NaN.
fn histogram_proto(values: &[f64], buckets: usize) -> Option<Vec<u8>> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let min = finite.iter().copied().reduce(f64::min)?;
    let max = finite.iter().copied().reduce(f64::max)?;
    let buckets = if max > min { buckets.max(1) } else { 1 };
    let width = (max - min) / buckets as f64;
    let mut counts = vec![0f64; buckets];
    for &v in &finite {
        let index = if width > 0.0 {
            (((v - min) / width) as usize).min(buckets - 1)
        } else {
            0
        };
        counts[index] += 1.0;
    }
    let mut limits: Vec<f64> = (1..buckets).map(|i| min + i as f64 * width).collect();
    limits.push(max);
    let mut out = Vec::with_capacity(48 + 16 * buckets);
    put_double_field(&mut out, 1, min);
    put_double_field(&mut out, 2, max);
    put_double_field(&mut out, 3, finite.len() as f64);
    put_double_field(&mut out, 4, finite.iter().sum());
    put_double_field(&mut out, 5, finite.iter().map(|v| v * v).sum());
    put_packed_doubles(&mut out, 6, &limits);
    put_packed_doubles(&mut out, 7, &counts);
    Some(out)
}

/// `google.protobuf.Value { number_value = 2 | string_value = 3 | bool_value = 4 }`.
fn protobuf_value(value: &HParamValue) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        HParamValue::Number(n) => {
            // A oneof member is written even when zero.
            put_key(&mut out, 2, WIRE_FIXED64);
            out.extend_from_slice(&n.to_le_bytes());
        }
        HParamValue::Text(s) => put_bytes_field(&mut out, 3, s.as_bytes()),
        HParamValue::Bool(b) => put_varint_field(&mut out, 4, u64::from(*b)),
    }
    out
}

/// The HParams plugin's `Summary.Value { tag = 1, tensor = 8, metadata = 9 }` holding
/// `hparams` as the session's start info, started at `start_time_secs`.
pub(super) fn session_start_value(
    hparams: &[(String, HParamValue)],
    start_time_secs: f64,
) -> Vec<u8> {
    // SessionStartInfo { hparams = 1: map<string, Value>, start_time_secs = 5 }
    let mut start_info = Vec::new();
    for (name, value) in hparams {
        let mut entry = Vec::new();
        put_bytes_field(&mut entry, 1, name.as_bytes());
        put_bytes_field(&mut entry, 2, &protobuf_value(value));
        put_bytes_field(&mut start_info, 1, &entry);
    }
    put_double_field(&mut start_info, 5, start_time_secs);
    // HParamsPluginData { version = 1: 0 (omitted), session_start_info = 3 }
    let mut plugin_content = Vec::new();
    put_bytes_field(&mut plugin_content, 3, &start_info);
    // SummaryMetadata { plugin_data = 1: PluginData { plugin_name = 1, content = 2 } }
    let mut plugin_data = Vec::new();
    put_bytes_field(&mut plugin_data, 1, b"hparams");
    put_bytes_field(&mut plugin_data, 2, &plugin_content);
    let mut metadata = Vec::new();
    put_bytes_field(&mut metadata, 1, &plugin_data);
    // TensorProto { dtype = 1: DT_FLOAT, tensor_shape = 2: { dim = 2: [{ size = 0 }] } }: the
    // plugin's empty placeholder tensor.
    let mut shape = Vec::new();
    put_bytes_field(&mut shape, 2, &[]);
    let mut tensor = Vec::new();
    put_varint_field(&mut tensor, 1, DT_FLOAT);
    put_bytes_field(&mut tensor, 2, &shape);

    let mut out = Vec::new();
    put_bytes_field(&mut out, 1, SESSION_START_INFO_TAG.as_bytes());
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

    // The expected bytes are Python protobuf's serialisation of the same messages built with
    // TensorBoard's own `summary_pb2`, `plugin_data_pb2` and `hparams.metadata`.
    #[test]
    fn a_histogram_encodes_like_protoc() {
        let histo = histogram_proto(&[0.0, 1.0, 1.0, 0.5, f64::NAN], 2).unwrap();
        let mut value = Vec::new();
        put_bytes_field(&mut value, 1, b"r");
        put_bytes_field(&mut value, 5, &histo);
        assert_eq!(
            hex(&value),
            "0a01722a4811000000000000f03f19000000000000104021000000000000044029000000000000024032\
             10000000000000e03f000000000000f03f3a10000000000000f03f0000000000000840"
        );
    }

    #[test]
    fn histogram_buckets_cover_every_value_once() {
        let values: Vec<f64> = (0..100).map(|i| (i as f64 * 0.731).sin()).collect();
        let value = histogram_value("x", &values).unwrap();
        // The counts are the last 30 doubles of the message.
        let counts: Vec<f64> = value[value.len() - 8 * HISTOGRAM_BUCKETS..]
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(counts.iter().sum::<f64>(), 100.0);
        assert!(counts[0] > 0.0 && counts[HISTOGRAM_BUCKETS - 1] > 0.0);
        // All equal: one bucket; nothing finite: no histogram.
        assert_eq!(
            histogram_proto(&[2.0; 4], 30).unwrap().len(),
            5 * 9 + 2 * 10
        );
        assert!(histogram_value("x", &[f64::NAN, f64::INFINITY]).is_none());
        assert!(histogram_value("x", &[]).is_none());
    }

    #[test]
    fn the_session_start_info_encodes_like_tensorboard() {
        let hparams = [
            ("lr".to_string(), HParamValue::Number(0.25)),
            ("name".to_string(), HParamValue::Text("x".into())),
            ("flag".to_string(), HParamValue::Bool(true)),
        ];
        assert_eq!(
            hex(&session_start_value(&hparams, 1_700_000_000.5)),
            "0a1c5f68706172616d735f2f73657373696f6e5f73746172745f696e666f42060801120212004a420a40\
             0a0768706172616d7312351a330a0f0a026c72120911000000000000d03f0a0b0a046e616d6512031a01\
             780a0a0a04666c6167120220012900002040fc54d941"
        );
    }
}
