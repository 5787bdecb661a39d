//! Shared-prefix packing: sequences that start with the same tokens as one row, the prefix once.
//!
//! The completions of a GRPO group share their prompt; the (question, response) pairs a reward
//! model scores for one group share the chat template and the question. Padded rows repeat the
//! prefix's forward (and, training, its backward) once per sequence; with short answers to long
//! prompts that is most of the arithmetic. A packed row is `[prefix | suffix 1 | suffix 2 | …]`
//! with a shared-prefix attention bias: each suffix sees the prefix and its own earlier tokens,
//! never another suffix, and its positions continue from the prefix's end, so every token's
//! hidden state is the one its own padded row would give (up to float rounding). Gradients that
//! reach the prefix are summed over the suffixes, as over the padded rows. Padding goes too:
//! rows pad only to the longest packed row.
//!
//! Attention over the packed length would score `[T, T]` pairs per packed row, most of them
//! masked; where that costs more, the rows are attended sequence by sequence instead
//! (`super::packed_attention`), the same keys for every query.

use candle_core::{DType, Device, Tensor};

use super::packed_attention::{PackedAttention, PrefixSpan, SuffixSpan};
use super::{masked_score, AttentionMask, Qwen2Config, Qwen2Model};
use crate::Result;

/// One packed row: a prefix and the suffixes that follow it.
#[derive(Debug, Clone)]
pub struct SharedPrefixRow<'a> {
    /// The tokens every sequence of the row starts with (at least one).
    pub prefix: &'a [u32],
    /// What follows the prefix in each sequence, in order.
    pub suffixes: Vec<&'a [u32]>,
}

impl SharedPrefixRow<'_> {
    /// Tokens of the packed row: the prefix once plus every suffix.
    pub fn len(&self) -> usize {
        self.prefix.len() + self.suffixes.iter().map(|s| s.len()).sum::<usize>()
    }

    /// Whether the row holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SuffixSpan {
    /// Flat index of the sequence's last token: the suffix's, or the prefix's when it is empty.
    fn last_token(&self) -> usize {
        match self.len {
            0 => self.prefix.line + self.prefix.len - 1,
            len => self.prefix.line + self.start + len - 1,
        }
    }
}

/// The `[G, 1, T, T]` (f32) shared-prefix bias: a prefix token sees the prefix up to itself, a
/// suffix token the prefix and its own suffix up to itself.
fn dense_bias(
    prefixes: &[PrefixSpan],
    suffixes: &[SuffixSpan],
    t: usize,
    device: &Device,
) -> Result<Tensor> {
    // f16's most negative value: finite in every compute dtype the bias is cast to (f32's
    // would become -inf in f16), and still exp() = 0 against real scores.
    let mut bias = vec![masked_score(DType::F16); prefixes.len() * t * t];
    let mut allow = |q: usize, keys: std::ops::Range<usize>| {
        bias[q * t + keys.start..q * t + keys.end].fill(0.0);
    };
    for p in prefixes {
        for q in 0..t {
            // Padding queries see the first token only, so their softmax stays well defined.
            allow(p.line + q, 0..if q < p.len { q + 1 } else { 1 });
        }
    }
    for s in suffixes {
        for j in 0..s.len {
            let q = s.start + j;
            allow(s.prefix.line + q, 0..s.prefix.len);
            allow(s.prefix.line + q, s.start..q + 1);
        }
    }
    Ok(Tensor::from_vec(bias, (prefixes.len(), 1, t, t), device)?)
}

/// The forward inputs of packed rows, and where each sequence's hidden states lie in the output.
#[derive(Debug, Clone)]
pub struct SharedPrefixBatch {
    /// `[G, T]` token ids (pad 0).
    pub input_ids: Tensor,
    /// `[G, T]` (u32): prefix positions from 0, each suffix's continuing from the prefix's end.
    pub positions: Tensor,
    /// The shared-prefix mask: a dense `[G, 1, T, T]` (f32) bias, or the rows' sequences
    /// attended one by one, whichever scores fewer query–key pairs.
    pub mask: AttentionMask,
    spans: Vec<SuffixSpan>,
}

impl SharedPrefixBatch {
    /// Packs `rows`, each padded to the longest (an empty prefix is an input error).
    pub fn new(rows: &[SharedPrefixRow], device: &Device) -> Result<Self> {
        Self::build(rows, None, device)
    }

    /// [`Self::new`] with the attention chosen: dense over the packed rows (`false`) or sequence
    /// by sequence (`true`).
    pub fn with_attention(
        rows: &[SharedPrefixRow],
        per_sequence: bool,
        device: &Device,
    ) -> Result<Self> {
        Self::build(rows, Some(per_sequence), device)
    }

    fn build(
        rows: &[SharedPrefixRow],
        per_sequence: Option<bool>,
        device: &Device,
    ) -> Result<Self> {
        let g = rows.len();
        let t = rows.iter().map(SharedPrefixRow::len).max().unwrap_or(0);
        let mut ids = vec![0u32; g * t];
        let mut positions = vec![0u32; g * t];
        let mut prefixes = Vec::with_capacity(g);
        let mut spans = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let p = row.prefix.len();
            if p == 0 {
                return Err(crate::Error::Input(format!(
                    "packed row {r} has an empty shared prefix"
                )));
            }
            let line = r * t;
            ids[line..line + p].copy_from_slice(row.prefix);
            for q in 0..p {
                positions[line + q] = q as u32;
            }
            let prefix = PrefixSpan { line, len: p };
            prefixes.push(prefix);
            let mut start = p;
            for suffix in &row.suffixes {
                let len = suffix.len();
                ids[line + start..line + start + len].copy_from_slice(suffix);
                for j in 0..len {
                    positions[line + start + j] = (p + j) as u32;
                }
                spans.push(SuffixSpan { prefix, start, len });
                start += len;
            }
        }
        // The gathers and scatters cost a little: sequence by sequence must score clearly fewer
        // pairs to pay.
        let fewer = 4 * PackedAttention::pairs(&prefixes, &spans) < 3 * g * t * t;
        let mask = if per_sequence.unwrap_or(fewer) {
            AttentionMask::Packed(PackedAttention::new(&prefixes, &spans, t, device)?)
        } else {
            AttentionMask::Bias(dense_bias(&prefixes, &spans, t, device)?)
        };
        Ok(Self {
            input_ids: Tensor::from_vec(ids, (g, t), device)?,
            positions: Tensor::from_vec(positions, (g, t), device)?,
            mask,
            spans,
        })
    }

    /// Final-norm hidden states `[G, T, hidden]` of the packed rows under `backbone`.
    pub fn forward(&self, backbone: &Qwen2Model) -> Result<Tensor> {
        backbone.forward_with(&self.input_ids, &self.positions, &self.mask, None)
    }

    /// `[n · (width + 1)]` (u32) flat indices into the `[G · T]` hidden states: entry `(i, j)` is
    /// the state that predicts token j of suffix i (the prefix's last for j = 0), as a padded row
    /// `[prefix | suffix]` narrowed at the prefix's last column would give. Entries past a
    /// suffix's end repeat its last state.
    pub fn predicting_indices(&self, width: usize) -> Result<Tensor> {
        let mut indices = Vec::with_capacity(self.spans.len() * (width + 1));
        for s in &self.spans {
            indices.extend((0..=width).map(|j| match j {
                0 => s.prefix.line + s.prefix.len - 1,
                j if j <= s.len => s.prefix.line + s.start + j - 1,
                _ => s.last_token(),
            } as u32));
        }
        let n = indices.len();
        Ok(Tensor::from_vec(indices, n, self.input_ids.device())?)
    }

    /// `[n]` (u32) flat indices of each sequence's last token (the prefix's last for an empty
    /// suffix) into the `[G · T]` hidden states.
    pub fn last_token_indices(&self) -> Result<Tensor> {
        let indices: Vec<u32> = self.spans.iter().map(|s| s.last_token() as u32).collect();
        let n = indices.len();
        Ok(Tensor::from_vec(indices, n, self.input_ids.device())?)
    }
}

/// Whether one packed row of `packed_len` tokens is the cheaper forward of `rows` sequences of
/// `cfg`'s shape that padded would take `width` tokens each: fewer multiply-adds (projections
/// and MLP per token, attention per query–key pair), with attention scores no larger than the
/// padded rows' or 64 MiB of f32, whichever is more.
pub fn packing_pays(cfg: &Qwen2Config, rows: usize, width: usize, packed_len: usize) -> bool {
    let (d, i) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let kv = (cfg.num_key_value_heads * cfg.head_dim()) as f64;
    let per_token = 2.0 * d * d + 2.0 * d * kv + 3.0 * d * i;
    let per_pair = 2.0 * (cfg.num_attention_heads * cfg.head_dim()) as f64;
    let cost = |tokens: f64, pairs: f64| tokens * per_token + pairs * per_pair;
    let (n, w, t) = (rows as f64, width as f64, packed_len as f64);
    let score_budget = (n * w * w).max((64 << 20) as f64 / 4.0 / cfg.num_attention_heads as f64);
    cost(t, t * t) < cost(n * w, n * w * w) && t * t <= score_budget
}

/// Tokens every one of `sequences` starts with.
pub fn common_prefix_len(sequences: &[&[u32]]) -> usize {
    let Some((first, rest)) = sequences.split_first() else {
        return 0;
    };
    rest.iter().fold(first.len(), |common, s| {
        common.min(
            first
                .iter()
                .zip(s.iter())
                .take_while(|(a, b)| a == b)
                .count(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_positions_mask_and_indices() {
        let prefix = [5u32, 6, 7];
        let (a, b, empty) = ([8u32, 9], [10u32], []);
        let rows = [SharedPrefixRow {
            prefix: &prefix,
            suffixes: vec![&a, &b, &empty],
        }];
        let packed = SharedPrefixBatch::with_attention(&rows, false, &Device::Cpu).unwrap();
        let AttentionMask::Bias(bias) = &packed.mask else {
            panic!("asked for the dense bias")
        };
        assert_eq!(
            packed.input_ids.to_vec2::<u32>().unwrap(),
            [[5, 6, 7, 8, 9, 10]]
        );
        assert_eq!(
            packed.positions.to_vec2::<u32>().unwrap(),
            [[0, 1, 2, 3, 4, 3]]
        );
        let seen: Vec<Vec<u8>> = bias
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
            .iter()
            .map(|row| row.iter().map(|&b| u8::from(b == 0.0)).collect())
            .collect();
        assert_eq!(
            seen,
            [
                [1, 0, 0, 0, 0, 0],
                [1, 1, 0, 0, 0, 0],
                [1, 1, 1, 0, 0, 0],
                [1, 1, 1, 1, 0, 0],
                [1, 1, 1, 1, 1, 0],
                // The second suffix does not see the first.
                [1, 1, 1, 0, 0, 1],
            ]
        );
        // a: prefix end, its own tokens; b: prefix end, itself, then its last again; the empty
        // suffix: the prefix's last throughout.
        assert_eq!(
            packed
                .predicting_indices(2)
                .unwrap()
                .to_vec1::<u32>()
                .unwrap(),
            [2, 3, 4, 2, 5, 5, 2, 2, 2]
        );
        assert_eq!(
            packed
                .last_token_indices()
                .unwrap()
                .to_vec1::<u32>()
                .unwrap(),
            [4, 5, 2]
        );
    }

    fn tiny_config() -> Qwen2Config {
        Qwen2Config {
            vocab_size: 64,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 64,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: true,
            torch_dtype: None,
            bos_token_id: None,
            eos_token_ids: vec![],
            pad_token_id: None,
            architecture: None,
            num_labels: None,
        }
    }

    /// Each sequence's last hidden state, packed and as right-padded rows, in every compute
    /// dtype: the bias must stay finite where it is cast.
    #[test]
    fn packed_hidden_states_match_padded_rows_in_every_dtype() {
        let prefix = [3u32, 4, 5, 6, 7];
        let suffixes: [&[u32]; 3] = [&[8, 9], &[10], &[11, 12, 13]];
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 2e-2), (DType::BF16, 1e-1)] {
            let policy = crate::Policy::random(
                &tiny_config(),
                0,
                &Device::Cpu,
                dtype,
                crate::model::Trainable::No,
            )
            .unwrap();
            let backbone = policy.model().backbone();
            let packed = SharedPrefixBatch::new(
                &[SharedPrefixRow {
                    prefix: &prefix,
                    suffixes: suffixes.to_vec(),
                }],
                &Device::Cpu,
            )
            .unwrap();
            let hidden = packed.forward(backbone).unwrap();
            let (g, t, d) = hidden.dims3().unwrap();
            let last = hidden
                .reshape((g * t, d))
                .unwrap()
                .index_select(&packed.last_token_indices().unwrap(), 0)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (i, suffix) in suffixes.iter().enumerate() {
                let ids: Vec<u32> = prefix.iter().chain(suffix.iter()).copied().collect();
                let n = ids.len();
                let row = backbone
                    .forward(
                        &Tensor::from_vec(ids.clone(), (1, n), &Device::Cpu).unwrap(),
                        &Tensor::ones((1, n), DType::U32, &Device::Cpu).unwrap(),
                    )
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .squeeze(0)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                for (a, b) in last[i].iter().zip(&row[n - 1]) {
                    assert!(
                        a.is_finite() && (a - b).abs() < tol,
                        "{dtype:?} {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// Rows of different prefix and suffix lengths (an empty suffix, a row without suffixes, a
    /// padded row) attended sequence by sequence: the same hidden states as under the dense
    /// bias and, training in f32 (the fused kernels) and bf16 (candle's ops), the same gradients.
    #[test]
    fn per_sequence_attention_matches_the_dense_bias_in_value_and_gradient() {
        let (p1, p2, p3) = ([3u32, 4, 5, 6, 7], [8u32, 9], [10u32, 11, 12]);
        let rows = [
            SharedPrefixRow {
                prefix: &p1,
                suffixes: vec![&[13, 14], &[15], &[16, 17, 18, 19]],
            },
            SharedPrefixRow {
                prefix: &p2,
                suffixes: vec![&[], &[20, 21, 22], &[23]],
            },
            SharedPrefixRow {
                prefix: &p3,
                suffixes: vec![],
            },
        ];
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 5e-2)] {
            let policy = crate::Policy::random(
                &tiny_config(),
                1,
                &Device::Cpu,
                dtype,
                crate::model::Trainable::Yes,
            )
            .unwrap();
            let backbone = policy.model().backbone();
            let run = |per_sequence: bool| {
                let packed =
                    SharedPrefixBatch::with_attention(&rows, per_sequence, &Device::Cpu).unwrap();
                assert_eq!(
                    matches!(packed.mask, AttentionMask::Packed(_)),
                    per_sequence
                );
                let hidden = packed.forward(backbone).unwrap();
                let (g, t, d) = hidden.dims3().unwrap();
                // Real tokens only: padding positions are nobody's output.
                let real: Vec<u32> = (0..g * t)
                    .filter(|&i| (i % t) < rows[i / t].len())
                    .map(|i| i as u32)
                    .collect();
                let n = real.len();
                let real = hidden
                    .reshape((g * t, d))
                    .unwrap()
                    .index_select(&Tensor::from_vec(real, n, &Device::Cpu).unwrap(), 0)
                    .unwrap();
                let weights = Tensor::arange(0f32, (n * d) as f32, &Device::Cpu)
                    .unwrap()
                    .reshape((n, d))
                    .unwrap()
                    .sin()
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let loss = (&real * weights).unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                let flat = |t: &Tensor| -> Vec<f32> {
                    t.to_dtype(DType::F32)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                };
                let grads: Vec<Vec<f32>> = policy
                    .vars()
                    .iter()
                    .map(|(name, v)| match grads.get(v.as_tensor()) {
                        Some(g) => flat(g),
                        None => panic!("{name} got no gradient"),
                    })
                    .collect();
                (flat(&real), grads)
            };
            let (dense_hidden, dense_grads) = run(false);
            let (hidden, grads) = run(true);
            let close = |a: &[f32], b: &[f32], what: &str| {
                let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= tol * scale, "{dtype:?} {what}: {x} vs {y}");
                }
            };
            close(&hidden, &dense_hidden, "hidden state");
            assert_eq!(grads.len(), dense_grads.len());
            for (a, b) in grads.iter().zip(&dense_grads) {
                close(a, b, "gradient");
            }
        }
    }

    #[test]
    fn per_sequence_attention_is_chosen_where_it_scores_fewer_pairs() {
        let prompt = [1u32; 60];
        let short = [2u32; 30];
        let rows = [SharedPrefixRow {
            prefix: &prompt,
            suffixes: vec![&short; 8],
        }];
        let packed = SharedPrefixBatch::new(&rows, &Device::Cpu).unwrap();
        assert!(matches!(packed.mask, AttentionMask::Packed(_)));
        // One long suffix pads every block to its length: the dense bias is cheaper.
        let long = [3u32; 400];
        let mut suffixes: Vec<&[u32]> = vec![&short; 7];
        suffixes.push(&long);
        let rows = [SharedPrefixRow {
            prefix: &prompt,
            suffixes,
        }];
        let packed = SharedPrefixBatch::new(&rows, &Device::Cpu).unwrap();
        assert!(matches!(packed.mask, AttentionMask::Bias(_)));
    }

    #[test]
    fn common_prefix() {
        assert_eq!(common_prefix_len(&[]), 0);
        assert_eq!(common_prefix_len(&[&[1, 2, 3]]), 3);
        assert_eq!(common_prefix_len(&[&[1, 2, 3], &[1, 2, 4], &[1, 2]]), 2);
        assert_eq!(common_prefix_len(&[&[1, 2], &[3]]), 0);
    }
}
