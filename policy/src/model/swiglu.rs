//! `silu(gate) * up`, the MLP's activation, as one CPU kernel with its own backward.
//!
//! From primitives this is `silu` (an `exp`, a sigmoid) and a product forward, and six more ops
//! backward, each a pass over the MLP's widest activations. Here the forward is one pass and
//! the backward one pass that writes both gradients (`s = sigmoid(gate)`):
//! `d gate = g * up * s * (1 + gate * (1 - s))`, `d up = g * gate * s`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::{contiguous_f32, exp_f32};
use crate::error::Result;

/// Elements per parallel task.
const CHUNK: usize = 4096;

/// `silu(gate) * up`, differentiable in both; same shapes.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)?)
}

struct SwiGlu;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if gl.dims() != ul.dims() {
            bail!("swiglu: gate {:?} and up {:?} differ", gl.dims(), ul.dims());
        }
        let gate = contiguous_f32(gs, gl, "swiglu", "gate")?;
        let up = contiguous_f32(us, ul, "swiglu", "up")?;
        let mut out = vec![0f32; gate.len()];
        out.par_chunks_mut(CHUNK)
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .for_each(|(out, (gate, up))| {
                for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                    *o = g * sigmoid(g) * u;
                }
            });
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Both gradients in one pass, stacked on a new leading dimension.
        let both = gate.apply_op3_no_bwd(up, &grad.contiguous()?, &SwiGluBackward)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// `(d gate, d up)` stacked as `(2, ...)`, from `gate`, `up` and the output's gradient.
struct SwiGluBackward;

impl CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if gl.dims() != ul.dims() || gl.dims() != dl.dims() {
            bail!(
                "swiglu backward: gate {:?}, up {:?} and gradient {:?} differ",
                gl.dims(),
                ul.dims(),
                dl.dims()
            );
        }
        let gate = contiguous_f32(gs, gl, "swiglu", "gate")?;
        let up = contiguous_f32(us, ul, "swiglu", "up")?;
        let grad = contiguous_f32(ds, dl, "swiglu", "gradient")?;
        let n = gate.len();
        let mut out = vec![0f32; 2 * n];
        let (d_gate, d_up) = out.split_at_mut(n);
        d_gate
            .par_chunks_mut(CHUNK)
            .zip(d_up.par_chunks_mut(CHUNK))
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((d_gate, d_up), (gate, up)), grad)| {
                for i in 0..d_gate.len() {
                    let (g, u, d) = (gate[i], up[i], grad[i]);
                    let s = sigmoid(g);
                    d_up[i] = d * g * s;
                    d_gate[i] = d * u * s * (1.0 + g * (1.0 - s));
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(gl.dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vector::max_diff;
    use candle_core::{Device, Var};

    #[test]
    fn value_and_gradients_match_the_primitive_ops() {
        let dev = Device::Cpu;
        // Wide range (saturated sigmoid both ways) and more elements than one task.
        let gate =
            Var::from_tensor(&(Tensor::randn(0f32, 1., (3, 5000), &dev).unwrap() * 6.0).unwrap())
                .unwrap();
        let up = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 5000), &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1., (3, 5000), &dev).unwrap();
        let fused = swiglu(gate.as_tensor(), up.as_tensor()).unwrap();
        let plain = (gate.as_tensor().silu().unwrap() * up.as_tensor()).unwrap();
        assert!(max_diff(&fused, &plain) < 1e-5);
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
        for v in [&gate, &up] {
            let (a, b) = (gf.get(v).unwrap(), gp.get(v).unwrap());
            assert!(
                max_diff(a, b) < 1e-4,
                "gradient differs by {}",
                max_diff(a, b)
            );
        }
    }

    #[test]
    fn rejects_different_shapes() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros((3, 2), candle_core::DType::F32, &dev).unwrap();
        let err = swiglu(&a, &b).unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
    }
}
