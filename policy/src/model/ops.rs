//! The few numeric kernels that differ between the two paths.
//!
//! `Kernels::Autograd` builds every op from differentiable primitives (candle-nn's fused
//! softmax, RMSNorm and RoPE kernels pass no gradient). `Kernels::Fused` uses those fast
//! kernels and is only used where no gradient is needed (sampling, reference scoring).
//! Both compute the same formulas; the agreement test bounds their difference.
//!
//! arlas's own CPU kernels (rms_norm.rs, masked_softmax.rs, swiglu.rs, token_logprobs.rs,
//! decode_attention.rs) are f32-only and CPU-only: [`Ops::native`] says whether a pass may use
//! them. Everywhere else (a GPU, bf16, or the CPU with them turned off) the same formulas run
//! as candle primitives, which work on every device and dtype. Under bf16, RMSNorm, rotary
//! embedding and softmax compute in f32 on upcast values (see precision.rs).

use candle_core::{D, DType, Tensor};

use crate::error::Result;

/// How one forward pass computes its non-matmul ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ops {
    pub(crate) kernels: Kernels,
    /// arlas's f32 CPU kernels apply: f32 on the CPU, and not turned off.
    pub(crate) native: bool,
}

/// Which implementation of the non-matmul kernels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Differentiable primitives: the training path.
    Autograd,
    /// candle-nn's fused kernels: no gradient, faster.
    Fused,
}

/// RMSNorm: `x / sqrt(mean(x^2) + eps) * weight` over the last dimension, computed in f32
/// (the result in `x`'s dtype).
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, ops: Ops) -> Result<Tensor> {
    #[allow(clippy::cast_possible_truncation)] // eps is ~1e-5, well within f32
    let eps32 = eps as f32;
    match ops.kernels {
        // candle-nn's kernel: f32 arithmetic for f32 anywhere and for bf16 on a GPU (its CPU
        // bf16 version rounds the norm to bf16 first, so bf16 on the CPU takes the primitives).
        Kernels::Fused if x.dtype() == DType::F32 || !x.device().is_cpu() => {
            let x = x.contiguous()?;
            Ok(candle_nn::ops::rms_norm(&x, weight, eps32)?)
        }
        // One kernel with its own backward on the CPU (see rms_norm.rs).
        Kernels::Autograd if ops.native => super::rms_norm::rms_norm(x, weight, eps32),
        _ => {
            let dtype = x.dtype();
            let x = x.to_dtype(DType::F32)?;
            let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
            let inv = (variance + eps)?.sqrt()?.recip()?;
            let weight = weight.to_dtype(DType::F32)?;
            Ok(x.broadcast_mul(&inv)?
                .broadcast_mul(&weight)?
                .to_dtype(dtype)?)
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
/// An `x` of another dtype than the tables (bf16 under f32 tables) is rotated in the tables'
/// dtype and cast back.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if x.dtype() != cos.dtype() {
        let rotated = rope(&x.to_dtype(cos.dtype())?, cos, sin, kernels)?;
        return Ok(rotated.to_dtype(x.dtype())?);
    }
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
        let ops = |kernels, native| Ops { kernels, native };
        let a = rms_norm(&x, &w, 1e-5, ops(Kernels::Autograd, true)).unwrap();
        let f = rms_norm(&x, &w, 1e-5, ops(Kernels::Fused, true)).unwrap();
        assert!(max_diff(&a, &f) < 1e-5);
        let p = rms_norm(&x, &w, 1e-5, ops(Kernels::Autograd, false)).unwrap();
        assert!(max_diff(&a, &p) < 1e-5);
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
