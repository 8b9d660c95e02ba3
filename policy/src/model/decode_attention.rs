//! Attention of one new token per row over the KV cache, as one CPU kernel (sampling only).
//!
//! A decoding step's attention is tiny per head (one query, a few hundred keys), so the
//! general path (a batched matmul for the scores, scale, mask add, softmax, a second batched
//! matmul) spends most of its time dispatching and synchronising small ops. This kernel does
//! all of it in one pass per (row, head), the heads spread over rayon's pool. Same formula,
//! f32 throughout: `softmax(q k^T * scale + mask) v`, the max subtracted before `exp`.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::{dot, f32_storage};
use crate::error::Result;

/// `q` `(B, H, 1, hd)`, `k`/`v` `(B, kv_heads, L, hd)` (any strides with a unit last one),
/// `mask` additive `(B, L)` row-major, to `(B, H, 1, hd)`. Query head `h` reads KV head
/// `h / (H / kv_heads)` (Hugging Face's repeat_kv order).
pub(crate) fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &[f32],
    scale: f32,
) -> Result<Tensor> {
    Ok(q.contiguous()?
        .apply_op3_no_bwd(k, v, &DecodeAttention { mask, scale })?)
}

struct DecodeAttention<'a> {
    mask: &'a [f32],
    scale: f32,
}

/// Where one of `k`/`v`'s rows starts: `(offset, batch stride, head stride, position stride)`.
fn strides(layout: &Layout, hd: usize) -> candle_core::Result<(usize, usize, usize, usize)> {
    match *layout.stride() {
        [sb, sh, sl, 1] if layout.dims()[3] == hd => Ok((layout.start_offset(), sb, sh, sl)),
        _ => bail!(
            "decode attention: keys/values must be (B, kv_heads, L, {hd}) with a contiguous last \
             dimension, got dims {:?} strides {:?}",
            layout.dims(),
            layout.stride()
        ),
    }
}

impl CustomOp3 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, heads, t, hd) = ql.shape().dims4()?;
        let (kb, kv_heads, len, _) = kl.shape().dims4()?;
        if t != 1 || kb != b || kv_heads == 0 || heads % kv_heads != 0 || kl.dims() != vl.dims() {
            bail!(
                "decode attention: query {:?} does not fit keys {:?} / values {:?}",
                ql.dims(),
                kl.dims(),
                vl.dims()
            );
        }
        if self.mask.len() != b * len {
            bail!(
                "decode attention: mask has {} values, expected {b} rows x {len} keys",
                self.mask.len()
            );
        }
        let rep = heads / kv_heads;
        let q = f32_storage(qs, "decode attention", "queries")?;
        let q = &q[ql.start_offset()..ql.start_offset() + b * heads * hd];
        let k = f32_storage(ks, "decode attention", "keys")?;
        let v = f32_storage(vs, "decode attention", "values")?;
        let (k_off, k_sb, k_sh, k_sl) = strides(kl, hd)?;
        let (v_off, v_sb, v_sh, v_sl) = strides(vl, hd)?;
        let mut out = vec![0f32; b * heads * hd];
        out.par_chunks_mut(hd)
            .zip(q.par_chunks(hd))
            .enumerate()
            .for_each_init(
                || Vec::with_capacity(len),
                |scores, (i, (out, q))| {
                    let (row, group) = (i / heads, (i % heads) / rep);
                    let mask = &self.mask[row * len..(row + 1) * len];
                    let k_base = k_off + row * k_sb + group * k_sh;
                    let v_base = v_off + row * v_sb + group * v_sh;
                    scores.clear();
                    let mut max = f32::NEG_INFINITY;
                    for (j, m) in mask.iter().enumerate() {
                        let key = &k[k_base + j * k_sl..k_base + j * k_sl + hd];
                        let s = dot(q, key) * self.scale + m;
                        max = max.max(s);
                        scores.push(s);
                    }
                    let mut sum = 0f32;
                    for s in scores.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    for (j, s) in scores.iter().enumerate() {
                        let p = s / sum;
                        let value = &v[v_base + j * v_sl..v_base + j * v_sl + hd];
                        for (o, x) in out.iter_mut().zip(value) {
                            *o += p * x;
                        }
                    }
                },
            );
        Ok((CpuStorage::F32(out), Shape::from((b, heads, 1, hd))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::{self, Kernels};
    use crate::model::vector::max_diff;
    use candle_core::{DType, Device};

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
            .reshape((b, h, 1, hd))
            .unwrap()
    }

    #[test]
    fn matches_the_general_path_on_a_strided_cache_with_padding() {
        let dev = Device::Cpu;
        let (b, h, kvh, hd, cap, len) = (3, 6, 2, 20, 17, 11);
        let q = Tensor::randn(0f32, 1., (b, h, 1, hd), &dev).unwrap();
        // A cache buffer with room to spare, viewed up to `len` like KvCache::append returns.
        let k = Tensor::randn(0f32, 1., (b, kvh, cap, hd), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (b, kvh, cap, hd), &dev).unwrap();
        let (k, v) = (k.narrow(2, 0, len).unwrap(), v.narrow(2, 0, len).unwrap());
        let pads = [0usize, 3, 10];
        let mask: Vec<f32> = pads
            .iter()
            .flat_map(|&p| (0..len).map(move |j| if j < p { -1e9 } else { 0.0 }))
            .collect();
        let mask_t = Tensor::from_vec(mask.clone(), (b, 1, 1, len), &dev).unwrap();
        let scale = 0.25f32; // any scale: the model passes 1 / sqrt(hd)
        let got = decode_attention(&q, &k, &v, &mask, scale).unwrap();
        let want = reference(&q, &k, &v, &mask_t, f64::from(scale));
        let diff = max_diff(&got, &want);
        assert!(diff < 1e-5, "max |diff| {diff}");
    }

    #[test]
    fn rejects_shapes_that_do_not_fit() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((2, 4, 1, 8), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((2, 3, 5, 8), DType::F32, &dev).unwrap();
        let mask = vec![0f32; 10];
        let err = decode_attention(&q, &k, &k, &mask, 1.0).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        let k = Tensor::zeros((2, 2, 5, 8), DType::F32, &dev).unwrap();
        let err = decode_attention(&q, &k, &k, &mask[..9], 1.0).unwrap_err();
        assert!(err.to_string().contains("mask has 9 values"), "{err}");
    }
}
