//! f32 primitives of the CPU kernels: an `exp` in plain arithmetic and reductions with eight
//! independent lanes, written so that the compiler vectorises them (a float reduction in one
//! accumulator cannot be reordered, so it stays scalar), and access to a tensor's f32 values.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, bail};

/// Below this `exp` is under f32's smallest normal value: taken as 0.
const EXP_UNDERFLOW: f32 = -87.0;
/// Above this `exp` overflows f32: taken as infinity.
const EXP_OVERFLOW: f32 = 88.5;

/// `exp(d)` in plain arithmetic so that loops over it vectorise (libm's `expf` is a call per
/// element, and takes a slow errno-setting path where it underflows, as for masked keys).
/// Cephes' `expf`: `d = n ln2 + r`, `|r| <= ln2/2`, a degree-6 polynomial for `exp(r)`, `2^n`
/// through the exponent bits; within 3e-7 relative of `expf`. Below -87 it gives 0 (the exact
/// value is below 1.7e-38), above 88.5 infinity; NaN stays NaN.
#[inline(always)]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // see the comments
pub(crate) fn exp_f32(d: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer, which lands in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // `clamp` keeps a NaN (which must reach the loss check); `max`/`min` would not.
    let clamped = d.clamp(EXP_UNDERFLOW, EXP_OVERFLOW);
    let shifted = clamped * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    // n is in [-126, 128]: its two's complement sits in the low bits of `shifted`; n + 127 is
    // the biased exponent of 2^n. For n = 128 (d near 88.5) 2^n is split in two factors.
    let half = (shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32) >> 1;
    let other = (shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32) - half;
    let value = y
        * f32::from_bits(((half + 127) as u32) << 23)
        * f32::from_bits(((other + 127) as u32) << 23);
    if d < EXP_UNDERFLOW {
        0.0
    } else if d > EXP_OVERFLOW {
        f32::INFINITY
    } else {
        value
    }
}

/// Reductions with eight independent lanes, so that they vectorise. Inlined always, so
/// that a kernel compiled for a wider instruction set (see decode_attention.rs) gets them
/// in that set.
#[inline(always)]
pub(crate) fn max_of(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(tail, |a, &b| a.max(b))
}

#[inline(always)]
pub(crate) fn sum_of(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// All f32 values of a CPU storage (read them through the tensor's layout).
pub(crate) fn f32_storage<'s>(
    storage: &'s CpuStorage,
    op: &str,
    what: &str,
) -> candle_core::Result<&'s [f32]> {
    match storage {
        CpuStorage::F32(v) => Ok(v.as_slice()),
        other => bail!("{op}: {what} must be f32, got {:?}", other.dtype()),
    }
}

/// The f32 values of a contiguous CPU tensor, for the kernels of this module's siblings; `op`
/// and `what` name the kernel and the argument in the error.
pub(crate) fn contiguous_f32<'s>(
    storage: &'s CpuStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'s [f32]> {
    let data = f32_storage(storage, op, what)?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: {what} must be contiguous"),
    }
}

/// A matrix view of a tensor's values: `(rows, cols)` with any strides, such as the transposed
/// product of a decoding step's matmul (see linear.rs, `weight_matmul`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matrix<'s> {
    data: &'s [f32],
    offset: usize,
    row_stride: usize,
    col_stride: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<'s> Matrix<'s> {
    /// A rank-2 tensor with any strides, or a contiguous tensor of any rank as `(elements /
    /// last dimension, last dimension)`.
    pub(crate) fn new(
        storage: &'s CpuStorage,
        layout: &Layout,
        op: &str,
        what: &str,
    ) -> candle_core::Result<Self> {
        let data = f32_storage(storage, op, what)?;
        let dims = layout.dims();
        let cols = dims.last().copied().unwrap_or(1);
        let (row_stride, col_stride) = match (dims.len(), layout.stride()) {
            (2, &[rs, cs]) => (rs, cs),
            _ if layout.is_contiguous() => (cols, 1),
            _ => bail!(
                "{op}: {what} must be a matrix or contiguous, got dims {dims:?} strides {:?}",
                layout.stride()
            ),
        };
        let rows = layout.shape().elem_count().checked_div(cols).unwrap_or(0);
        let last = layout.start_offset()
            + rows.saturating_sub(1) * row_stride
            + cols.saturating_sub(1) * col_stride;
        if rows * cols > 0 && last >= data.len() {
            bail!("{op}: {what}'s layout reaches past its storage");
        }
        Ok(Self {
            data,
            offset: layout.start_offset(),
            row_stride,
            col_stride,
            rows,
            cols,
        })
    }

    /// Copies `len` values of row `row` from column `col` into `out`.
    #[inline(always)]
    pub(crate) fn read(&self, row: usize, col: usize, out: &mut [f32]) {
        let start = self.offset + row * self.row_stride + col * self.col_stride;
        if self.col_stride == 1 {
            out.copy_from_slice(&self.data[start..start + out.len()]);
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                *o = self.data[start + i * self.col_stride];
            }
        }
    }
}

/// Largest absolute difference between two tensors of the same shape (tests).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::cast_precision_loss)] // small test integers
    fn exp_matches_libm() {
        let mut worst = 0f32;
        for i in 0..=400_000 {
            let d = -87.0 + 175.0 * (i as f32) / 400_000.0;
            let (got, want) = (exp_f32(d), d.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-1e9), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(100.0), f32::INFINITY);
    }

    #[test]
    #[allow(clippy::cast_precision_loss)] // small test integers
    fn reductions_match_plain_loops() {
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let y: Vec<f32> = x.iter().map(|v| v * 0.5 + 1.0).collect();
        let plain_max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let plain_sum: f32 = x.iter().sum();
        let plain_dot: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(max_of(&x), plain_max);
        assert!((sum_of(&x) - plain_sum).abs() < 1e-4);
        assert!((dot(&x, &y) - plain_dot).abs() < 1e-3);
        assert_eq!(max_of(&[]), f32::NEG_INFINITY);
    }
}
