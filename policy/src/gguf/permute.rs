//! The q/k row permutation between Hugging Face's rotate-half RoPE and GGUF's interleaved RoPE.
//!
//! Hugging Face llama rotates, within each head of dimension `d`, the pair of coordinates
//! `(i, i + d/2)` by angle `pos * theta_i` ("rotate half"). llama.cpp rotates the adjacent
//! pair `(2i, 2i + 1)` ("interleaved"). So that the same weights give the same attention,
//! llama.cpp's `convert_hf_to_gguf.py` permutes the output rows of `q_proj` (per attention
//! head) and `k_proj` (per key/value head) when it writes a GGUF:
//!
//! ```text
//! w.reshape(heads, 2, d/2, in).swapaxes(1, 2).reshape(heads * d, in)
//! ```
//!
//! i.e. HF row `h*d + j*(d/2) + i` (half `j`, pair `i`) becomes GGUF row `h*d + 2i + j`.
//! Our decoder uses the Hugging Face convention, so the loader applies the inverse
//! ([`unpermute_rope_rows`]) and gets back the original HF layout (up to quantization).
//! Rotating either layout gives the same vectors up to the same per-head reordering of
//! coordinates, so attention scores `q·k` are identical; the tests check exactly that.

use candle_core::Tensor;

fn half_and_cols(w: &Tensor, heads: usize) -> candle_core::Result<(usize, usize, usize)> {
    let (rows, cols) = w.dims2()?;
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        candle_core::bail!(
            "cannot split {rows} projection rows into {heads} heads of even dimension"
        );
    }
    Ok((rows, rows / heads / 2, cols))
}

/// Hugging Face layout → GGUF layout: what llama.cpp's converter does to `q_proj` / `k_proj`.
/// `w` is `(heads * head_dim, in_features)`.
pub fn permute_rope_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, half, cols) = half_and_cols(w, heads)?;
    w.reshape((heads, 2, half, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// GGUF layout → Hugging Face layout: the inverse of [`permute_rope_rows`], applied by the
/// loader to `attn_q` (with the attention heads) and `attn_k` (with the key/value heads).
pub fn unpermute_rope_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, half, cols) = half_and_cols(w, heads)?;
    w.reshape((heads, half, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::rotary_emb::{rope, rope_i};

    use super::*;
    use crate::model::vector::max_diff as max_abs_diff;

    /// `(t, d/2)` cos/sin tables for positions `0..t`, base 10000 — the same for both conventions.
    fn rope_tables(t: usize, d: usize, dev: &Device) -> (Tensor, Tensor) {
        let d_f = f32::from(u16::try_from(d).unwrap());
        let t_f = f32::from(u16::try_from(t).unwrap());
        let inv = Tensor::arange_step(0f32, d_f, 2.0, dev)
            .unwrap()
            .affine(-f64::from(10_000f32.ln() / d_f), 0.0)
            .unwrap()
            .exp()
            .unwrap()
            .reshape((1, d / 2))
            .unwrap();
        let pos = Tensor::arange(0f32, t_f, dev)
            .unwrap()
            .reshape((t, 1))
            .unwrap();
        let angles = pos.broadcast_mul(&inv).unwrap();
        (angles.cos().unwrap(), angles.sin().unwrap())
    }

    /// `x (t, in) @ w^T` split into heads: `(1, heads, t, d)`.
    fn project(x: &Tensor, w: &Tensor, heads: usize) -> Tensor {
        let (t, _) = x.dims2().unwrap();
        let d = w.dims2().unwrap().0 / heads;
        x.matmul(&w.t().unwrap())
            .unwrap()
            .reshape((1, t, heads, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    }

    /// Causal-free attention scores `(heads, t, t)` with grouped kv heads.
    fn scores(q: &Tensor, k: &Tensor, heads: usize, kv_heads: usize) -> Tensor {
        let group = heads / kv_heads;
        let per_head: Vec<Tensor> = (0..heads)
            .map(|h| {
                let qh = q.get(0).unwrap().get(h).unwrap();
                let kh = k.get(0).unwrap().get(h / group).unwrap();
                qh.matmul(&kh.t().unwrap()).unwrap()
            })
            .collect();
        Tensor::stack(&per_head, 0).unwrap()
    }

    #[test]
    fn permutation_matches_llama_cpp_index_formula() {
        // One head of dimension 4: HF rows [a0 a1 | b0 b1] -> GGUF rows [a0 b0 a1 b1].
        let dev = Device::Cpu;
        let hf = Tensor::from_vec(vec![0f32, 1., 2., 3.], (4, 1), &dev).unwrap();
        let gguf = permute_rope_rows(&hf, 1).unwrap();
        assert_eq!(
            gguf.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 2., 1., 3.]
        );
        // Two heads of dimension 4.
        let hf = Tensor::arange(0f32, 8., &dev)
            .unwrap()
            .reshape((8, 1))
            .unwrap();
        let gguf = permute_rope_rows(&hf, 2).unwrap();
        assert_eq!(
            gguf.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 2., 1., 3., 4., 6., 5., 7.]
        );
        assert_eq!(
            unpermute_rope_rows(&gguf, 2)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            [0., 1., 2., 3., 4., 5., 6., 7.]
        );
    }

    #[test]
    fn unpermute_inverts_permute() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (72, 5), &dev).unwrap();
        for heads in [1, 3, 9, 36] {
            let back = unpermute_rope_rows(&permute_rope_rows(&w, heads).unwrap(), heads).unwrap();
            assert_eq!(max_abs_diff(&back, &w), 0.0, "heads {heads}");
        }
        assert!(unpermute_rope_rows(&w, 5).is_err());
        assert!(unpermute_rope_rows(&w, 0).is_err());
    }

    /// The property the loader relies on: interleaved RoPE on the GGUF-layout weights and
    /// rotate-half RoPE on the un-permuted weights give the same attention scores.
    #[test]
    fn interleaved_rope_on_gguf_layout_equals_rotate_half_on_unpermuted() {
        let dev = Device::Cpu;
        for (heads, kv_heads, d, width, t) in [(9, 3, 8, 12, 6), (2, 1, 4, 5, 3), (4, 4, 16, 7, 9)]
        {
            let wq_gguf = Tensor::randn(0f32, 1., (heads * d, width), &dev).unwrap();
            let wk_gguf = Tensor::randn(0f32, 1., (kv_heads * d, width), &dev).unwrap();
            let x = Tensor::randn(0f32, 1., (t, width), &dev).unwrap();
            let (cos, sin) = rope_tables(t, d, &dev);

            let q_i = rope_i(&project(&x, &wq_gguf, heads), &cos, &sin).unwrap();
            let k_i = rope_i(&project(&x, &wk_gguf, kv_heads), &cos, &sin).unwrap();
            let interleaved = scores(&q_i, &k_i, heads, kv_heads);

            let wq_hf = unpermute_rope_rows(&wq_gguf, heads).unwrap();
            let wk_hf = unpermute_rope_rows(&wk_gguf, kv_heads).unwrap();
            let q_h = rope(&project(&x, &wq_hf, heads), &cos, &sin).unwrap();
            let k_h = rope(&project(&x, &wk_hf, kv_heads), &cos, &sin).unwrap();
            let rotate_half = scores(&q_h, &k_h, heads, kv_heads);

            let diff = max_abs_diff(&interleaved, &rotate_half);
            assert!(
                diff < 1e-4,
                "heads {heads}/{kv_heads} d {d}: max diff {diff}"
            );

            // And the check has teeth: without un-permuting, rotate-half gives other scores.
            let q_wrong = rope(&project(&x, &wq_gguf, heads), &cos, &sin).unwrap();
            let k_wrong = rope(&project(&x, &wk_gguf, kv_heads), &cos, &sin).unwrap();
            let wrong = scores(&q_wrong, &k_wrong, heads, kv_heads);
            assert!(max_abs_diff(&interleaved, &wrong) > 1e-2);
        }
    }
}
