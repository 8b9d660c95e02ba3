//! The few numeric kernels that differ between the two paths.
//!
//! `Kernels::Autograd` builds every op from differentiable primitives (candle-nn's fused
//! softmax, RMSNorm and RoPE kernels pass no gradient). `Kernels::Fused` uses those fast
//! kernels and is only used where no gradient is needed (sampling, reference scoring).
//! Both compute the same formulas in f32; the agreement test bounds their difference.

use candle_core::{D, Tensor};

use crate::error::Result;

/// Which implementation of the non-matmul kernels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Differentiable primitives: the training path.
    Autograd,
    /// candle-nn's fused kernels: no gradient, faster.
    Fused,
}

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * weight` over the last dimension.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, kernels: Kernels) -> Result<Tensor> {
    match kernels {
        Kernels::Fused => {
            let x = x.contiguous()?;
            #[allow(clippy::cast_possible_truncation)] // eps is ~1e-5, well within f32
            let eps32 = eps as f32;
            Ok(candle_nn::ops::rms_norm(&x, weight, eps32)?)
        }
        // One kernel with its own backward on the CPU (see rms_norm.rs).
        #[allow(clippy::cast_possible_truncation)] // eps is ~1e-5, well within f32
        Kernels::Autograd if x.device().is_cpu() => {
            super::rms_norm::rms_norm(x, weight, eps as f32)
        }
        Kernels::Autograd => {
            let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
            let inv = (variance + eps)?.sqrt()?.recip()?;
            Ok(x.broadcast_mul(&inv)?.broadcast_mul(weight)?)
        }
    }
}

/// Softmax over the last dimension.
pub(crate) fn softmax_last(x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    match kernels {
        Kernels::Fused => Ok(candle_nn::ops::softmax_last_dim(&x.contiguous()?)?),
        Kernels::Autograd => {
            let max = x.max_keepdim(D::Minus1)?.detach();
            let exp = x.broadcast_sub(&max)?.exp()?;
            let sum = exp.sum_keepdim(D::Minus1)?;
            Ok(exp.broadcast_div(&sum)?)
        }
    }
}

/// Log-softmax over the last dimension, differentiable (the max shift is a constant).
pub(crate) fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// Rotary embedding, Hugging Face rotate-half convention, `x` of shape `(B, H, T, hd)`.
///
/// `cos`/`sin` hold half-width tables: `(T, hd/2)` shared by the batch or `(B, T, hd/2)`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, kernels: Kernels) -> Result<Tensor> {
    match kernels {
        Kernels::Fused => Ok(candle_nn::rotary_emb::rope(
            &x.contiguous()?,
            &cos.contiguous()?,
            &sin.contiguous()?,
        )?),
        Kernels::Autograd => {
            let cos = Tensor::cat(&[cos, cos], D::Minus1)?;
            let sin = Tensor::cat(&[sin, sin], D::Minus1)?;
            // (T, hd) -> (1, 1, T, hd); (B, T, hd) -> (B, 1, T, hd).
            let (cos, sin) = if cos.rank() == 2 {
                (
                    cos.unsqueeze(0)?.unsqueeze(0)?,
                    sin.unsqueeze(0)?.unsqueeze(0)?,
                )
            } else {
                (cos.unsqueeze(1)?, sin.unsqueeze(1)?)
            };
            let half = x.dim(D::Minus1)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vector::max_diff;
    use candle_core::Device;

    fn sample(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| {
                let x = (i as u64).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000;
                f32::from(u16::try_from(x).unwrap()) / 250.0 - 2.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn fused_and_autograd_kernels_agree() {
        let x = sample(&[2, 3, 5, 8], 1);
        let w = sample(&[8], 2);
        let a = rms_norm(&x, &w, 1e-5, Kernels::Autograd).unwrap();
        let f = rms_norm(&x, &w, 1e-5, Kernels::Fused).unwrap();
        assert!(max_diff(&a, &f) < 1e-5);
        let a = softmax_last(&x, Kernels::Autograd).unwrap();
        let f = softmax_last(&x, Kernels::Fused).unwrap();
        assert!(max_diff(&a, &f) < 1e-6);
        let cos = sample(&[5, 4], 3).cos().unwrap();
        let sin = sample(&[5, 4], 3).sin().unwrap();
        let a = rope(&x, &cos, &sin, Kernels::Autograd).unwrap();
        let f = rope(&x, &cos, &sin, Kernels::Fused).unwrap();
        assert!(max_diff(&a, &f) < 1e-6);
        let cos_b = Tensor::stack(&[&cos, &cos], 0).unwrap();
        let sin_b = Tensor::stack(&[&sin, &sin], 0).unwrap();
        let a = rope(&x, &cos_b, &sin_b, Kernels::Autograd).unwrap();
        assert!(max_diff(&a, &f) < 1e-6);
        let f = rope(&x, &cos_b, &sin_b, Kernels::Fused).unwrap();
        assert!(max_diff(&a, &f) < 1e-6);
    }

    #[test]
    fn log_softmax_normalises() {
        let x = sample(&[3, 7], 4);
        let lp = log_softmax_last(&x).unwrap();
        let total = lp.exp().unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
        for t in total {
            assert!((t - 1.0).abs() < 1e-6);
        }
    }
}
