//! A linear layer `y = x W^T + b`, optionally with a LoRA adapter `+ (alpha/r) x A^T B^T`.

use std::sync::Arc;

use candle_core::{D, DType, Tensor};
use candle_nn::{Init, VarBuilder};

use super::packed::Packed;
use crate::error::Result;
use crate::lora::LoraConfig;

/// The adapter of one linear layer: `A` is `(r, in)`, `B` is `(out, r)`, `B` starts at zero.
#[derive(Debug, Clone)]
struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

/// A projection with an optional bias and an optional LoRA adapter.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// `(out, in)`.
    weight: Tensor,
    bias: Option<Tensor>,
    adapter: Option<Adapter>,
    /// The weight packed for few-row products (sampling copies on the CPU, see packed.rs).
    packed: Option<Arc<Packed>>,
}

/// The LoRA side of model construction: a builder over the adapter store and its settings.
#[derive(Clone)]
pub(crate) struct LoraBuilder<'a> {
    pub(crate) vb: VarBuilder<'a>,
    pub(crate) config: LoraConfig,
}

impl<'a> LoraBuilder<'a> {
    pub(crate) fn pp(&self, name: &str) -> Self {
        Self {
            vb: self.vb.pp(name),
            config: self.config.clone(),
        }
    }
}

impl Linear {
    /// Builds `vb.prefix + ".weight"` (and `.bias`), plus `.lora_A.weight` / `.lora_B.weight`
    /// under the same prefix in the adapter store when `lora` is given.
    pub(crate) fn new(
        vb: &VarBuilder,
        lora: Option<&LoraBuilder>,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        init_std: f64,
    ) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: init_std,
            },
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        let adapter = match lora {
            None => None,
            Some(l) => {
                let r = l.config.rank;
                // PEFT's default: A ~ kaiming-uniform (bound 1/sqrt(in)), B = 0.
                let bound = 1.0 / usize_to_f64(in_dim).sqrt();
                let a = l.vb.pp("lora_A").get_with_hints(
                    (r, in_dim),
                    "weight",
                    Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                )?;
                let b =
                    l.vb.pp("lora_B")
                        .get_with_hints((out_dim, r), "weight", Init::Const(0.0))?;
                Some(Adapter {
                    a,
                    b,
                    scale: l.config.scale(),
                })
            }
        };
        Ok(Self {
            weight,
            bias,
            adapter,
            packed: None,
        })
    }

    /// `x` of shape `(..., in)` to `(..., out)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = x.dim(D::Minus1)?;
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let y = match &self.packed {
            // The packed copy has the adapter folded in.
            Some(p) if rows <= FEW_ROWS && x2.dtype() == DType::F32 => {
                self.add_bias(p.matmul(&x2)?)?
            }
            _ => self.add_adapter(&x2, self.add_bias(weight_matmul(&self.weight, &x2)?)?)?,
        };
        if dims.len() == 2 {
            // Already `(rows, out)`; for few rows a transposed view, read in place by the
            // decoding kernels (a reshape would copy it).
            return Ok(y);
        }
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.out_dim()?;
        Ok(y.reshape(out_dims)?)
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// `y + (alpha/r) x A^T B^T` with an adapter, `y` without.
    fn add_adapter(&self, x2: &Tensor, y: Tensor) -> Result<Tensor> {
        let Some(ad) = &self.adapter else {
            return Ok(y);
        };
        // The scale goes on B (rank x out), not on the product (rows x out): autograd keeps
        // every intermediate until the backward, and a scaled copy of the product would be
        // one more activation of the layer's full width per token.
        let b = (ad.b.t()? * ad.scale)?;
        let low = x2.matmul(&ad.a.t()?)?.matmul(&b)?;
        Ok((y + low)?)
    }

    /// Several projections of the same input as one, for one sampling call: weights (and
    /// biases) stacked along the output dimension, so that one wider matmul replaces several
    /// narrow ones (a decoding step's matmuls have few rows, and gemm runs a wider one much
    /// closer to its peak), each part's adapter folded in as [`Linear::for_sampling`] does.
    ///
    /// The stacked layer is a copy, detached from the originals: build it for one sampling
    /// call, never keep it across weight updates. `None` when only some parts have a bias
    /// (then the parts are used as they are).
    pub(crate) fn stacked(parts: &[&Self]) -> Result<Option<Self>> {
        let biases: Vec<Tensor> = parts.iter().filter_map(|p| p.bias.clone()).collect();
        let bias = match biases.len() {
            _ if parts.is_empty() => return Ok(None),
            0 => None,
            n if n == parts.len() => Some(Tensor::cat(&biases, 0)?.detach()),
            _ => return Ok(None),
        };
        let weights = parts
            .iter()
            .map(|p| p.merged_weight())
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Self::sampling_copy(Tensor::cat(&weights, 0)?, bias)))
    }

    /// This layer for one sampling call, with the adapter folded into the weight (`W +
    /// (alpha/r) B A`, formed in f32 whatever the weight's dtype) so that a decoding step runs
    /// one matmul per projection instead of three. With `pack`, where the CPU has a kernel
    /// for few-row products (see packed.rs), the folded weight is kept packed only, beside the
    /// shared layer; otherwise as a detached row-major copy (the layer itself, shared, when it
    /// has no adapter).
    pub(crate) fn for_sampling(&self, pack: bool) -> Result<Self> {
        if self.adapter.is_none() {
            return Ok(Self {
                packed: Self::pack(&self.weight, pack)?,
                ..self.clone()
            });
        }
        let merged = self.merged_weight()?;
        if let Some(packed) = Self::pack(&merged, pack)? {
            // Few rows run the packed merged copy; many rows (a prefill) the shared base and
            // the adapter, as training does: no row-major copy is kept.
            return Ok(Self {
                packed: Some(packed),
                ..self.clone()
            });
        }
        Ok(Self::sampling_copy(
            merged,
            self.bias.as_ref().map(Tensor::detach),
        ))
    }

    /// `weight` packed for few-row products, when asked and this CPU has a kernel for them.
    fn pack(weight: &Tensor, pack: bool) -> Result<Option<Arc<Packed>>> {
        if pack { Packed::new(weight) } else { Ok(None) }
    }

    fn sampling_copy(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight: weight.detach(),
            bias,
            adapter: None,
            packed: None,
        }
    }

    /// `W + (alpha/r) B A` (the weight itself without an adapter), `(out, in)`.
    fn merged_weight(&self) -> Result<Tensor> {
        let Some(ad) = &self.adapter else {
            return Ok(self.weight.clone());
        };
        let dtype = self.weight.dtype();
        let delta = (ad
            .b
            .to_dtype(DType::F32)?
            .matmul(&ad.a.to_dtype(DType::F32)?)?
            * ad.scale)?;
        Ok((self.weight.to_dtype(DType::F32)? + delta)?.to_dtype(dtype)?)
    }

    /// Output width.
    pub(crate) fn out_dim(&self) -> Result<usize> {
        Ok(self.weight.dim(0)?)
    }

    /// The same layer with `f` applied to every tensor (detach, cast).
    pub(crate) fn map(&self, f: &impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self {
            weight: f(&self.weight)?,
            bias: self.bias.as_ref().map(f).transpose()?,
            adapter: match &self.adapter {
                Some(a) => Some(Adapter {
                    a: f(&a.a)?,
                    b: f(&a.b)?,
                    scale: a.scale,
                }),
                None => None,
            },
            packed: None,
        })
    }
}

/// Several projections of one input stacked along the output dimension, for one sampling
/// call's decoding steps (see [`Linear::stacked`]).
#[derive(Debug, Clone)]
pub(crate) enum Stacked {
    /// A row-major copy, for gemm at any row count.
    Rows(Linear),
    /// Packed for the few-row kernel only (with the stacked bias): a pass of many rows (a
    /// prefill) runs the parts instead, so no row-major copy is kept.
    Packed(Arc<Packed>, Option<Tensor>),
}

impl Stacked {
    /// `parts` stacked, adapters folded in: packed when `pack` and the CPU has a kernel, else
    /// row-major. `None` when only some parts have a bias (then the parts run as they are).
    pub(crate) fn new(parts: &[&Linear], pack: bool) -> Result<Option<Self>> {
        let Some(rows) = Linear::stacked(parts)? else {
            return Ok(None);
        };
        if !pack {
            return Ok(Some(Self::Rows(rows)));
        }
        Ok(Some(match Packed::new(&rows.weight)? {
            // The row-major stack is dropped here: it only lived to be packed.
            Some(packed) => Self::Packed(packed, rows.bias),
            None => Self::Rows(rows),
        }))
    }

    /// Whether a pass of `rows` rows should run the stack (rather than the parts).
    pub(crate) fn serves(&self, rows: usize) -> bool {
        match self {
            Self::Rows(_) => true,
            Self::Packed(..) => rows <= FEW_ROWS,
        }
    }

    /// The stacked projection of `x` `(..., in)`, `(rows, out)` for a matrix.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Rows(l) => l.forward(x),
            Self::Packed(p, bias) => {
                let in_dim = x.dim(D::Minus1)?;
                let x2 = x.reshape((x.elem_count() / in_dim.max(1), in_dim))?;
                let y = p.matmul(&x2)?;
                let y = match bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                };
                let mut dims = x.dims().to_vec();
                if let Some(last) = dims.last_mut() {
                    *last = p.out();
                }
                Ok(y.reshape(dims)?)
            }
        }
    }

    /// Output width.
    pub(crate) fn out_dim(&self) -> Result<usize> {
        match self {
            Self::Rows(l) => l.out_dim(),
            Self::Packed(p, _) => Ok(p.out()),
        }
    }

    /// The same stack with `f` applied to every tensor it holds as a tensor (a packed copy
    /// is kept as it is: it is only ever read).
    pub(crate) fn map(&self, f: &impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(match self {
            Self::Rows(l) => Self::Rows(l.map(f)?),
            Self::Packed(p, bias) => Self::Packed(Arc::clone(p), bias.as_ref().map(f).transpose()?),
        })
    }
}

#[allow(clippy::cast_precision_loss)] // layer widths are far below 2^52
fn usize_to_f64(n: usize) -> f64 {
    n as f64
}

/// Up to this many rows, `x W^T` is computed as `(W x^T)^T`.
pub(crate) const FEW_ROWS: usize = 64;

/// `x W^T` for `x` of shape `(N, in)` and `W` of shape `(out, in)`.
///
/// For the few rows of a decoding step on the CPU it is computed as `(W x^T)^T`, which lets
/// gemm stream the row-major weight instead of packing its transpose: measured 3.5x faster
/// for SmolLM2's layers at batch 8, 4x for its LM head. For many rows (prefill, training) the
/// direct product is faster. On a GPU cuBLAS takes either layout at the same speed, and the
/// direct product leaves a contiguous result for the element-wise kernels that follow.
pub(crate) fn weight_matmul(weight: &Tensor, x: &Tensor) -> Result<Tensor> {
    if x.dim(0)? <= FEW_ROWS && weight.device().is_cpu() {
        Ok(weight.matmul(&x.t()?)?.t()?)
    } else {
        Ok(x.matmul(&weight.t()?)?)
    }
}
