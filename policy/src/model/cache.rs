//! The key/value cache of batched sampling: preallocated per layer, filled in place.

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
}

impl KvCache {
    pub(crate) fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            capacity,
        }
    }

    /// Tokens already cached (the same for every row: rows are left-padded).
    pub(crate) fn len(&self) -> usize {
        self.len
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
        k_buf.slice_set(&k.contiguous()?, 2, self.len)?;
        v_buf.slice_set(&v.contiguous()?, 2, self.len)?;
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

    /// Room left for new tokens.
    pub(crate) fn free(&self) -> usize {
        self.capacity - self.len
    }

    /// Marks `t` more tokens as cached (after every layer appended them).
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Keeps only the given batch rows, in that order.
    pub(crate) fn retain_rows(&mut self, rows: &Tensor) -> Result<()> {
        for buf in self.layers.iter_mut().flatten() {
            *buf = buf.index_select(rows, 1)?;
        }
        Ok(())
    }
}
