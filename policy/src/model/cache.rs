//! The key/value cache of batched sampling: preallocated per layer, filled in place.
//!
//! Rows are left-padded: every row's tokens end at the same slot, so one length (`len`)
//! describes the whole batch and a decoding step writes one slot for every row. A row may
//! start from keys and values computed by an earlier call ([`KvCache::place`]): its prompt's
//! new tokens are then fewer than the longest row's, and the block appended for them is
//! ragged ([`KvCache::skip_next`]).

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Keys and values of every layer, one buffer per layer of shape `(2, B, kv_heads, capacity,
/// head_dim)`: keys at index 0, values at 1 (one tensor, so the decoding kernels write both in
/// one in-place op).
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    layers: Vec<Option<Tensor>>,
    len: usize,
    capacity: usize,
    /// Per row, how many leading positions of the next appended block are not written: a
    /// row whose new tokens are fewer than the block is wide already holds cached tokens in
    /// those slots (see [`KvCache::skip_next`]). Cleared by [`KvCache::advance`].
    skip: Option<Vec<usize>>,
}

impl KvCache {
    pub(crate) fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            capacity,
            skip: None,
        }
    }

    /// Tokens already cached (the same for every row: rows are left-padded).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Starts the batch at `len` cached slots, for rows placed with [`KvCache::place`].
    pub(crate) fn start_at(&mut self, len: usize) -> Result<()> {
        if len > self.capacity {
            return Err(Error::InvalidInput(format!(
                "kv cache of capacity {} cannot start at {len} tokens",
                self.capacity
            )));
        }
        self.len = len;
        Ok(())
    }

    /// The next [`KvCache::append`] leaves the first `skip[r]` positions of row `r`'s block
    /// unwritten (their queries are padding: those slots hold the row's cached tokens).
    pub(crate) fn skip_next(&mut self, skip: Vec<usize>) {
        self.skip = skip.iter().any(|&s| s > 0).then_some(skip);
    }

    /// Writes `k`, `v` of shape `(B, kv_heads, T, hd)` after the cached tokens and returns
    /// views over everything cached so far, including them.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        if self.len + t > self.capacity {
            return Err(Error::InvalidInput(format!(
                "kv cache overflow: {} cached + {t} new tokens exceed its capacity of {}",
                self.len, self.capacity
            )));
        }
        let (b, h, _, d) = k.dims4()?;
        let buf = self.buffer(layer, b, (h, d), k.dtype(), k.device())?;
        let (k_buf, v_buf) = (buf.get(0)?, buf.get(1)?);
        match &self.skip {
            None => {
                k_buf.slice_set(&k.contiguous()?, 2, self.len)?;
                v_buf.slice_set(&v.contiguous()?, 2, self.len)?;
            }
            Some(skip) => {
                if skip.len() != b {
                    return Err(Error::InvalidInput(format!(
                        "kv cache: {} row skips for a batch of {b}",
                        skip.len()
                    )));
                }
                for (r, &s) in skip.iter().enumerate().filter(|&(_, &s)| s < t) {
                    let at = self.len + s;
                    k_buf.get(r)?.slice_set(
                        &k.get(r)?.narrow(1, s, t - s)?.contiguous()?,
                        1,
                        at,
                    )?;
                    v_buf.get(r)?.slice_set(
                        &v.get(r)?.narrow(1, s, t - s)?.contiguous()?,
                        1,
                        at,
                    )?;
                }
            }
        }
        Ok((
            k_buf.narrow(2, 0, self.len + t)?,
            v_buf.narrow(2, 0, self.len + t)?,
        ))
    }

    /// The layer's buffer `(2, B, kv_heads, capacity, head_dim)` of `dtype` (the compute
    /// dtype: bf16 halves the cache), allocated on first use.
    pub(crate) fn buffer(
        &mut self,
        layer: usize,
        batch: usize,
        (kv_heads, head_dim): (usize, usize),
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let capacity = self.capacity;
        let entry = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidInput(format!("kv cache has no layer {layer}")))?;
        match entry {
            Some(buf) if buf.dtype() == dtype => Ok(buf.clone()),
            Some(buf) => Err(Error::InvalidInput(format!(
                "kv cache layer {layer} holds {:?}, this pass computes in {dtype:?}",
                buf.dtype()
            ))),
            None => {
                let buf = Tensor::zeros((2, batch, kv_heads, capacity, head_dim), dtype, device)?;
                *entry = Some(buf.clone());
                Ok(buf)
            }
        }
    }

    /// Copies one row's cached keys and values of `layer`, `kv` of shape `(2, kv_heads, n,
    /// head_dim)`, into slots `slot .. slot + n` of row `row` in a batch of `batch` rows.
    pub(crate) fn place(
        &mut self,
        layer: usize,
        (row, batch): (usize, usize),
        slot: usize,
        kv: &Tensor,
    ) -> Result<()> {
        let (two, h, n, d) = kv.dims4()?;
        if two != 2 || slot + n > self.capacity {
            return Err(Error::InvalidInput(format!(
                "kv cache: cannot place {:?} at slot {slot} of a cache of capacity {}",
                kv.dims(),
                self.capacity
            )));
        }
        let buf = self.buffer(layer, batch, (h, d), kv.dtype(), kv.device())?;
        for half in 0..2 {
            buf.get(half)?
                .get(row)?
                .slice_set(&kv.get(half)?.contiguous()?, 1, slot)?;
        }
        Ok(())
    }

    /// A copy of row `row`'s slots `start .. len` in every layer, each `(2, kv_heads, len -
    /// start, head_dim)`: what that row's sequence leaves for a later call. A copy, so that
    /// the batch's buffers are freed with the batch.
    pub(crate) fn extract(&self, row: usize, start: usize) -> Result<Vec<Tensor>> {
        let n = self.len.checked_sub(start).ok_or_else(|| {
            Error::InvalidInput(format!(
                "kv cache: row {row} starts at slot {start}, after the {} cached",
                self.len
            ))
        })?;
        self.layers
            .iter()
            .enumerate()
            .map(|(i, buf)| {
                let buf = buf.as_ref().ok_or_else(|| {
                    Error::InvalidInput(format!("kv cache layer {i} was never written"))
                })?;
                Ok(buf
                    .narrow(1, row, 1)?
                    .narrow(3, start, n)?
                    .force_contiguous()?
                    .squeeze(1)?)
            })
            .collect()
    }

    /// Room left for new tokens.
    pub(crate) fn free(&self) -> usize {
        self.capacity - self.len
    }

    /// Marks `t` more tokens as cached (after every layer appended them).
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
        self.skip = None;
    }

    /// Keeps only the given batch rows, in that order.
    pub(crate) fn retain_rows(&mut self, rows: &Tensor) -> Result<()> {
        for buf in self.layers.iter_mut().flatten() {
            *buf = buf.index_select(rows, 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: (usize, usize, usize, usize), from: f32) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let values: Vec<f32> = (0..n)
            .map(|i| from + f32::from(u16::try_from(i).unwrap()))
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn placed_rows_and_a_ragged_block_read_back_as_one_sequence_per_row() {
        // Two rows, 1 KV head of width 2. Row 0 brings 3 cached tokens and 1 new; row 1
        // brings none and 2 new (1 slot of left padding). The block is 2 wide.
        let mut cache = KvCache::new(1, 6);
        let cached = ramp((2, 1, 3, 2), 100.0);
        cache.place(0, (0, 2), 0, &cached).unwrap();
        cache.start_at(2).unwrap();
        cache.skip_next(vec![1, 0]);
        let k = ramp((2, 1, 2, 2), 0.0);
        let v = ramp((2, 1, 2, 2), 50.0);
        let (keys, _) = cache.append(0, &k, &v).unwrap();
        cache.advance(2);
        assert_eq!(keys.dims(), [2, 1, 4, 2]);
        // Row 0: its 3 cached tokens, then the last position of its block (not the first,
        // which is padding and must not overwrite cached token 2).
        let row0 = cache.extract(0, 0).unwrap().remove(0);
        let want_k0: Vec<f32> = [100., 101., 102., 103., 104., 105., 2., 3.].to_vec();
        let got: Vec<f32> = row0
            .get(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got, want_k0);
        // Row 1: slot 2 onwards holds both block positions.
        let row1 = cache.extract(1, 2).unwrap().remove(0);
        let got: Vec<f32> = row1
            .get(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got, [54., 55., 56., 57.]);
        // The skip applied to one append only.
        assert!(cache.skip.is_none());
    }

    #[test]
    fn bad_placements_and_starts_are_errors() {
        let mut cache = KvCache::new(1, 4);
        assert!(cache.place(0, (0, 1), 2, &ramp((2, 1, 3, 2), 0.0)).is_err());
        assert!(cache.place(0, (0, 1), 0, &ramp((1, 1, 3, 2), 0.0)).is_err());
        assert!(cache.start_at(5).is_err());
        assert!(cache.extract(0, 0).is_err(), "nothing was written");
    }
}
