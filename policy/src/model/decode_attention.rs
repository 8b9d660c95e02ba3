//! One decoding step's attention on the CPU (sampling only): two kernels per layer instead of
//! a dozen small ops.
//!
//! A decoding step feeds one new token per row. The general path splits the stacked q/k/v
//! projection into heads (three copies), rotates q and k (two ops), writes k and v into the
//! cache (two more), then runs attention. For a small model each of those ops costs more in
//! dispatch and allocation than in arithmetic. Here [`append_kv`] rotates the new key and
//! writes it and the new value straight from the projection into the cache, in place, and
//! [`attend`] rotates each query head and runs `softmax(q k^T * scale + mask) v` over the
//! cache in one pass per (row, head), the heads spread over rayon's pool. Same formulas, f32
//! throughout, the max subtracted before `exp`; rotation is Hugging Face's rotate-half.

use candle_core::{CpuStorage, CustomOp2, InplaceOp2, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::{Matrix, dot, exp_f32, f32_storage, max_of, sum_of};
use crate::error::Result;
use crate::sampling::MASKED;

/// Most query heads per KV head the kernel takes (Llama-family models use up to 8).
const MAX_GROUP: usize = 64;

/// What one decoding step needs besides the tensors, computed once for all layers.
#[derive(Debug, Clone)]
pub(crate) struct DecodeStep {
    /// Rows in the batch.
    pub(crate) batch: usize,
    /// Tokens already cached: the new key and value go to this slot of every row.
    pub(crate) cached: usize,
    /// Additive mask, `(batch, cached + 1)` row-major.
    pub(crate) mask: Vec<f32>,
    /// Half-width rotary tables at each row's new position, `(batch, head_dim / 2)`.
    pub(crate) cos: Vec<f32>,
    pub(crate) sin: Vec<f32>,
}

/// The attention layer's shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Heads {
    /// Width of the stacked projection: `heads` queries, then `kv_heads` keys and values.
    fn width(self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
}

/// Rotates `x` by the half-width tables (`out[i] = x[i] cos - x[i+h] sin`,
/// `out[i+h] = x[i+h] cos + x[i] sin`) and multiplies by `scale`.
#[inline(always)]
fn rotate_into(out: &mut [f32], x: &[f32], cos: &[f32], sin: &[f32], scale: f32) {
    let half = cos.len();
    let (out1, out2) = out.split_at_mut(half);
    let (x1, x2) = x.split_at(half);
    for i in 0..half {
        out1[i] = (x1[i] * cos[i] - x2[i] * sin[i]) * scale;
        out2[i] = (x2[i] * cos[i] + x1[i] * sin[i]) * scale;
    }
}

/// Checks the step's tensors: `qkv` `(B, width)`, `kv` `(2, B, kv_heads, cap, head_dim)`
/// contiguous with room for the new token. Returns `cap`.
fn check(
    op: &str,
    step: &DecodeStep,
    heads: Heads,
    qkv: &Matrix,
    kv: &Layout,
) -> candle_core::Result<usize> {
    let b = step.batch;
    let keys = step.cached + 1;
    if (qkv.rows, qkv.cols) != (b, heads.width()) {
        bail!(
            "{op}: the stacked projection must be ({b}, {}), got ({}, {})",
            heads.width(),
            qkv.rows,
            qkv.cols
        );
    }
    let cap = match *kv.dims() {
        [2, kb, kvh, cap, hd]
            if kb == b && kvh == heads.kv_heads && hd == heads.head_dim && kv.is_contiguous() =>
        {
            cap
        }
        _ => bail!(
            "{op}: the cache must be a contiguous (2, {b}, {}, capacity, {}), got dims {:?}",
            heads.kv_heads,
            heads.head_dim,
            kv.dims()
        ),
    };
    if keys > cap {
        bail!("{op}: {keys} keys exceed the cache's capacity of {cap}");
    }
    if step.mask.len() != b * keys || step.cos.len() != b * heads.head_dim / 2 {
        bail!(
            "{op}: the step has {} mask values and {} rotary values, expected {b} x {keys} and \
             {b} x {}",
            step.mask.len(),
            step.cos.len(),
            heads.head_dim / 2
        );
    }
    if heads.kv_heads == 0
        || heads.heads > MAX_GROUP * heads.kv_heads
        || !heads.heads.is_multiple_of(heads.kv_heads)
        || !heads.head_dim.is_multiple_of(2)
    {
        bail!("{op}: {heads:?} is not a grouped-query layout");
    }
    Ok(cap)
}

/// Writes the step's keys (rotated) and values from `qkv` `(B, width)` (any strides: the
/// transposed product of the stacked projection is read in place) into slot
/// `step.cached` of the cache `kv` `(2, B, kv_heads, capacity, head_dim)`, in place.
pub(crate) fn append_kv(kv: &Tensor, qkv: &Tensor, step: &DecodeStep, heads: Heads) -> Result<()> {
    kv.inplace_op2(qkv, &AppendKv { step, heads })?;
    Ok(())
}

struct AppendKv<'a> {
    step: &'a DecodeStep,
    heads: Heads,
}

impl InplaceOp2 for AppendKv<'_> {
    fn name(&self) -> &'static str {
        "decode-append-kv"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> candle_core::Result<()> {
        let Heads {
            heads,
            kv_heads,
            head_dim: hd,
        } = self.heads;
        let qkv = Matrix::new(src, src_l, self.name(), "the stacked projection")?;
        let cap = check(self.name(), self.step, self.heads, &qkv, dst_l)?;
        let b = self.step.batch;
        let half = hd / 2;
        let mut k = vec![0f32; hd];
        let CpuStorage::F32(dst) = dst else {
            bail!("{}: the cache must be f32", self.name());
        };
        let dst =
            &mut dst[dst_l.start_offset()..dst_l.start_offset() + 2 * b * kv_heads * cap * hd];
        let (keys, values) = dst.split_at_mut(b * kv_heads * cap * hd);
        for row in 0..b {
            let cos = &self.step.cos[row * half..(row + 1) * half];
            let sin = &self.step.sin[row * half..(row + 1) * half];
            for h in 0..kv_heads {
                let slot = ((row * kv_heads + h) * cap + self.step.cached) * hd;
                qkv.read(row, (heads + h) * hd, &mut k);
                rotate_into(&mut keys[slot..slot + hd], &k, cos, sin, 1.0);
                qkv.read(
                    row,
                    (heads + kv_heads + h) * hd,
                    &mut values[slot..slot + hd],
                );
            }
        }
        Ok(())
    }
}

/// Attention of the step's queries (rotated here) from `qkv` `(B, width)` (any strides) over
/// the first `step.cached + 1` slots of the cache `kv` (after [`append_kv`]), to `(B, heads *
/// head_dim)`. Query head `h` reads KV head `h / (heads / kv_heads)` (Hugging Face's repeat_kv
/// order).
pub(crate) fn attend(
    qkv: &Tensor,
    kv: &Tensor,
    step: &DecodeStep,
    heads: Heads,
    scale: f32,
) -> Result<Tensor> {
    Ok(qkv.apply_op2_no_bwd(kv, &Attend { step, heads, scale })?)
}

struct Attend<'a> {
    step: &'a DecodeStep,
    heads: Heads,
    scale: f32,
}

impl CustomOp2 for Attend<'_> {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        qkv_s: &CpuStorage,
        qkv_l: &Layout,
        kv_s: &CpuStorage,
        kv_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Heads {
            heads,
            kv_heads,
            head_dim: hd,
        } = self.heads;
        let qkv = Matrix::new(qkv_s, qkv_l, self.name(), "the stacked projection")?;
        let cap = check(self.name(), self.step, self.heads, &qkv, kv_l)?;
        let b = self.step.batch;
        let keys = self.step.cached + 1;
        let rep = heads / kv_heads;
        let kv = f32_storage(kv_s, self.name(), "cache")?;
        let kv = &kv[kv_l.start_offset()..kv_l.start_offset() + 2 * b * kv_heads * cap * hd];
        let (k, v) = kv.split_at(b * kv_heads * cap * hd);
        let mut out = vec![0f32; b * heads * hd];
        let task = Task {
            op: self,
            qkv,
            keys_cache: k,
            values_cache: v,
            cap,
            keys,
        };
        let run = Task::for_this_cpu();
        // One task per (row, KV head): its `rep` query heads share one pass over the keys and
        // one over the values (the cache is most of the memory traffic).
        out.par_chunks_mut(rep * hd).enumerate().for_each_init(
            || (vec![0f32; hd], vec![0f32; rep * hd], vec![0f32; rep * keys]),
            |scratch, (i, out)| run(&task, i, scratch, out),
        );
        Ok((CpuStorage::F32(out), Shape::from((b, heads * hd))))
    }
}

/// What every (row, KV head) task of one [`Attend`] call reads.
struct Task<'a> {
    op: &'a Attend<'a>,
    qkv: Matrix<'a>,
    keys_cache: &'a [f32],
    values_cache: &'a [f32],
    cap: usize,
    keys: usize,
}

/// A task's scratch: one query head read, the group's rotated queries, their scores.
type Scratch = (Vec<f32>, Vec<f32>, Vec<f32>);

type RunTask = fn(&Task, usize, &mut Scratch, &mut [f32]);

impl Task<'_> {
    /// [`Task::run`] compiled for the widest instruction set this CPU has (AVX-512F, AVX2,
    /// or the baseline). The loops keep the same lanes and the same order of operations in
    /// every build (no fused multiply-adds), so all three give the same bits.
    #[allow(unsafe_code)]
    fn for_this_cpu() -> RunTask {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: only chosen on a CPU with AVX-512F, checked just above.
                return |t, i, s, o| unsafe { t.run_avx512(i, s, o) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: only chosen on a CPU with AVX2, checked just above.
                return |t, i, s, o| unsafe { t.run_avx2(i, s, o) };
            }
        }
        |t, i, s, o| t.run(i, s, o)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn run_avx512(&self, task: usize, scratch: &mut Scratch, out: &mut [f32]) {
        self.run(task, scratch, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_avx2(&self, task: usize, scratch: &mut Scratch, out: &mut [f32]) {
        self.run(task, scratch, out);
    }

    /// Task `task` = (row, KV head): the group's `rep` query heads' outputs into `out`.
    #[inline(always)]
    fn run(&self, task: usize, (x, q, scores): &mut Scratch, out: &mut [f32]) {
        let step = self.op.step;
        let Heads {
            kv_heads,
            head_dim: hd,
            ..
        } = self.op.heads;
        let (keys, half, rep) = (self.keys, hd / 2, q.len() / hd);
        let (row, group) = (task / kv_heads, task % kv_heads);
        let cos = &step.cos[row * half..(row + 1) * half];
        let sin = &step.sin[row * half..(row + 1) * half];
        for (r, q) in q.chunks_exact_mut(hd).enumerate() {
            self.qkv.read(row, (group * rep + r) * hd, x);
            rotate_into(q, x, cos, sin, self.op.scale);
        }
        // A row's left padding (masked slots before its first token) contributes exactly
        // nothing: skip it, so a short row in a batch of long ones reads only its own keys
        // and values. (A row masked throughout keeps every slot, as the plain softmax would.)
        let mask = &step.mask[row * keys..(row + 1) * keys];
        let first = match mask.iter().take_while(|&&m| m <= MASKED).count() {
            all if all == keys => 0,
            first => first,
        };
        let (mask, live) = (&mask[first..], keys - first);
        let base = (row * kv_heads + group) * self.cap * hd;
        let span = base + first * hd..base + keys * hd;
        let (k, v) = (&self.keys_cache[span.clone()], &self.values_cache[span]);
        let scores = &mut scores[..rep * live];
        for (j, (key, m)) in k.chunks_exact(hd).zip(mask).enumerate() {
            for (r, q) in q.chunks_exact(hd).enumerate() {
                scores[r * live + j] = dot(q, key) + m;
            }
        }
        let mut inv_sums = [0f32; MAX_GROUP];
        for (scores, inv) in scores.chunks_exact_mut(live).zip(&mut inv_sums) {
            let max = max_of(scores);
            for s in scores.iter_mut() {
                *s = exp_f32(*s - max);
            }
            *inv = 1.0 / sum_of(scores);
        }
        for (j, value) in v.chunks_exact(hd).enumerate() {
            for (r, out) in out.chunks_exact_mut(hd).enumerate() {
                let p = scores[r * live + j];
                for (o, x) in out.iter_mut().zip(value) {
                    *o += p * x;
                }
            }
        }
        for (out, inv) in out.chunks_exact_mut(hd).zip(inv_sums) {
            for o in out {
                *o *= inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::{self, Kernels};
    use crate::model::vector::max_diff;
    use candle_core::{D, Device};

    /// The general path: batched matmuls, mask add, softmax.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Tensor {
        let (b, h, _, hd) = q.dims4().unwrap();
        let kvh = k.dim(1).unwrap();
        let len = k.dim(2).unwrap();
        let qg = q.reshape((b, kvh, h / kvh, hd)).unwrap();
        let scores = (qg.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .reshape((b, h, 1, len))
            .unwrap()
            .broadcast_add(mask)
            .unwrap();
        let probs = ops::softmax_last(&scores, Kernels::Fused).unwrap();
        probs
            .reshape((b, kvh, h / kvh, len))
            .unwrap()
            .matmul(&v.contiguous().unwrap())
            .unwrap()
            .reshape((b, h * hd))
            .unwrap()
    }

    fn setup(heads: Heads, b: usize, cap: usize, cached: usize) -> (Tensor, Tensor, DecodeStep) {
        let dev = Device::Cpu;
        let half = heads.head_dim / 2;
        // Stored column-major, as the transposed product of a decoding step's matmul.
        let qkv = Tensor::randn(0f32, 1., (heads.width(), b), &dev)
            .unwrap()
            .t()
            .unwrap();
        let kv =
            Tensor::randn(0f32, 1., (2, b, heads.kv_heads, cap, heads.head_dim), &dev).unwrap();
        let keys = cached + 1;
        // No padding, some, all but the new slot, and (a row no decoding step makes) none
        // unmasked.
        let pads = [0usize, 3, cached, keys];
        let mask = (0..b)
            .flat_map(|r| (0..keys).map(move |j| if j < pads[r % 4] { -1e9 } else { 0.0 }))
            .collect();
        let angle = |r: usize, i: usize| f32::from(u16::try_from(r * 7 + i).unwrap()) * 0.37;
        let cos = (0..b * half)
            .map(|x| angle(x / half, x % half).cos())
            .collect();
        let sin = (0..b * half)
            .map(|x| angle(x / half, x % half).sin())
            .collect();
        let step = DecodeStep {
            batch: b,
            cached,
            mask,
            cos,
            sin,
        };
        (qkv, kv, step)
    }

    /// Six query heads over two KV heads.
    fn grouped(head_dim: usize) -> Heads {
        Heads {
            heads: 6,
            kv_heads: 2,
            head_dim,
        }
    }

    #[test]
    fn matches_the_general_path_with_padding_and_grouped_heads() {
        let heads = grouped(20);
        let (b, cap, cached) = (4, 17, 10);
        let (qkv, kv, step) = setup(heads, b, cap, cached);
        let before = kv.copy().unwrap();
        append_kv(&kv, &qkv, &step, heads).unwrap();
        let scale = 0.25f32; // any scale: the model passes 1 / sqrt(head_dim)
        let got = attend(&qkv, &kv, &step, heads, scale).unwrap();

        // The general path: split into heads, rotate with candle-nn's kernel, attend.
        let dev = Device::Cpu;
        let hd = heads.head_dim;
        let split = |from: usize, n: usize| {
            qkv.narrow(D::Minus1, from * hd, n * hd)
                .unwrap()
                .reshape((b, 1, n, hd))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let cos = Tensor::from_vec(step.cos.clone(), (b, 1, hd / 2), &dev).unwrap();
        let sin = Tensor::from_vec(step.sin.clone(), (b, 1, hd / 2), &dev).unwrap();
        let q = ops::rope(&split(0, heads.heads), &cos, &sin, Kernels::Fused).unwrap();
        let k_new = ops::rope(&split(heads.heads, 2), &cos, &sin, Kernels::Fused).unwrap();
        let v_new = split(heads.heads + 2, 2);
        let keys = cached + 1;
        let (k, v) = (kv.get(0).unwrap(), kv.get(1).unwrap());
        assert!(max_diff(&k.narrow(2, cached, 1).unwrap(), &k_new) < 1e-6);
        assert!(max_diff(&v.narrow(2, cached, 1).unwrap(), &v_new) < 1e-6);
        // Nothing else in the cache moved.
        for (now, was) in [(&k, before.get(0).unwrap()), (&v, before.get(1).unwrap())] {
            assert!(
                max_diff(
                    &now.narrow(2, 0, cached).unwrap(),
                    &was.narrow(2, 0, cached).unwrap()
                ) == 0.0
            );
            let rest = cap - keys;
            assert!(
                max_diff(
                    &now.narrow(2, keys, rest).unwrap(),
                    &was.narrow(2, keys, rest).unwrap()
                ) == 0.0
            );
        }
        let mask = Tensor::from_vec(step.mask.clone(), (b, 1, 1, keys), &dev).unwrap();
        let (k, v) = (k.narrow(2, 0, keys).unwrap(), v.narrow(2, 0, keys).unwrap());
        let want = reference(&q, &k, &v, &mask, f64::from(scale));
        let diff = max_diff(&got, &want);
        assert!(diff < 1e-5, "max |diff| {diff}");
    }

    #[test]
    fn the_build_for_this_cpu_gives_the_baseline_bits() {
        let heads = grouped(40);
        let (b, cap, cached) = (4, 90, 70);
        let (qkv, kv, step) = setup(heads, b, cap, cached);
        append_kv(&kv, &qkv, &step, heads).unwrap();
        let got = attend(&qkv, &kv, &step, heads, 0.3).unwrap();
        // The same tasks run through the baseline build of the loop.
        let op = Attend {
            step: &step,
            heads,
            scale: 0.3,
        };
        let (qkv_s, qkv_l) = qkv.storage_and_layout();
        let (kv_s, kv_l) = kv.storage_and_layout();
        let (candle_core::Storage::Cpu(qkv_s), candle_core::Storage::Cpu(kv_s)) = (&*qkv_s, &*kv_s)
        else {
            panic!("cpu tensors");
        };
        let values = &f32_storage(kv_s, "test", "cache").unwrap()[kv_l.start_offset()..];
        let (k, v) = values.split_at(b * heads.kv_heads * cap * heads.head_dim);
        let task = Task {
            op: &op,
            qkv: Matrix::new(qkv_s, qkv_l, "test", "qkv").unwrap(),
            keys_cache: k,
            values_cache: v,
            cap,
            keys: cached + 1,
        };
        let (hd, rep) = (heads.head_dim, heads.heads / heads.kv_heads);
        let mut want = vec![0f32; b * heads.heads * hd];
        let mut scratch = (
            vec![0f32; hd],
            vec![0f32; rep * hd],
            vec![0f32; rep * (cached + 1)],
        );
        for (i, out) in want.chunks_exact_mut(rep * hd).enumerate() {
            task.run(i, &mut scratch, out);
        }
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn rejects_shapes_that_do_not_fit() {
        let heads = Heads {
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let (qkv, kv, mut step) = setup(heads, 2, 5, 4);
        let other = Heads { heads: 6, ..heads };
        let err = attend(&qkv, &kv, &step, other, 1.0).unwrap_err();
        assert!(err.to_string().contains("stacked projection"), "{err}");
        let err = append_kv(&kv.narrow(3, 0, 4).unwrap(), &qkv, &step, heads).unwrap_err();
        assert!(err.to_string().contains("the cache must be"), "{err}");
        step.cached = 5;
        let err = append_kv(&kv, &qkv, &step, heads).unwrap_err();
        assert!(
            err.to_string().contains("exceed the cache's capacity"),
            "{err}"
        );
        step.cached = 4;
        step.mask.pop();
        let err = attend(&qkv, &kv, &step, heads, 1.0).unwrap_err();
        assert!(err.to_string().contains("mask values"), "{err}");
    }
}
