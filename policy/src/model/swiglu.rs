//! `silu(gate) * up`, the MLP's activation, as one CPU kernel with its own backward.
//!
//! From primitives this is `silu` (an `exp`, a sigmoid) and a product forward, and six more ops
//! backward, each a pass over the MLP's widest activations. Here the forward is one pass and
//! the backward one pass that writes both gradients (`s = sigmoid(gate)`):
//! `d gate = g * up * s * (1 + gate * (1 - s))`, `d up = g * gate * s`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::{Matrix, contiguous_f32, exp_f32};
use crate::error::Result;

/// Elements per parallel task.
const CHUNK: usize = 4096;

/// `silu(gate) * up`, differentiable in both; same shapes.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)?)
}

struct SwiGlu;

/// `silu(gate) * up` where `stacked` is `(..., 2 * width)`, gate then up (the stacked
/// projection of a sampling call), to `(..., width)`. No gradient. A decoding step's product
/// arrives transposed (`(W x^T)^T`, see linear.rs): its storage is then `(2 * width, N)`, gate
/// rows then up rows, and the result keeps that orientation, so nothing is copied on the way
/// into the down projection's matmul.
pub(crate) fn swiglu_stacked(stacked: &Tensor) -> Result<Tensor> {
    if let [n, _] = *stacked.dims()
        && n > 1
        && stacked.stride() == [1, n]
    {
        let halves = stacked.t()?;
        return Ok(halves.apply_op1_no_bwd(&SwiGluStacked::Halves)?.t()?);
    }
    Ok(stacked.apply_op1_no_bwd(&SwiGluStacked::Rows)?)
}

/// Where gate and up sit in the input of [`swiglu_stacked`]'s kernel.
enum SwiGluStacked {
    /// `(..., 2 * width)`: each row is its gate then its up values.
    Rows,
    /// Contiguous `(2 * width, N)`: the first half is gate, the second up.
    Halves,
}

impl CustomOp1 for SwiGluStacked {
    fn name(&self) -> &'static str {
        "swiglu-stacked"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        match self {
            Self::Rows => self.rows(s, l),
            Self::Halves => {
                let y = contiguous_f32(s, l, self.name(), "the stacked projection")?;
                let Some(&[rows, cols]) = Some(l.dims()) else {
                    bail!(
                        "{}: expected a matrix, got dims {:?}",
                        self.name(),
                        l.dims()
                    );
                };
                if rows % 2 != 0 {
                    bail!("{}: odd height {rows} cannot hold gate and up", self.name());
                }
                let (gate, up) = y.split_at(y.len() / 2);
                let mut out = vec![0f32; gate.len()];
                out.par_chunks_mut(CHUNK)
                    .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
                    .for_each(|(out, (gate, up))| {
                        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                            *o = g * sigmoid(g) * u;
                        }
                    });
                Ok((CpuStorage::F32(out), Shape::from((rows / 2, cols))))
            }
        }
    }
}

impl SwiGluStacked {
    fn rows(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = Matrix::new(s, l, self.name(), "the stacked projection")?;
        if y.cols % 2 != 0 {
            bail!(
                "{}: odd width {} cannot hold gate and up",
                self.name(),
                y.cols
            );
        }
        let width = y.cols / 2;
        let mut out = vec![0f32; y.rows * width];
        let rows_per_task = CHUNK.div_ceil(width.max(1));
        out.par_chunks_mut(width.max(1) * rows_per_task)
            .enumerate()
            .for_each_init(
                || (vec![0f32; width], vec![0f32; width]),
                |(gate, up), (task, out)| {
                    for (i, out) in out.chunks_exact_mut(width.max(1)).enumerate() {
                        let row = task * rows_per_task + i;
                        y.read(row, 0, gate);
                        y.read(row, width, up);
                        for ((o, &g), &u) in out.iter_mut().zip(gate.iter()).zip(up.iter()) {
                            *o = g * sigmoid(g) * u;
                        }
                    }
                },
            );
        let mut dims = l.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = width;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

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
    fn stacked_form_matches_on_contiguous_and_transposed_layouts() {
        let dev = Device::Cpu;
        let (rows, width) = (5, 1500);
        let y = Tensor::randn(0f32, 3., (rows, 2 * width), &dev).unwrap();
        let want = (y.narrow(1, 0, width).unwrap().silu().unwrap()
            * y.narrow(1, width, width).unwrap())
        .unwrap();
        let got = swiglu_stacked(&y).unwrap();
        assert_eq!(got.dims(), [rows, width]);
        assert!(max_diff(&got, &want) < 1e-5);
        // The same values stored column-major, as `(W x^T)^T` leaves them.
        let transposed = y.t().unwrap().contiguous().unwrap().t().unwrap();
        assert!(!transposed.is_contiguous());
        let got = swiglu_stacked(&transposed).unwrap();
        assert_eq!(got.dims(), [rows, width]);
        assert!(max_diff(&got, &want) < 1e-5);
        // Any other strides go through the row reader.
        let wide = Tensor::randn(0f32, 3., (rows, 3 * width), &dev).unwrap();
        let strided = wide.narrow(1, 0, 2 * width).unwrap();
        assert!(!strided.is_contiguous());
        let want = (wide.narrow(1, 0, width).unwrap().silu().unwrap()
            * wide.narrow(1, width, width).unwrap())
        .unwrap();
        assert!(max_diff(&swiglu_stacked(&strided).unwrap(), &want) < 1e-5);
        let three = y.reshape((rows, 1, 2 * width)).unwrap();
        let got = swiglu_stacked(&three).unwrap();
        assert_eq!(got.dims(), [rows, 1, width]);
        let odd = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let err = swiglu_stacked(&odd).unwrap_err();
        assert!(err.to_string().contains("odd width"), "{err}");
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
