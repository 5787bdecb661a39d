//! Attention of shared-prefix packed rows, sequence by sequence.
//!
//! Under the dense `[T, T]` mask of a packed row `[prefix | suffix 1 | … | suffix n]`
//! (`super::shared_prefix`) most scores are computed only to be masked: a suffix sees the prefix
//! and itself, never another suffix. Here the prefix's queries attend to the prefix (`[P, P]`) and
//! each suffix's queries to its prefix and its own tokens (`[L, P + L]`): keys, values and queries
//! are gathered out of the packed rows into small dense blocks (padded to the longest prefix and
//! the longest suffix), attended there, and the outputs scattered back into packed order. With 8
//! suffixes of about 30 tokens after a 60-token prompt that is under a third of the dense
//! scores, in the forward and in the backward. Every query sees the same keys as under the dense mask, so
//! the hidden states agree up to float rounding; gradients flow back through the gathers.

use candle_core::{DType, Device, Tensor};

use super::layers::RopeTables;
use super::masked_score;
use crate::Result;

/// A packed row's prefix: where the row starts (flat index `row · T`) and the prefix's length.
#[derive(Debug, Clone, Copy)]
pub(super) struct PrefixSpan {
    pub line: usize,
    pub len: usize,
}

/// A suffix: its row's prefix, where it starts in the row and its length.
#[derive(Debug, Clone, Copy)]
pub(super) struct SuffixSpan {
    pub prefix: PrefixSpan,
    pub start: usize,
    pub len: usize,
}

/// The gather/scatter layout of packed rows attended sequence by sequence.
#[derive(Debug, Clone)]
pub struct PackedAttention {
    prefixes: Blocks,
    /// `None` when every suffix is empty.
    suffixes: Option<Blocks>,
    /// `[G · T]` (u32): each packed token's row in `[prefix outputs; suffix outputs]`.
    scatter: Tensor,
}

/// Sequences gathered into `rows` blocks of `keys` keys, of which the last `queries` are also
/// the queries.
#[derive(Debug, Clone)]
struct Blocks {
    rows: usize,
    queries: usize,
    keys: usize,
    /// `[rows · keys]` (u32) flat packed index of each key (padding: the row's first token).
    key_index: Tensor,
    /// `[rows · queries]` (u32) flat packed index of each query.
    query_index: Tensor,
    /// `[rows, 1, queries, keys]` (f32) additive bias: 0 where the query sees the key.
    bias: Tensor,
}

impl Blocks {
    /// Blocks of `keys` keys and `queries` queries per row: `key(row, j)` is the packed index of
    /// key j (`None`: padding) and `sees(i, j)` whether query i (key `keys - queries + i`)
    /// sees key j. A padding query sees key 0 only, so that its softmax stays defined.
    fn new(
        rows: usize,
        queries: usize,
        keys: usize,
        key: impl Fn(usize, usize) -> Option<usize>,
        sees: impl Fn(usize, usize) -> bool,
        device: &Device,
    ) -> Result<Self> {
        let mut key_index = vec![0u32; rows * keys];
        let mut query_index = vec![0u32; rows * queries];
        let mut bias = vec![masked_score(DType::F16); rows * queries * keys];
        for r in 0..rows {
            let first = key(r, 0).unwrap_or(0);
            for j in 0..keys {
                key_index[r * keys + j] = key(r, j).unwrap_or(first) as u32;
            }
            for i in 0..queries {
                let q = keys - queries + i;
                query_index[r * queries + i] = key_index[r * keys + q];
                let line = &mut bias[(r * queries + i) * keys..][..keys];
                if key(r, q).is_none() {
                    line[0] = 0.0;
                    continue;
                }
                for (j, b) in line.iter_mut().enumerate() {
                    if key(r, j).is_some() && sees(i, j) {
                        *b = 0.0;
                    }
                }
            }
        }
        Ok(Self {
            rows,
            queries,
            keys,
            key_index: Tensor::from_vec(key_index, rows * keys, device)?,
            query_index: Tensor::from_vec(query_index, rows * queries, device)?,
            bias: Tensor::from_vec(bias, (rows, 1, queries, keys), device)?,
        })
    }
}

impl PackedAttention {
    /// The layout of `prefixes` (one per packed row of `width` tokens) and their `suffixes`.
    pub(super) fn new(
        prefixes: &[PrefixSpan],
        suffixes: &[SuffixSpan],
        width: usize,
        device: &Device,
    ) -> Result<Self> {
        let p = prefixes.iter().map(|s| s.len).max().unwrap_or(0);
        let prefix_blocks = Blocks::new(
            prefixes.len(),
            p,
            p,
            |r, j| (j < prefixes[r].len).then(|| prefixes[r].line + j),
            |i, j| j <= i,
            device,
        )?;
        let l = suffixes.iter().map(|s| s.len).max().unwrap_or(0);
        let suffix_blocks = (l > 0)
            .then(|| {
                Blocks::new(
                    suffixes.len(),
                    l,
                    p + l,
                    |r, j| {
                        let s = &suffixes[r];
                        match j.checked_sub(p) {
                            None => (j < s.prefix.len).then(|| s.prefix.line + j),
                            Some(i) => (i < s.len).then(|| s.prefix.line + s.start + i),
                        }
                    },
                    |i, j| j < p || j - p <= i,
                    device,
                )
            })
            .transpose()?;
        let mut scatter = vec![0u32; prefixes.len() * width];
        for (r, s) in prefixes.iter().enumerate() {
            for j in 0..width {
                // Padding tokens take the row's first output: finite, and seen by no one.
                scatter[s.line + j] = (r * p + if j < s.len { j } else { 0 }) as u32;
            }
        }
        for (n, s) in suffixes.iter().enumerate() {
            for i in 0..s.len {
                scatter[s.prefix.line + s.start + i] = (prefixes.len() * p + n * l + i) as u32;
            }
        }
        let n = scatter.len();
        Ok(Self {
            prefixes: prefix_blocks,
            suffixes: suffix_blocks,
            scatter: Tensor::from_vec(scatter, n, device)?,
        })
    }

    /// Query–key pairs the layout of `prefixes` and `suffixes` would score (the blocks padded to
    /// the longest prefix and suffix), against `G · T²` for the dense mask; without building it.
    pub(super) fn pairs(prefixes: &[PrefixSpan], suffixes: &[SuffixSpan]) -> usize {
        let p = prefixes.iter().map(|s| s.len).max().unwrap_or(0);
        let l = suffixes.iter().map(|s| s.len).max().unwrap_or(0);
        prefixes.len() * p * p + suffixes.len() * l * (p + l)
    }

    /// The blocks' rotary tables (from the packed `positions` `[G, T]`) and biases in `dtype`.
    pub(super) fn inputs(
        &self,
        positions: &Tensor,
        rope: impl Fn(&Tensor) -> Result<RopeTables>,
        dtype: DType,
    ) -> Result<PackedAttentionInputs> {
        let positions = positions.flatten_all()?;
        let prepare = |b: &Blocks| -> Result<BlockInputs> {
            let gather = |index: &Tensor, len: usize| -> Result<Tensor> {
                Ok(positions.index_select(index, 0)?.reshape((b.rows, len))?)
            };
            Ok(BlockInputs {
                blocks: b.clone(),
                query_rope: rope(&gather(&b.query_index, b.queries)?)?,
                key_rope: rope(&gather(&b.key_index, b.keys)?)?,
                bias: b.bias.to_dtype(dtype)?,
            })
        };
        Ok(PackedAttentionInputs {
            prefixes: prepare(&self.prefixes)?,
            suffixes: self.suffixes.as_ref().map(prepare).transpose()?,
            scatter: self.scatter.clone(),
        })
    }
}

/// [`PackedAttention`] ready for a forward: rotary tables and biases in the model's dtype.
#[derive(Debug, Clone)]
pub struct PackedAttentionInputs {
    prefixes: BlockInputs,
    suffixes: Option<BlockInputs>,
    scatter: Tensor,
}

#[derive(Debug, Clone)]
struct BlockInputs {
    blocks: Blocks,
    query_rope: RopeTables,
    key_rope: RopeTables,
    bias: Tensor,
}

impl PackedAttentionInputs {
    /// The attention output `[G, T, H · D]` of the packed rows' projections `q` `[G, T, H · D]`
    /// and `k`, `v` `[G, T, KVH · D]`, block by block under `dense`: dense attention of queries
    /// `[R, Lq, H, D]` over keys and values `[R, S, KVH, D]` (before rotation), given their
    /// rotary tables and the bias `[R, 1, Lq, S]`, giving `[R, Lq, H · D]`.
    pub(super) fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        head_dim: usize,
        dense: impl Fn(&Tensor, &Tensor, &Tensor, [&RopeTables; 2], &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let (g, t, hd) = q.dims3()?;
        let flat = |x: &Tensor| x.reshape((g * t, x.dim(2)?));
        let (q, k, v) = (flat(q)?, flat(k)?, flat(v)?);
        let gather = |x: &Tensor, index: &Tensor, rows: usize, len: usize| -> Result<Tensor> {
            let heads = x.dim(1)? / head_dim;
            Ok(x.index_select(index, 0)?
                .reshape((rows, len, heads, head_dim))?)
        };
        let mut outputs = Vec::with_capacity(2);
        for b in std::iter::once(&self.prefixes).chain(&self.suffixes) {
            let x = &b.blocks;
            let out = dense(
                &gather(&q, &x.query_index, x.rows, x.queries)?,
                &gather(&k, &x.key_index, x.rows, x.keys)?,
                &gather(&v, &x.key_index, x.rows, x.keys)?,
                [&b.query_rope, &b.key_rope],
                &b.bias,
            )?;
            outputs.push(out.reshape((x.rows * x.queries, hd))?);
        }
        Ok(Tensor::cat(&outputs, 0)?
            .index_select(&self.scatter, 0)?
            .reshape((g, t, hd))?)
    }
}
