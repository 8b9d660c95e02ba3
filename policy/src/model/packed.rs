//! Few-row products `x W^T` on the CPU against a copy of `W` packed for them (sampling).
//!
//! A decoding step multiplies a few rows (one per sequence of the batch) by every weight of
//! the model. gemm re-packs the weight into panels at every call, which for a few rows costs
//! about as much as the product, and runs well below the memory's speed (docs/benchmarks.md,
//! "The iteration"). A sampling call packs each weight once instead, into
//! panels of [`PANEL`] output columns (`W^T`'s columns, `in` rows of [`PANEL`] contiguous
//! values each, zero past the last column), and every step of the call streams the panels
//! in order: each panel is read once per step, from memory into registers, and multiplied
//! with up to [`TILE`] rows at once (their values broadcast, the panel's in vector lanes).
//!
//! The kernel is compiled for AVX-512F or AVX2 with FMA and chosen at run time; on a CPU with
//! neither, nothing is packed and gemm runs as before. The sum over `in` runs in order with
//! fused multiply-adds, so the result differs from gemm's blocked sum by rounding only
//! (tests compare within 1e-5 relative).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::contiguous_f32;
use crate::error::Result;

/// Output columns per panel: two AVX-512 vectors, four AVX2 ones.
const PANEL: usize = 32;
/// Rows multiplied with a panel at once by the widest kernel (24 accumulator vectors of 32
/// AVX-512 registers).
const TILE: usize = 12;

/// Weights of fewer values than this are multiplied on the calling thread: for a small model
/// (or a row group's thread, see row_groups.rs) handing panels to the pool costs more than
/// the product.
const PARALLEL_FROM: usize = 1 << 18;

/// A weight `(out, in)` packed for few-row products (see the module docs).
#[derive(Debug)]
pub(crate) struct Packed {
    /// `(panels, in, PANEL)`.
    panels: Vec<f32>,
    out: usize,
    inp: usize,
    kernel: Kernel,
}

/// Products of one panel with every row: `(panel, rows, out)`, `out` of `(rows, PANEL)`.
#[derive(Debug, Clone, Copy)]
struct Kernel {
    run: fn(&[f32], &Rows, &mut [f32]),
    /// The widest tile it takes (see [`Rows::new`]).
    widest: usize,
}

/// The kernel for this CPU, or `None` (then gemm).
fn kernel_for_this_cpu() -> Option<Kernel> {
    kernels_of_this_cpu().into_iter().next()
}

/// The kernels this CPU can run, widest first.
#[allow(unsafe_code)]
fn kernels_of_this_cpu() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut kernels = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            kernels.push(Kernel {
                // SAFETY: only chosen on a CPU with AVX-512F, checked just above.
                run: |p, x, o| unsafe { panel_avx512(p, x, o) },
                widest: TILE,
            });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            kernels.push(Kernel {
                // SAFETY: only chosen on a CPU with AVX2 and FMA, checked just above.
                run: |p, x, o| unsafe { panel_avx2(p, x, o) },
                widest: 3,
            });
        }
    }
    kernels
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn panel_avx512(panel: &[f32], x: &Rows, out: &mut [f32]) {
    panel_product(panel, x, out, |w, p, xs, o| match w {
        1 => x86::tile512::<1>(p, xs, o),
        2 => x86::tile512::<2>(p, xs, o),
        3 => x86::tile512::<3>(p, xs, o),
        4 => x86::tile512::<4>(p, xs, o),
        8 => x86::tile512::<8>(p, xs, o),
        _ => x86::tile512::<TILE>(p, xs, o),
    });
}

/// AVX2 has 16 vector registers: tiles of at most 3 rows (12 accumulators of 8 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn panel_avx2(panel: &[f32], x: &Rows, out: &mut [f32]) {
    panel_product(panel, x, out, |w, p, xs, o| match w {
        1 => x86::tile256::<1>(p, xs, o),
        2 => x86::tile256::<2>(p, xs, o),
        _ => x86::tile256::<3>(p, xs, o),
    });
}

impl Packed {
    /// `weight` `(out, in)` packed, when it is f32 on the CPU and this CPU has a kernel;
    /// `None` otherwise.
    pub(crate) fn new(weight: &Tensor) -> Result<Option<Arc<Self>>> {
        match kernel_for_this_cpu() {
            Some(kernel) => Self::with_kernel(weight, kernel),
            None => Ok(None),
        }
    }

    fn with_kernel(weight: &Tensor, kernel: Kernel) -> Result<Option<Arc<Self>>> {
        if !weight.device().is_cpu() || weight.dtype() != DType::F32 {
            return Ok(None);
        }
        let (out, inp) = weight.dims2()?;
        if out == 0 || inp == 0 {
            return Ok(None);
        }
        let weight = weight.contiguous()?;
        let (storage, layout) = weight.storage_and_layout();
        let candle_core::Storage::Cpu(storage) = &*storage else {
            return Ok(None);
        };
        let w = contiguous_f32(storage, layout, "pack", "the weight")?;
        let mut panels = vec![0f32; out.div_ceil(PANEL) * inp * PANEL];
        panels
            .par_chunks_mut(inp * PANEL)
            .enumerate()
            .for_each(|(p, panel)| {
                let cols = (out - p * PANEL).min(PANEL);
                for c in 0..cols {
                    let row = &w[(p * PANEL + c) * inp..(p * PANEL + c + 1) * inp];
                    for (k, &v) in row.iter().enumerate() {
                        panel[k * PANEL + c] = v;
                    }
                }
            });
        Ok(Some(Arc::new(Self {
            panels,
            out,
            inp,
            kernel,
        })))
    }

    /// Output width.
    pub(crate) fn out(&self) -> usize {
        self.out
    }

    /// `x W^T` for `x` `(rows, in)`, f32 on the CPU: `(rows, out)`, contiguous.
    pub(crate) fn matmul(self: &Arc<Self>, x: &Tensor) -> Result<Tensor> {
        Ok(x.contiguous()?
            .apply_op1_no_bwd(&Product(Arc::clone(self)))?)
    }
}

struct Product(Arc<Packed>);

impl CustomOp1 for Product {
    fn name(&self) -> &'static str {
        "packed-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.0;
        let (rows, inp) = match *layout.dims() {
            [rows, inp] => (rows, inp),
            ref dims => bail!("{}: x must be (rows, in), got {dims:?}", self.name()),
        };
        if inp != p.inp {
            bail!("{}: x has {inp} columns, the weight {}", self.name(), p.inp);
        }
        let mut y = vec![0f32; rows * p.out];
        if rows == 0 || inp == 0 {
            return Ok((CpuStorage::F32(y), Shape::from((rows, p.out))));
        }
        let x = contiguous_f32(storage, layout, self.name(), "x")?;
        let x = Rows::new(x, rows, inp, p.kernel.widest);
        let mut by_panel = vec![0f32; p.panels.len() / inp * rows];
        let run = |(out, panel): (&mut [f32], &[f32])| (p.kernel.run)(panel, &x, out);
        if p.panels.len() < PARALLEL_FROM {
            by_panel
                .chunks_mut(rows * PANEL)
                .zip(p.panels.chunks(inp * PANEL))
                .for_each(run);
        } else {
            by_panel
                .par_chunks_mut(rows * PANEL)
                .zip(p.panels.par_chunks(inp * PANEL))
                .for_each(run);
        }
        for (panel, block) in by_panel.chunks_exact(rows * PANEL).enumerate() {
            let cols = (p.out - panel * PANEL).min(PANEL);
            for (r, part) in block.chunks_exact(PANEL).enumerate() {
                let start = r * p.out + panel * PANEL;
                y[start..start + cols].copy_from_slice(&part[..cols]);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, p.out))))
    }
}

/// The rows of `x`, re-laid out for the kernel: tiles of a few rows, each `(in, width)` so
/// that a step over `in` reads one contiguous group of values, rows past the end zero.
struct Rows {
    data: Vec<f32>,
    tiles: Vec<RowTile>,
    inp: usize,
}

#[derive(Debug, Clone, Copy)]
struct RowTile {
    /// First row.
    row: usize,
    /// Rows of `x` in the tile (at most `width`).
    rows: usize,
    /// Rows the kernel multiplies: 1, 2, 3, 4, 8 or [`TILE`], at most the kernel's widest.
    width: usize,
    /// Where its values start in `data`.
    offset: usize,
}

impl Rows {
    /// Tiles of `widest` rows, and the rest in one tile of the next width up.
    fn new(x: &[f32], rows: usize, inp: usize, widest: usize) -> Self {
        let mut tiles = Vec::new();
        let (mut row, mut offset) = (0, 0);
        while row < rows {
            let left = rows - row;
            let width = [1, 2, 3, 4, 8, TILE]
                .into_iter()
                .find(|&w| w >= left.min(widest))
                .unwrap_or(widest);
            let n = left.min(width);
            tiles.push(RowTile {
                row,
                rows: n,
                width,
                offset,
            });
            row += n;
            offset += width * inp;
        }
        let mut data = vec![0f32; offset];
        for t in &tiles {
            for i in 0..t.rows {
                let src = &x[(t.row + i) * inp..(t.row + i + 1) * inp];
                for (k, &v) in src.iter().enumerate() {
                    data[t.offset + k * t.width + i] = v;
                }
            }
        }
        Self { data, tiles, inp }
    }
}

/// One panel times every row, tile by tile: `tile(width, panel, xs, out)` multiplies one.
#[inline(always)]
fn panel_product(
    panel: &[f32],
    x: &Rows,
    out: &mut [f32],
    tile: impl Fn(usize, &[f32], &[f32], &mut [f32]),
) {
    for t in &x.tiles {
        let xs = &x.data[t.offset..t.offset + t.width * x.inp];
        tile(
            t.width,
            panel,
            xs,
            &mut out[t.row * PANEL..(t.row + t.rows) * PANEL],
        );
    }
}

/// The kernels: `N` rows (`xs`: `(in, N)`) times one panel (`(in, PANEL)`), into the first
/// rows of `out` (`(rows, PANEL)`, rows ≤ N). Accumulators live in registers: `N` x 2
/// AVX-512 vectors, or `N` x 4 AVX2 ones.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::{
        __m256, __m512, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };

    use super::PANEL;

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn tile512<const N: usize>(panel: &[f32], xs: &[f32], out: &mut [f32]) {
        let mut acc: [[__m512; 2]; N] = [[_mm512_setzero_ps(); 2]; N];
        for (w, x) in panel.chunks_exact(PANEL).zip(xs.chunks_exact(N)) {
            // SAFETY: `w` holds PANEL = 32 values, the two vectors' 16 each.
            let (w0, w1) = unsafe {
                (
                    _mm512_loadu_ps(w.as_ptr()),
                    _mm512_loadu_ps(w[16..].as_ptr()),
                )
            };
            for (a, &v) in acc.iter_mut().zip(x) {
                let v = _mm512_set1_ps(v);
                a[0] = _mm512_fmadd_ps(v, w0, a[0]);
                a[1] = _mm512_fmadd_ps(v, w1, a[1]);
            }
        }
        for (o, a) in out.chunks_exact_mut(PANEL).zip(&acc) {
            // SAFETY: `o` holds PANEL = 32 values, the two vectors' 16 each.
            unsafe {
                _mm512_storeu_ps(o.as_mut_ptr(), a[0]);
                _mm512_storeu_ps(o[16..].as_mut_ptr(), a[1]);
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn tile256<const N: usize>(panel: &[f32], xs: &[f32], out: &mut [f32]) {
        let mut acc: [[__m256; 4]; N] = [[_mm256_setzero_ps(); 4]; N];
        for (w, x) in panel.chunks_exact(PANEL).zip(xs.chunks_exact(N)) {
            // SAFETY: `w` holds PANEL = 32 values, the four vectors' 8 each.
            let ws = unsafe {
                [
                    _mm256_loadu_ps(w.as_ptr()),
                    _mm256_loadu_ps(w[8..].as_ptr()),
                    _mm256_loadu_ps(w[16..].as_ptr()),
                    _mm256_loadu_ps(w[24..].as_ptr()),
                ]
            };
            for (a, &v) in acc.iter_mut().zip(x) {
                let v = _mm256_set1_ps(v);
                for (a, w) in a.iter_mut().zip(ws) {
                    *a = _mm256_fmadd_ps(v, w, *a);
                }
            }
        }
        for (o, a) in out.chunks_exact_mut(PANEL).zip(&acc) {
            for (o, a) in o.chunks_exact_mut(8).zip(a) {
                // SAFETY: `o` holds the vector's 8 values.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Largest difference relative to the largest magnitude of `want`.
    fn relative_diff(got: &Tensor, want: &Tensor) -> f32 {
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        diff.to_scalar::<f32>().unwrap() / scale.max(f32::MIN_POSITIVE)
    }

    /// Every kernel this CPU has, every tile width, a last panel partly empty, an odd inner
    /// width: the packed product is gemm's product up to rounding.
    #[test]
    fn packed_products_match_gemm() {
        let dev = Device::Cpu;
        let kernels = kernels_of_this_cpu();
        if kernels.is_empty() {
            eprintln!("skipped: this CPU has neither AVX-512F nor AVX2+FMA");
        }
        for (kernel, (out, inp)) in kernels
            .into_iter()
            .flat_map(|k| [(45, 7), (64, 576), (97, 130)].map(|s| (k, s)))
        {
            let w = Tensor::randn(0f32, 1., (out, inp), &dev).unwrap();
            let p = Packed::with_kernel(&w, kernel).unwrap().unwrap();
            for rows in [1, 2, 3, 4, 5, 9, 12, 13, 24, 25, 64] {
                let x = Tensor::randn(0f32, 1., (rows, inp), &dev).unwrap();
                let want = x.matmul(&w.t().unwrap()).unwrap();
                let got = p.matmul(&x).unwrap();
                assert_eq!(got.dims(), &[rows, out]);
                let d = relative_diff(&got, &want);
                let widest = kernel.widest;
                assert!(
                    d < 1e-5,
                    "tile {widest} out {out} in {inp} rows {rows}: {d}"
                );
            }
        }
    }

    /// A strided input (a transposed view) reads as its values, not its storage order.
    #[test]
    fn a_transposed_input_is_read_by_value() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (40, 16), &dev).unwrap();
        let Some(p) = Packed::new(&w).unwrap() else {
            return;
        };
        let xt = Tensor::randn(0f32, 1., (16, 5), &dev).unwrap();
        let x = xt.t().unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap();
        assert!(relative_diff(&p.matmul(&x).unwrap(), &want) < 1e-5);
    }

    #[test]
    fn a_wrong_width_is_an_error_and_other_dtypes_are_not_packed() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (8, 16), &dev).unwrap();
        if let Some(p) = Packed::new(&w).unwrap() {
            let x = Tensor::zeros((2, 15), DType::F32, &dev).unwrap();
            let err = p.matmul(&x).unwrap_err().to_string();
            assert!(err.contains("15 columns"), "{err}");
        }
        let bf16 = w.to_dtype(DType::BF16).unwrap();
        assert!(Packed::new(&bf16).unwrap().is_none());
    }
}
