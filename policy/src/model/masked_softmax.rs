//! `softmax(x * scale + mask)` over the last dimension as one CPU kernel with its own backward.
//!
//! Attention probabilities are the largest activations of a training step (batch x heads x
//! T x T). Built from differentiable primitives (scale, mask add, max, subtract, exp, sum,
//! divide) they take seven passes forward and more backward, each writing a new tensor; here
//! the forward is one pass per row and the backward one more
//! (`dx = scale * p * (g - sum(g * p))`). `exp` is a vectorisable polynomial (libm's `expf` is
//! one call per element, and takes a slow errno-setting path for masked keys, where it
//! underflows).

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::{contiguous_f32, dot, exp_f32, max_of, sum_of};
use crate::error::Result;

/// `softmax(x * scale + mask)` over the last dimension, differentiable in `x`.
///
/// `x` is `(B, H, T, K)`; `mask` is additive, `(B or 1, 1, T, K)`, and gets no gradient.
pub(crate) fn masked_softmax(x: &Tensor, mask: &Tensor, scale: f32) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2(&mask.contiguous()?, MaskedSoftmax { scale })?)
}

struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ms: &CpuStorage,
        ml: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, t, k) = xl.shape().dims4()?;
        let (mb, one, mt, mk) = ml.shape().dims4()?;
        if !(mb == b || mb == 1) || one != 1 || mt != t || mk != k {
            bail!(
                "masked softmax: mask {:?} does not fit scores {:?}",
                ml.dims(),
                xl.dims()
            );
        }
        let x = contiguous_f32(xs, xl, "masked softmax", "scores")?;
        let mask = contiguous_f32(ms, ml, "masked softmax", "mask")?;
        let scale = self.scale;
        let mut out = vec![0f32; x.len()];
        if k > 0 {
            out.par_chunks_mut(k)
                .zip(x.par_chunks(k))
                .enumerate()
                .for_each(|(row, (out, x))| {
                    let (batch, query) = (row / (h * t), row % t);
                    let m_row = if mb == 1 { query } else { batch * t + query };
                    let mask = &mask[m_row * k..(m_row + 1) * k];
                    for ((o, &x), &m) in out.iter_mut().zip(x).zip(mask) {
                        *o = x * scale + m;
                    }
                    let max = max_of(out);
                    for o in out.iter_mut() {
                        *o = exp_f32(*o - max);
                    }
                    let inv = 1.0 / sum_of(out);
                    for o in out.iter_mut() {
                        *o *= inv;
                    }
                });
        }
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        probs: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx =
            probs.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBackward { scale: self.scale })?;
        Ok((Some(dx), None))
    }
}

/// `scale * p * (g - sum(g * p))` row by row, from the probabilities `p` and their gradient `g`.
struct SoftmaxBackward {
    scale: f32,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "masked-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if pl.dims() != gl.dims() {
            bail!(
                "masked softmax backward: gradient {:?} does not match probabilities {:?}",
                gl.dims(),
                pl.dims()
            );
        }
        let k = *pl.dims().last().unwrap_or(&0);
        let p = contiguous_f32(ps, pl, "masked softmax", "probabilities")?;
        let g = contiguous_f32(gs, gl, "masked softmax", "gradient")?;
        let scale = self.scale;
        let mut out = vec![0f32; p.len()];
        if k > 0 {
            out.par_chunks_mut(k)
                .zip(p.par_chunks(k).zip(g.par_chunks(k)))
                .for_each(|(out, (p, g))| {
                    let dot = dot(p, g);
                    for ((o, &p), &g) in out.iter_mut().zip(p).zip(g) {
                        *o = scale * p * (g - dot);
                    }
                });
        }
        Ok((CpuStorage::F32(out), pl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::{self, Kernels};
    use crate::model::vector::max_diff;
    use candle_core::{D, Device, Var};

    /// Causal mask with `pad` hidden leading keys per batch row: `(B, 1, T, T)`.
    fn causal(pads: &[usize], t: usize) -> Tensor {
        let v: Vec<f32> = pads
            .iter()
            .flat_map(|&p| {
                (0..t).flat_map(move |q| {
                    (0..t).map(move |k| if k <= q && k >= p { 0.0 } else { -1e9 })
                })
            })
            .collect();
        Tensor::from_vec(v, (pads.len(), 1, t, t), &Device::Cpu).unwrap()
    }

    #[test]
    fn value_and_gradient_match_the_primitive_ops() {
        let dev = Device::Cpu;
        let (b, h, t) = (2, 3, 7);
        let x = Var::from_tensor(
            &(Tensor::randn(0f32, 1., (b, h, t, t), &dev).unwrap() * 4.0).unwrap(),
        )
        .unwrap();
        let weights = Tensor::randn(0f32, 1., (b, h, t, t), &dev).unwrap();
        for mask in [causal(&[0, 2], t), causal(&[1], t)] {
            let scale = 0.3f32;
            let fused = masked_softmax(x.as_tensor(), &mask, scale).unwrap();
            let plain = ops::softmax_last(
                &(x.as_tensor() * f64::from(scale))
                    .unwrap()
                    .broadcast_add(&mask)
                    .unwrap(),
                Kernels::Autograd,
            )
            .unwrap();
            assert!(max_diff(&fused, &plain) < 1e-6);
            let rows = fused.sum(D::Minus1).unwrap();
            assert!(max_diff(&rows, &rows.ones_like().unwrap()) < 1e-5);
            let gf = (&fused * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gp = (&plain * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (gf, gp) = (gf.get(&x).unwrap(), gp.get(&x).unwrap());
            assert!(
                max_diff(gf, gp) < 1e-5,
                "gradient differs by {}",
                max_diff(gf, gp)
            );
            assert!(
                gf.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            );
        }
    }

    #[test]
    fn rejects_a_mask_that_does_not_fit() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3, 4, 4), candle_core::DType::F32, &dev).unwrap();
        let mask = Tensor::zeros((2, 1, 4, 5), candle_core::DType::F32, &dev).unwrap();
        let err = masked_softmax(&x, &mask, 1.0).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}
