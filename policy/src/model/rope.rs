//! Rotary position tables and the positions of a forward pass.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::config::{LlamaConfig, MAX_CONTEXT};
use crate::error::{Error, Result};

/// Where each query token sits in its sequence.
#[derive(Debug, Clone)]
pub(crate) enum Positions {
    /// Every row uses positions `start .. start + len` (right-padded scoring).
    Range { start: usize, len: usize },
    /// One position per token, `(B, T)` row-major (left-padded sampling).
    PerRow {
        batch: usize,
        len: usize,
        ids: Vec<u32>,
    },
}

/// Precomputed half-width `cos`/`sin` tables of shape `(max_positions, head_dim / 2)`.
#[derive(Debug, Clone)]
pub(crate) struct RopeTables {
    cos: Tensor,
    sin: Tensor,
    /// The same tables on the host, for the CPU decoding kernels.
    host_cos: Arc<[f32]>,
    host_sin: Arc<[f32]>,
    max_positions: usize,
}

impl RopeTables {
    pub(crate) fn new(config: &LlamaConfig, device: &Device) -> Result<Self> {
        let hd = config.head_width();
        let max_positions = config.context_len();
        let half = hd / 2;
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        // Llama 3's scaling rescales the frequencies (see `RopeScaling`).
        let scaling = config.rope_scaling()?;
        let base = config.rope_base();
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / base.powf(small_f64(2 * i) / small_f64(hd)))
            .map(|f| scaling.map_or(f, |s| s.scale(f)))
            .collect();
        for p in 0..max_positions {
            for f in &inv_freq {
                let angle = small_f64(p) * f;
                cos.push(to_f32(angle.cos()));
                sin.push(to_f32(angle.sin()));
            }
        }
        Ok(Self {
            cos: Tensor::from_slice(&cos, (max_positions, half), device)?,
            sin: Tensor::from_slice(&sin, (max_positions, half), device)?,
            host_cos: cos.into(),
            host_sin: sin.into(),
            max_positions,
        })
    }

    /// `(cos, sin)` for the given positions: `(T, hd/2)` or `(B, T, hd/2)`.
    pub(crate) fn select(&self, positions: &Positions) -> Result<(Tensor, Tensor)> {
        match positions {
            Positions::Range { start, len } => {
                if start + len > self.max_positions {
                    return Err(self.too_long(start + len));
                }
                Ok((
                    self.cos.narrow(0, *start, *len)?,
                    self.sin.narrow(0, *start, *len)?,
                ))
            }
            Positions::PerRow { batch, len, ids } => {
                if let Some(&max) = ids.iter().max()
                    && max as usize >= self.max_positions
                {
                    return Err(self.too_long(max as usize + 1));
                }
                let idx = Tensor::from_slice(ids, ids.len(), self.cos.device())?;
                let half = self.cos.dim(1)?;
                Ok((
                    self.cos
                        .index_select(&idx, 0)?
                        .reshape((*batch, *len, half))?,
                    self.sin
                        .index_select(&idx, 0)?
                        .reshape((*batch, *len, half))?,
                ))
            }
        }
    }

    /// Host `(cos, sin)` rows for one position per row, `(len, hd/2)` row-major each.
    pub(crate) fn host_rows(&self, positions: &[u32]) -> Result<(Vec<f32>, Vec<f32>)> {
        let half = self.host_cos.len() / self.max_positions.max(1);
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            let p = p as usize;
            if p >= self.max_positions {
                return Err(self.too_long(p + 1));
            }
            cos.extend_from_slice(&self.host_cos[p * half..(p + 1) * half]);
            sin.extend_from_slice(&self.host_sin[p * half..(p + 1) * half]);
        }
        Ok((cos, sin))
    }

    fn too_long(&self, needed: usize) -> Error {
        Error::InvalidInput(format!(
            "sequence of {needed} tokens exceeds the context of {} positions \
             (the model's max_position_embeddings, at most {MAX_CONTEXT} in arlas)",
            self.max_positions
        ))
    }
}

#[allow(clippy::cast_precision_loss)] // positions and widths are far below 2^52
fn small_f64(n: usize) -> f64 {
    n as f64
}

#[allow(clippy::cast_possible_truncation)] // cos/sin are in [-1, 1]
fn to_f32(x: f64) -> f32 {
    x as f32
}
