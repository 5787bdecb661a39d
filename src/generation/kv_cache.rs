//! A preallocated, slot-based KV cache.
//!
//! Each layer owns one key and one value tensor `[slots, kv_heads, capacity, head_dim]`, zeroed at
//! allocation. A live sequence owns one slot and keeps its keys/values at cache positions
//! `0..len` of it; new positions are written in place with `slice_set`, so a decode step copies
//! only the new token's keys/values, never the history (no per-step concatenation).
//!
//! The engine keeps the live sequences in slots `0..rows`, so a decode step attends to the view
//! `cache[0..rows, :, 0..S, :]` (S = longest live length + 1) without a copy: on the CPU
//! `fused::decode_attention` reads it in place, and the view has the batch strides matmul accepts
//! elsewhere. Shorter rows see their positions beyond their length masked by the attention bias;
//! those positions hold stale but finite values (zeros at allocation, keys/values of an earlier
//! occupant later), which the masked softmax weighs by an exact 0.

use candle_core::{DType, Device, Tensor};

use crate::model::{KvStore, Qwen2Config};
use crate::{Error, Result};

/// Keys and values of one sequence's first positions, per layer `[1, kv_heads, len, head_dim]`:
/// a prompt's cache, kept while samples of that prompt still wait for a slot.
#[derive(Debug, Clone)]
pub struct PrefixKv {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    len: usize,
}

impl PrefixKv {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The slot-based cache of every layer.
#[derive(Debug)]
pub struct SlotKvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    slots: usize,
    capacity: usize,
    bytes_per_position: usize,
}

impl SlotKvCache {
    /// Bytes of keys and values one position of one sequence takes over all layers.
    pub fn bytes_per_position(config: &Qwen2Config, dtype: DType) -> usize {
        config.num_hidden_layers
            * 2
            * config.num_key_value_heads
            * config.head_dim()
            * dtype.size_in_bytes()
    }

    /// Allocates `slots` sequences of `capacity` positions each, zeroed.
    pub fn new(
        config: &Qwen2Config,
        slots: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (
            slots,
            config.num_key_value_heads,
            capacity,
            config.head_dim(),
        );
        let layers = config.num_hidden_layers;
        let zeros = || Tensor::zeros(shape, dtype, device);
        Ok(Self {
            keys: (0..layers)
                .map(|_| zeros())
                .collect::<candle_core::Result<_>>()?,
            values: (0..layers)
                .map(|_| zeros())
                .collect::<candle_core::Result<_>>()?,
            slots,
            capacity,
            bytes_per_position: Self::bytes_per_position(config, dtype),
        })
    }

    /// Number of slots (sequences held at once).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Positions per slot.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the cache holds.
    pub fn bytes(&self) -> usize {
        self.slots * self.capacity * self.bytes_per_position
    }

    fn check_slot(&self, slot: usize, len: usize, what: &str) -> Result<()> {
        if slot >= self.slots || len > self.capacity {
            return Err(Error::Input(format!(
                "{what}: slot {slot} / {len} positions outside the KV cache ({} slots x {} positions)",
                self.slots, self.capacity
            )));
        }
        Ok(())
    }

    /// Copies positions `0..len` of slot `from` into slot `to`.
    pub fn copy_slot(&self, from: usize, to: usize, len: usize) -> Result<()> {
        self.check_slot(from.max(to), len, "copy_slot")?;
        if from != to && len > 0 {
            self.write_prefix(to, &self.read_prefix(from, len)?)?;
        }
        Ok(())
    }

    /// A copy of positions `0..len` of `slot`.
    pub fn read_prefix(&self, slot: usize, len: usize) -> Result<PrefixKv> {
        self.check_slot(slot, len, "read_prefix")?;
        // A fresh copy even when the view is contiguous (one KV head): it must not share storage.
        let read = |t: &Tensor| -> Result<Tensor> {
            Ok(t.narrow(0, slot, 1)?
                .narrow(2, 0, len)?
                .force_contiguous()?)
        };
        Ok(PrefixKv {
            keys: self.keys.iter().map(read).collect::<Result<_>>()?,
            values: self.values.iter().map(read).collect::<Result<_>>()?,
            len,
        })
    }

    /// Writes `prefix` at positions `0..prefix.len()` of `slot`.
    pub fn write_prefix(&self, slot: usize, prefix: &PrefixKv) -> Result<()> {
        self.check_slot(slot, prefix.len, "write_prefix")?;
        for (cache, part) in self
            .keys
            .iter()
            .zip(&prefix.keys)
            .chain(self.values.iter().zip(&prefix.values))
        {
            cache.narrow(0, slot, 1)?.slice_set(part, 2, 0)?;
        }
        Ok(())
    }

    /// A store for a forward over sequences that start empty in `slots` (one per batch row): it
    /// writes each row's keys/values at positions `0..T` of its slot and lets the queries attend
    /// to the new keys only.
    pub fn fresh<'a>(&'a self, slots: &'a [usize]) -> Result<FreshWriter<'a>> {
        for &slot in slots {
            self.check_slot(slot, 0, "fresh")?;
        }
        Ok(FreshWriter { cache: self, slots })
    }

    /// A store for a forward over the sequences in slots `first..first + offsets.len()`, row r
    /// continuing at position `offsets[r]`: it writes the new keys/values there and returns the
    /// cached ones of positions `0..max(offsets[r] + T)`.
    pub fn append<'a>(&'a self, first: usize, offsets: &'a [usize]) -> Result<AppendWriter<'a>> {
        if first + offsets.len() > self.slots {
            return Err(Error::Input(format!(
                "append: rows {first}..{} outside the KV cache's {} slots",
                first + offsets.len(),
                self.slots
            )));
        }
        Ok(AppendWriter {
            cache: self,
            first,
            offsets,
        })
    }

    fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.keys[layer], &self.values[layer])
    }
}

/// Writes row r of `new` (`[B, kv_heads, T, head_dim]`) at position `offset(r)` of slot `slot(r)`.
fn write_rows(
    cache: &Tensor,
    new: &Tensor,
    capacity: usize,
    slot: impl Fn(usize) -> usize,
    offset: impl Fn(usize) -> usize,
) -> Result<()> {
    let (rows, _, t, _) = new.dims4()?;
    let new = new.contiguous()?;
    for r in 0..rows {
        if offset(r) + t > capacity {
            return Err(Error::Input(format!(
                "KV cache row {r}: positions {}..{} exceed the capacity of {capacity}",
                offset(r),
                offset(r) + t
            )));
        }
        cache
            .narrow(0, slot(r), 1)?
            .slice_set(&new.narrow(0, r, 1)?, 2, offset(r))?;
    }
    Ok(())
}

/// See [`SlotKvCache::fresh`].
pub struct FreshWriter<'a> {
    cache: &'a SlotKvCache,
    slots: &'a [usize],
}

impl KvStore for FreshWriter<'_> {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (keys, values) = self.cache.layer(layer);
        let slots = self.slots;
        if k.dim(0)? != slots.len() {
            return Err(Error::Input(format!(
                "fresh KV write: {} rows of keys for {} slots",
                k.dim(0)?,
                slots.len()
            )));
        }
        let contiguous_run = slots.windows(2).all(|w| w[1] == w[0] + 1);
        for (cache, new) in [(keys, k), (values, v)] {
            if contiguous_run && !slots.is_empty() {
                // One copy for the whole run of slots.
                let t = new.dim(2)?;
                if t > self.cache.capacity {
                    return Err(Error::Input(format!(
                        "prefill of {t} positions exceeds the KV capacity of {}",
                        self.cache.capacity
                    )));
                }
                cache
                    .narrow(0, slots[0], slots.len())?
                    .slice_set(&new.contiguous()?, 2, 0)?;
            } else {
                write_rows(cache, new, self.cache.capacity, |r| slots[r], |_| 0)?;
            }
        }
        Ok((k.clone(), v.clone()))
    }
}

/// See [`SlotKvCache::append`].
pub struct AppendWriter<'a> {
    cache: &'a SlotKvCache,
    first: usize,
    offsets: &'a [usize],
}

impl KvStore for AppendWriter<'_> {
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (keys, values) = self.cache.layer(layer);
        let (rows, t) = (k.dim(0)?, k.dim(2)?);
        if rows != self.offsets.len() {
            return Err(Error::Input(format!(
                "append KV write: {rows} rows of keys for {} offsets",
                self.offsets.len()
            )));
        }
        let first = self.first;
        for (cache, new) in [(keys, k), (values, v)] {
            write_rows(
                cache,
                new,
                self.cache.capacity,
                |r| first + r,
                |r| self.offsets[r],
            )?;
        }
        let span = self.offsets.iter().map(|o| o + t).max().unwrap_or(0);
        let view = |cache: &Tensor| -> Result<Tensor> {
            Ok(cache.narrow(0, first, rows)?.narrow(2, 0, span)?)
        };
        Ok((view(keys)?, view(values)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Qwen2Config {
        let mut c = crate::model::Qwen2Config::from_json(&serde_json::json!({
            "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
            "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true
        }))
        .unwrap();
        c.torch_dtype = None;
        c
    }

    fn ramp(rows: usize, t: usize, start: f32) -> Tensor {
        // [rows, kv_heads = 1, t, head_dim = 4]
        let data: Vec<f32> = (0..rows * t * 4).map(|i| start + i as f32).collect();
        Tensor::from_vec(data, (rows, 1, t, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn appends_write_in_place_and_return_the_history() {
        let cfg = config();
        let cache = SlotKvCache::new(&cfg, 3, 8, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            cache.bytes(),
            3 * 8 * SlotKvCache::bytes_per_position(&cfg, DType::F32)
        );
        assert_eq!(
            SlotKvCache::bytes_per_position(&cfg, DType::F32),
            2 * 2 * 4 * 4
        );
        // Prefill slots 0 and 1 with 3 positions, then append one more to each at different
        // offsets (row 0 is 3 long, row 1 pretends to be 2 long).
        let slots = [0, 1];
        let mut fresh = cache.fresh(&slots).unwrap();
        let k0 = ramp(2, 3, 0.0);
        let (k, _) = fresh.append(0, &k0, &k0).unwrap();
        assert_eq!(k.dims(), &[2, 1, 3, 4]);
        let offsets = [3, 2];
        let mut append = cache.append(0, &offsets).unwrap();
        let k1 = ramp(2, 1, 100.0);
        let (k, v) = append.append(0, &k1, &k1).unwrap();
        assert_eq!(k.dims(), &[2, 1, 4, 4]);
        let k: Vec<Vec<Vec<f32>>> = k.squeeze(1).unwrap().to_vec3().unwrap();
        assert_eq!(k[0][0], vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(k[0][3], vec![100.0, 101.0, 102.0, 103.0]);
        assert_eq!(k[1][1], vec![16.0, 17.0, 18.0, 19.0]);
        assert_eq!(
            k[1][2],
            vec![104.0, 105.0, 106.0, 107.0],
            "row 1 continues at its own offset"
        );
        assert_eq!(v.dims(), &[2, 1, 4, 4]);
        // Layer 1 is untouched.
        let untouched: Vec<f32> = cache.keys[1].flatten_all().unwrap().to_vec1().unwrap();
        assert!(untouched.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn prefixes_copy_between_slots() {
        let cfg = config();
        let cache = SlotKvCache::new(&cfg, 3, 8, DType::F32, &Device::Cpu).unwrap();
        let slots = [2];
        let mut fresh = cache.fresh(&slots).unwrap();
        for layer in 0..2 {
            let k = ramp(1, 5, layer as f32 * 1000.0);
            fresh.append(layer, &k, &k).unwrap();
        }
        cache.copy_slot(2, 0, 4).unwrap();
        for layer in 0..2 {
            let read = |slot: usize, len: usize| -> Vec<f32> {
                cache.keys[layer]
                    .narrow(0, slot, 1)
                    .unwrap()
                    .narrow(2, 0, len)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            assert_eq!(read(0, 4), read(2, 4));
            assert_eq!(read(0, 5)[16..], [0.0; 4], "position 4 was not copied");
        }
        let prefix = cache.read_prefix(2, 5).unwrap();
        assert_eq!(prefix.len(), 5);
        cache.write_prefix(1, &prefix).unwrap();
        assert!(cache.copy_slot(0, 3, 1).is_err());
        assert!(cache.read_prefix(0, 9).is_err());
    }

    #[test]
    fn writes_beyond_the_capacity_are_errors() {
        let cfg = config();
        let cache = SlotKvCache::new(&cfg, 2, 4, DType::F32, &Device::Cpu).unwrap();
        let offsets = [3];
        let mut append = cache.append(1, &offsets).unwrap();
        let k = ramp(1, 2, 0.0);
        let err = append.append(0, &k, &k).unwrap_err().to_string();
        assert!(err.contains("exceed the capacity of 4"), "{err}");
        assert!(cache.append(1, &[0, 0]).is_err());
    }
}
