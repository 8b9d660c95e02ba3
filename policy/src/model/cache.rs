//! The key/value cache of batched sampling: preallocated per layer, filled in place.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
}

/// Keys and values of every layer, shape `(B, kv_heads, capacity, head_dim)` each.
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub(crate) fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); num_layers],
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
        let entry = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidInput(format!("kv cache has no layer {layer}")))?;
        let (b, h, _, d) = k.dims4()?;
        let k_buf = match &entry.k {
            Some(buf) => buf.clone(),
            None => Tensor::zeros((b, h, self.capacity, d), DType::F32, k.device())?,
        };
        let v_buf = match &entry.v {
            Some(buf) => buf.clone(),
            None => Tensor::zeros((b, h, self.capacity, d), DType::F32, v.device())?,
        };
        k_buf.slice_set(&k.contiguous()?, 2, self.len)?;
        v_buf.slice_set(&v.contiguous()?, 2, self.len)?;
        let k_all = k_buf.narrow(2, 0, self.len + t)?;
        let v_all = v_buf.narrow(2, 0, self.len + t)?;
        entry.k = Some(k_buf);
        entry.v = Some(v_buf);
        Ok((k_all, v_all))
    }

    /// Marks `t` more tokens as cached (after every layer appended them).
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Keeps only the given batch rows, in that order.
    pub(crate) fn retain_rows(&mut self, rows: &Tensor) -> Result<()> {
        for layer in &mut self.layers {
            if let Some(k) = &layer.k {
                layer.k = Some(k.index_select(rows, 0)?);
            }
            if let Some(v) = &layer.v {
                layer.v = Some(v.index_select(rows, 0)?);
            }
        }
        Ok(())
    }
}
