//! RMSNorm, `x / sqrt(mean(x^2) + eps) * weight` over the last dimension, as one CPU kernel
//! with its own backward (candle-nn's fused RmsNorm has none).
//!
//! From primitives it is seven ops forward (square, mean, add, sqrt, reciprocal, two
//! broadcast products) and more backward, each a pass and a synchronisation of the thread
//! pool; a decoder runs it twice per layer. Here: one pass forward; one backward that writes
//! `d x = r * (g * w) - x * r^3 * sum(g * w * x) / n` and accumulates `d w = sum_rows(g * x * r)`
//! (`r = 1 / sqrt(mean(x^2) + eps)`).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::{contiguous_f32, dot};
use crate::error::Result;

/// Rows per parallel task of the backward (each task keeps its own partial `d w`).
const ROWS_PER_TASK: usize = 64;

/// RMSNorm over the last dimension of `x`; `weight` has that dimension's size.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps })?)
}

struct RmsNorm {
    eps: f32,
}

/// The width `n` of the normalised dimension, checked against the weight.
fn width(xl: &Layout, wl: &Layout) -> candle_core::Result<usize> {
    let n = xl.dims().last().copied().unwrap_or(0);
    if wl.dims() != [n] || n == 0 {
        bail!(
            "rms norm: weight {:?} does not fit input {:?}",
            wl.dims(),
            xl.dims()
        );
    }
    Ok(n)
}

#[allow(clippy::cast_precision_loss)] // hidden sizes are far below 2^24
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = width(xl, wl)?;
        let x = contiguous_f32(xs, xl, "rms norm", "input")?;
        let w = contiguous_f32(ws, wl, "rms norm", "weight")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(out, x)| {
                let r = inv_rms(x, self.eps);
                for ((o, &x), &w) in out.iter_mut().zip(x).zip(w) {
                    *o = x * r * w;
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = weight.elem_count();
        let packed = x.apply_op3_no_bwd(
            weight,
            &grad.contiguous()?,
            &RmsNormBackward { eps: self.eps },
        )?;
        let rows = x.elem_count() / n;
        let dx = packed.narrow(0, 0, rows * n)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows * n, n)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `d x` (all rows, flattened) followed by `d w`, from `x`, `w` and the output's gradient.
struct RmsNormBackward {
    eps: f32,
}

impl CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
    }

    #[allow(clippy::cast_precision_loss)] // hidden sizes are far below 2^24
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = width(xl, wl)?;
        if gl.dims() != xl.dims() {
            bail!(
                "rms norm backward: gradient {:?} does not match input {:?}",
                gl.dims(),
                xl.dims()
            );
        }
        let x = contiguous_f32(xs, xl, "rms norm", "input")?;
        let w = contiguous_f32(ws, wl, "rms norm", "weight")?;
        let g = contiguous_f32(gs, gl, "rms norm", "gradient")?;
        let mut dx = vec![0f32; x.len()];
        let block = ROWS_PER_TASK * n;
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(block)
            .zip(x.par_chunks(block).zip(g.par_chunks(block)))
            .map(|(dx, (x, g))| {
                let mut dw = vec![0f32; n];
                let mut gw = vec![0f32; n];
                for ((dx, x), g) in dx.chunks_mut(n).zip(x.chunks(n)).zip(g.chunks(n)) {
                    let r = inv_rms(x, self.eps);
                    for ((gw, &g), &w) in gw.iter_mut().zip(g).zip(w) {
                        *gw = g * w;
                    }
                    let c = dot(&gw, x) * r * r * r / n as f32;
                    for (((dx, &gw), &x), (dw, &g)) in
                        dx.iter_mut().zip(&gw).zip(x).zip(dw.iter_mut().zip(g))
                    {
                        *dx = r * gw - x * c;
                        *dw += g * x * r;
                    }
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; n];
        for partial in &partials {
            for (total, p) in dw.iter_mut().zip(partial) {
                *total += p;
            }
        }
        dx.extend_from_slice(&dw);
        let len = dx.len();
        Ok((CpuStorage::F32(dx), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::{self, Kernels};
    use crate::model::vector::max_diff;
    use candle_core::{Device, Var};

    #[test]
    fn value_and_gradients_match_the_primitive_ops() {
        let dev = Device::Cpu;
        // More rows than one backward task, so that partial weight gradients are summed.
        let x =
            Var::from_tensor(&(Tensor::randn(0f32, 1., (3, 50, 24), &dev).unwrap() * 3.0).unwrap())
                .unwrap();
        let w =
            Var::from_tensor(&(Tensor::randn(0f32, 1., 24, &dev).unwrap() + 1.0).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1., (3, 50, 24), &dev).unwrap();
        let fused = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        let fused_ops = ops::Ops {
            kernels: Kernels::Fused,
            native: true,
        };
        let plain = ops::rms_norm(x.as_tensor(), w.as_tensor(), 1e-5, fused_ops).unwrap();
        assert!(max_diff(&fused, &plain) < 1e-5);
        let gf = (&fused * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        // The primitive formula, built here so the comparison does not depend on ops' choice.
        let variance = x
            .as_tensor()
            .sqr()
            .unwrap()
            .mean_keepdim(candle_core::D::Minus1)
            .unwrap();
        let inv = (variance + 1e-5).unwrap().sqrt().unwrap().recip().unwrap();
        let prim = x
            .as_tensor()
            .broadcast_mul(&inv)
            .unwrap()
            .broadcast_mul(w.as_tensor())
            .unwrap();
        let gp = (&prim * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w] {
            let (a, b) = (gf.get(v).unwrap(), gp.get(v).unwrap());
            assert_eq!(a.dims(), b.dims());
            assert!(
                max_diff(a, b) < 1e-4,
                "gradient differs by {}",
                max_diff(a, b)
            );
        }
    }

    #[test]
    fn rejects_a_weight_that_does_not_fit() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros(5, candle_core::DType::F32, &dev).unwrap();
        let err = rms_norm(&x, &w, 1e-5).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}
