//! Attention for training and scoring, `softmax(q k^T * scale + mask) v`, as one CPU kernel
//! with its own backward that never holds the `(B, heads, T, keys)` scores.
//!
//! Built from matmuls and a softmax, attention keeps the scores and the probabilities of every
//! layer for the backward and writes as much again for their gradients: for SmolLM2 at 1,024
//! tokens, 2 x 9 x 1024^2 f32 (75 MB) per layer and row, 2.3 GB over its 30 layers. Here, in
//! the manner of FlashAttention (Dao et al., 2022), each task takes a block of queries and
//! walks the keys tile by tile with an online softmax (a running max and sum per row; the
//! partial output is rescaled when the max grows), and only the max and the sum of each row
//! are kept. The backward recomputes each tile's probabilities from them. What stays between
//! forward and backward is the inputs, the output and two floats per row and head.
//!
//! - **Grouped-query attention**: the `rep` query heads that share a KV head are stacked into
//!   the rows of one tile (Hugging Face's `repeat_kv` order: head `g * rep + r` reads KV head
//!   `g`), so each key tile is read once per group and the products are `rep` times taller.
//! - **Masks**: any additive `(B or 1, 1, T, keys)` mask, exactly as the unfused path adds it.
//!   A key whose mask value is at most [`HIDDEN`] gets probability exactly 0 there (its `exp`
//!   underflows against any visible key), so a block of queries only visits the keys from the
//!   first to the last that one of its rows sees: the causal mask halves the work, left padding
//!   trims more. A row that sees no key at all (a padding position of a left-padded prefill)
//!   visits every key, as the unfused path computes it.
//! - **Products**: gemm's kernels through candle's CPU backend ([`BackendStorage::matmul`] on
//!   strided views, no copies of K or V). arlas's own loops are compiled for baseline x86-64
//!   (SSE2) while gemm picks AVX-512 at run time, several times faster on the tiles' products.
//! - **Stored per row**: the max and the sum separately, not their log-sum-exp: for a row that
//!   sees no key the max is near the mask value (-1e9), where adding `ln(sum)` in f32 is lost
//!   to rounding and the recomputed probabilities would be wrong.
//! - **Backward** in two passes so that every output block has exactly one writer: by key block
//!   for dK and dV (walking the query blocks that see it), by query block for dQ. Each pass
//!   recomputes the probabilities and `dP = dO V^T`, so a pair of tiles costs 7 products instead
//!   of the 5 of a single pass; in exchange there are no per-thread partial sums to add up and
//!   the result does not depend on the number of threads (a test).
//!
//! CPU and f32 only, like the other kernels ([`super::ops::Ops::native`]); elsewhere the
//! decoder keeps the differentiable path (see mod.rs).

use std::ops::Range;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor, bail};
use rayon::prelude::*;

use super::vector::{contiguous_f32, dot, exp_f32, max_of, sum_of};
use crate::error::Result;
use crate::sampling::MASKED;

/// Query positions per block (times `rep` stacked heads: 192 rows for SmolLM2). With
/// [`KEY_TILE`] a tile of scores is 192 x 128 f32 (96 KB) and the block's queries and output
/// 48 KB each, which stay in a core's L2 cache, while each product (about 1.6 M multiply-adds)
/// is large enough for gemm to run near its peak. SmolLM2 at 1,024 tokens gives 48 tasks per
/// row of the batch, enough to keep the cores busy although causal blocks differ in cost.
const QUERY_BLOCK: usize = 64;
/// Keys per tile (see [`QUERY_BLOCK`]); tiles start at multiples of it.
const KEY_TILE: usize = 128;
/// Mask values at or below this hide their key: `exp` of the score then underflows to exactly
/// 0 next to any visible key, so skipping the key changes nothing. Half of the mask value the
/// crate uses, so that rounding never moves a hidden key across.
const HIDDEN: f32 = MASKED / 2.0;

const NAME: &str = "flash attention";

/// Attention of `q` `(B, heads, T, hd)` over `k` and `v` `(B, kv_heads, keys, hd)` with an
/// additive `mask` `(B or 1, 1, T, keys)`, differentiable in `q`, `k` and `v`; the result is
/// `(B, T, heads * hd)`, ready for the output projection.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let (b, heads, t, hd) = q.dims4()?;
    let op = FlashAttention {
        scale,
        mask: mask.map(Tensor::contiguous).transpose()?,
    };
    // One buffer: the output (B, T, heads, hd) followed by each row's max and sum.
    let both = q
        .contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?;
    Ok(both
        .narrow(0, 0, b * t * heads * hd)?
        .reshape((b, t, heads * hd))?)
}

struct FlashAttention {
    scale: f32,
    /// Read through its storage by the kernels: a fourth argument the op does not have, and no
    /// gradient.
    mask: Option<Tensor>,
}

/// The shapes of one call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    heads: usize,
    kv_heads: usize,
    /// Query heads per KV head.
    rep: usize,
    queries: usize,
    keys: usize,
    width: usize,
}

impl Dims {
    fn new(q: &Layout, k: &Layout, v: &Layout) -> candle_core::Result<Self> {
        let (batch, heads, queries, width) = q.shape().dims4()?;
        let (kb, kv_heads, keys, kw) = k.shape().dims4()?;
        if kb != batch || kw != width || v.dims() != k.dims() {
            bail!(
                "{NAME}: q {:?}, k {:?} and v {:?} do not fit together",
                q.dims(),
                k.dims(),
                v.dims()
            );
        }
        if kv_heads == 0 || heads % kv_heads != 0 {
            bail!("{NAME}: {heads} query heads cannot share {kv_heads} kv heads");
        }
        if keys == 0 || width == 0 {
            bail!(
                "{NAME}: needs at least one key and a nonzero head width, got k {:?}",
                k.dims()
            );
        }
        Ok(Self {
            batch,
            heads,
            kv_heads,
            rep: heads / kv_heads,
            queries,
            keys,
            width,
        })
    }

    fn out_len(&self) -> usize {
        self.batch * self.queries * self.heads * self.width
    }

    /// Offset of `(b, h, t)` in q `(B, heads, T, hd)`.
    fn q_at(&self, b: usize, h: usize, t: usize) -> usize {
        ((b * self.heads + h) * self.queries + t) * self.width
    }

    /// Offset of `(b, g, key)` in k or v `(B, kv_heads, keys, hd)`.
    fn kv_at(&self, b: usize, g: usize, key: usize) -> usize {
        ((b * self.kv_heads + g) * self.keys + key) * self.width
    }

    /// Index of `(b, t, h)` among the rows of the output `(B, T, heads, hd)`; the row's max and
    /// sum have the same index.
    fn row(&self, b: usize, t: usize, h: usize) -> usize {
        (b * self.queries + t) * self.heads + h
    }

    fn query_blocks(&self) -> usize {
        self.queries.div_ceil(QUERY_BLOCK)
    }

    fn queries_of(&self, block: usize) -> Range<usize> {
        block * QUERY_BLOCK..((block + 1) * QUERY_BLOCK).min(self.queries)
    }

    fn keys_of(&self, block: usize) -> Range<usize> {
        block * KEY_TILE..((block + 1) * KEY_TILE).min(self.keys)
    }

    /// `(b, g, block)` of task `i` of `blocks` blocks per KV head.
    fn task(&self, i: usize, blocks: usize) -> (usize, usize, usize) {
        (
            i / (self.kv_heads * blocks),
            (i / blocks) % self.kv_heads,
            i % blocks,
        )
    }
}

/// The mask's values and, per mask row, the keys that row has to visit.
struct Mask<'a> {
    values: Option<&'a [f32]>,
    /// One set of rows per batch row (else one shared by all).
    per_row: bool,
    queries: usize,
    keys: usize,
    /// Per mask row: from its first to its last visible key, or every key if none is visible.
    spans: Vec<Range<usize>>,
}

impl<'a> Mask<'a> {
    fn new(values: Option<(&'a [f32], &Layout)>, dims: &Dims) -> candle_core::Result<Self> {
        let (queries, keys) = (dims.queries, dims.keys);
        let Some((values, layout)) = values else {
            return Ok(Self {
                values: None,
                per_row: false,
                queries,
                keys,
                spans: vec![0..keys; queries],
            });
        };
        let (mb, one, mt, mk) = layout.shape().dims4()?;
        if !(mb == dims.batch || mb == 1) || one != 1 || mt != queries || mk != keys {
            bail!(
                "{NAME}: mask {:?} does not fit {} rows of {queries} queries over {keys} keys",
                layout.dims(),
                dims.batch
            );
        }
        let spans = values
            .par_chunks(keys)
            .map(|row| {
                let visible = |&m: &f32| m > HIDDEN;
                match row.iter().position(visible) {
                    Some(first) => first..keys - row.iter().rev().position(visible).unwrap_or(0),
                    None => 0..keys,
                }
            })
            .collect();
        Ok(Self {
            values: Some(values),
            per_row: mb > 1,
            queries,
            keys,
            spans,
        })
    }

    fn mask_row(&self, b: usize) -> usize {
        if self.per_row { b } else { 0 }
    }

    /// Mask values of query `t` of batch row `b` over `keys`, if there is a mask.
    fn values(&self, b: usize, t: usize, keys: &Range<usize>) -> Option<&[f32]> {
        let start = (self.mask_row(b) * self.queries + t) * self.keys;
        self.values
            .map(|v| &v[start + keys.start..start + keys.end])
    }

    /// The keys that the queries `rows` of batch row `b` visit together.
    fn span(&self, b: usize, rows: &Range<usize>) -> Range<usize> {
        let base = self.mask_row(b) * self.queries;
        let spans = &self.spans[base + rows.start..base + rows.end];
        let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end).max().unwrap_or(0);
        start..end
    }
}

/// A tensor's f32 values on the CPU, with its storage for the products.
#[derive(Clone, Copy)]
struct Input<'a> {
    storage: &'a CpuStorage,
    values: &'a [f32],
    /// Where `values` start in the storage.
    start: usize,
}

impl<'a> Input<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<Self> {
        Ok(Self {
            storage,
            values: contiguous_f32(storage, layout, NAME, what)?,
            start: layout.start_offset(),
        })
    }

    fn from_storage(
        storage: &'a Storage,
        layout: &Layout,
        what: &str,
    ) -> candle_core::Result<Self> {
        match storage {
            Storage::Cpu(s) => Self::new(s, layout, what),
            _ => bail!("{NAME}: {what} must be on the CPU"),
        }
    }

    /// `rows` rows of `width` values from `offset`, as a matrix.
    fn rows(&self, offset: usize, width: usize) -> View<'a> {
        View {
            storage: self.storage,
            offset: self.start + offset,
            row_stride: width,
            col_stride: 1,
        }
    }

    /// The transpose of the rows from `offset`: `(width, rows)`.
    fn rows_t(&self, offset: usize, width: usize) -> View<'a> {
        View {
            storage: self.storage,
            offset: self.start + offset,
            row_stride: 1,
            col_stride: width,
        }
    }
}

/// A strided matrix in a CPU storage.
#[derive(Clone, Copy)]
struct View<'a> {
    storage: &'a CpuStorage,
    offset: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A task's own `(rows, cols)` buffer, row-major.
    fn own(storage: &'a CpuStorage, cols: usize) -> Self {
        Self {
            storage,
            offset: 0,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Its transpose.
    fn own_t(storage: &'a CpuStorage, cols: usize) -> Self {
        Self {
            storage,
            offset: 0,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// The view as a `(rows, cols)` layout, checked against the storage: candle's product
    /// reads through the strides unchecked.
    fn layout(&self, rows: usize, cols: usize) -> candle_core::Result<Layout> {
        let len = match self.storage {
            CpuStorage::F32(v) => v.len(),
            other => bail!("{NAME}: values must be f32, got {:?}", other.dtype()),
        };
        let reach = |n: usize, stride: usize| n.checked_sub(1).map(|n| n * stride);
        let last = match (reach(rows, self.row_stride), reach(cols, self.col_stride)) {
            (Some(r), Some(c)) => self.offset + r + c,
            _ => bail!("{NAME}: an empty ({rows}, {cols}) tile"),
        };
        if last >= len {
            bail!("{NAME}: a ({rows}, {cols}) tile reaches past its {len} values");
        }
        Ok(Layout::new(
            Shape::from((rows, cols)),
            vec![self.row_stride, self.col_stride],
            self.offset,
        ))
    }
}

/// `a (m, k) x b (k, n)` as a new row-major `(m, n)` buffer.
fn matmul(a: View, b: View, m: usize, k: usize, n: usize) -> candle_core::Result<Vec<f32>> {
    if m == 0 || k == 0 || n == 0 {
        return Ok(vec![0.0; m * n]);
    }
    let (al, bl) = (a.layout(m, k)?, b.layout(k, n)?);
    match a.storage.matmul(b.storage, (1, m, n, k), &al, &bl)? {
        CpuStorage::F32(v) => Ok(v),
        other => bail!("{NAME}: product came back as {:?}", other.dtype()),
    }
}

fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(x) {
        *a += x;
    }
}

/// What one call reads: shapes, inputs and mask.
struct Ctx<'a> {
    dims: Dims,
    scale: f32,
    q: Input<'a>,
    k: Input<'a>,
    v: Input<'a>,
    mask: Mask<'a>,
}

/// A block of query positions of one batch row and KV group: its `rep * n` stacked rows are
/// head `g * rep + r`, position `queries.start + i` at row `r * n + i`.
struct QueryBlock {
    b: usize,
    g: usize,
    queries: Range<usize>,
}

impl QueryBlock {
    fn n(&self) -> usize {
        self.queries.len()
    }

    /// `(b, t, h)` of stacked row `row`.
    fn at(&self, row: usize, dims: &Dims) -> (usize, usize, usize) {
        let n = self.n();
        (
            self.b,
            self.queries.start + row % n,
            self.g * dims.rep + row / n,
        )
    }

    /// The block's queries, stacked: `(rep * n, hd)`.
    fn gather_q(&self, ctx: &Ctx) -> Vec<f32> {
        let (d, n) = (ctx.dims, self.n());
        let mut out = Vec::with_capacity(d.rep * n * d.width);
        for r in 0..d.rep {
            let at = d.q_at(self.b, self.g * d.rep + r, self.queries.start);
            out.extend_from_slice(&ctx.q.values[at..at + n * d.width]);
        }
        out
    }

    /// Stacked rows of a `(B, T, heads, hd)` tensor (the output or its gradient).
    fn gather_rows(&self, x: &[f32], dims: &Dims) -> Vec<f32> {
        let w = dims.width;
        let mut out = Vec::with_capacity(dims.rep * self.n() * w);
        for row in 0..dims.rep * self.n() {
            let (b, t, h) = self.at(row, dims);
            let at = dims.row(b, t, h) * w;
            out.extend_from_slice(&x[at..at + w]);
        }
        out
    }

    /// Scores of the stacked rows against `keys`, scaled and masked: `(rep * n, keys)`.
    fn scores(
        &self,
        ctx: &Ctx,
        qs: &CpuStorage,
        keys: &Range<usize>,
    ) -> candle_core::Result<Vec<f32>> {
        let d = ctx.dims;
        let kc = keys.len();
        let mut s = matmul(
            View::own(qs, d.width),
            ctx.k.rows_t(d.kv_at(self.b, self.g, keys.start), d.width),
            d.rep * self.n(),
            d.width,
            kc,
        )?;
        for (row, s) in s.chunks_exact_mut(kc).enumerate() {
            let (b, t, _) = self.at(row, &d);
            match ctx.mask.values(b, t, keys) {
                Some(m) => {
                    for (x, &m) in s.iter_mut().zip(m) {
                        *x = *x * ctx.scale + m;
                    }
                }
                None => s.iter_mut().for_each(|x| *x *= ctx.scale),
            }
        }
        Ok(s)
    }

    /// The probabilities of a tile, in place over its scores, from each row's max and sum.
    fn probabilities(&self, s: &mut [f32], kc: usize, stats: &[f32], dims: &Dims) {
        for (row, s) in s.chunks_exact_mut(kc).enumerate() {
            let (b, t, h) = self.at(row, dims);
            let i = dims.row(b, t, h);
            let (max, inv) = (stats[2 * i], 1.0 / stats[2 * i + 1]);
            if max == f32::NEG_INFINITY {
                // Only keys masked with -inf: no probability anywhere (see `forward_block`).
                s.fill(0.0);
                continue;
            }
            for x in s.iter_mut() {
                *x = exp_f32(*x - max) * inv;
            }
        }
    }

    /// `dS = scale * P * (dP - delta)` in place over `dP`, with delta the row's `dO . O`.
    fn score_gradient(&self, dp: &mut [f32], p: &[f32], kc: usize, delta: &[f32], ctx: &Ctx) {
        for (row, (dp, p)) in dp.chunks_exact_mut(kc).zip(p.chunks_exact(kc)).enumerate() {
            let (b, t, h) = self.at(row, &ctx.dims);
            let delta = delta[ctx.dims.row(b, t, h)];
            for (g, &p) in dp.iter_mut().zip(p) {
                *g = ctx.scale * p * (*g - delta);
            }
        }
    }
}

/// The key tiles (aligned to [`KEY_TILE`]) that cover `span`, clipped to it.
fn tiles(span: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    let first = span.start / KEY_TILE;
    let last = span.end.div_ceil(KEY_TILE);
    (first..last).map(move |i| (i * KEY_TILE).max(span.start)..((i + 1) * KEY_TILE).min(span.end))
}

/// One block's normalised output rows and their `(max, sum)`, stacked.
struct BlockOut {
    block: QueryBlock,
    out: Vec<f32>,
    stats: Vec<f32>,
}

fn forward_block(ctx: &Ctx, block: QueryBlock) -> candle_core::Result<BlockOut> {
    let d = ctx.dims;
    let rows = d.rep * block.n();
    let qs = CpuStorage::F32(block.gather_q(ctx));
    let mut out = vec![0f32; rows * d.width];
    let mut max = vec![f32::NEG_INFINITY; rows];
    let mut sum = vec![0f32; rows];
    for keys in tiles(ctx.mask.span(block.b, &block.queries)) {
        let kc = keys.len();
        let mut s = block.scores(ctx, &qs, &keys)?;
        for (row, s) in s.chunks_exact_mut(kc).enumerate() {
            let new_max = max[row].max(max_of(s));
            if new_max == f32::NEG_INFINITY {
                // Every key so far masked with -inf: nothing to add yet (exp(-inf - -inf) is NaN).
                s.fill(0.0);
                continue;
            }
            // exp(-inf) = 0 on the first tile: `out` and `sum` hold nothing yet.
            let correction = exp_f32(max[row] - new_max);
            for x in s.iter_mut() {
                *x = exp_f32(*x - new_max);
            }
            sum[row] = sum[row] * correction + sum_of(s);
            max[row] = new_max;
            if correction != 1.0 {
                for o in &mut out[row * d.width..(row + 1) * d.width] {
                    *o *= correction;
                }
            }
        }
        let p = CpuStorage::F32(s);
        let pv = matmul(
            View::own(&p, kc),
            ctx.v.rows(d.kv_at(block.b, block.g, keys.start), d.width),
            rows,
            kc,
            d.width,
        )?;
        add_into(&mut out, &pv);
    }
    let mut stats = Vec::with_capacity(2 * rows);
    for (row, o) in out.chunks_exact_mut(d.width).enumerate() {
        // A row whose keys are all masked with -inf has no probability anywhere: its output
        // stays 0 rather than 0/0 (the crate's masks are finite, see [`HIDDEN`]).
        let inv = if sum[row] > 0.0 { 1.0 / sum[row] } else { 0.0 };
        o.iter_mut().for_each(|x| *x *= inv);
        stats.extend([max[row], sum[row]]);
    }
    Ok(BlockOut { block, out, stats })
}

impl Ctx<'_> {
    fn query_block(&self, task: usize) -> QueryBlock {
        let (b, g, qb) = self.dims.task(task, self.dims.query_blocks());
        QueryBlock {
            b,
            g,
            queries: self.dims.queries_of(qb),
        }
    }

    fn query_tasks(&self) -> usize {
        self.dims.batch * self.dims.kv_heads * self.dims.query_blocks()
    }

    /// The output `(B, T, heads, hd)` followed by each row's `(max, sum)`.
    fn forward(&self) -> candle_core::Result<Vec<f32>> {
        let d = self.dims;
        let blocks = (0..self.query_tasks())
            .into_par_iter()
            .map(|task| forward_block(self, self.query_block(task)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let rows = d.batch * d.queries * d.heads;
        let mut result = vec![0f32; rows * (d.width + 2)];
        let (out, stats) = result.split_at_mut(rows * d.width);
        for b in blocks {
            for (row, (o, st)) in b
                .out
                .chunks_exact(d.width)
                .zip(b.stats.chunks_exact(2))
                .enumerate()
            {
                let (bi, t, h) = b.block.at(row, &d);
                let i = d.row(bi, t, h);
                out[i * d.width..(i + 1) * d.width].copy_from_slice(o);
                stats[2 * i..2 * i + 2].copy_from_slice(st);
            }
        }
        Ok(result)
    }

    /// Gradients of q, k and v (in their layouts) from the forward's output and stats and the
    /// output's gradient, all `(B, T, heads, ..)`.
    fn backward(
        &self,
        out: &[f32],
        stats: &[f32],
        grad: &[f32],
    ) -> candle_core::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let d = self.dims;
        let delta: Vec<f32> = out
            .par_chunks(d.width)
            .zip(grad.par_chunks(d.width))
            .map(|(o, g)| dot(o, g))
            .collect();
        let pass = Pass {
            ctx: self,
            stats,
            grad,
            delta: &delta,
        };
        // dK and dV: one task per key block of each batch row and KV head.
        let key_blocks = d.keys.div_ceil(KEY_TILE);
        let kv = (0..d.batch * d.kv_heads * key_blocks)
            .into_par_iter()
            .map(|task| pass.key_block(d.task(task, key_blocks)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut dk = Vec::with_capacity(d.batch * d.kv_heads * d.keys * d.width);
        let mut dv = Vec::with_capacity(dk.capacity());
        // Tasks run in (b, g, block) order, which is the layout of k and v.
        for (k, v) in kv {
            dk.extend_from_slice(&k);
            dv.extend_from_slice(&v);
        }
        // dQ: one task per query block.
        let dq_blocks = (0..self.query_tasks())
            .into_par_iter()
            .map(|task| {
                let block = self.query_block(task);
                pass.query_block(&block).map(|dq| (block, dq))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut dq = vec![0f32; d.batch * d.heads * d.queries * d.width];
        for (block, rows) in dq_blocks {
            let n = block.n() * d.width;
            for (r, rows) in rows.chunks_exact(n).enumerate() {
                let at = d.q_at(block.b, block.g * d.rep + r, block.queries.start);
                dq[at..at + n].copy_from_slice(rows);
            }
        }
        Ok((dq, dk, dv))
    }
}

/// What both backward passes read.
struct Pass<'a> {
    ctx: &'a Ctx<'a>,
    stats: &'a [f32],
    grad: &'a [f32],
    delta: &'a [f32],
}

/// One tile pair's probabilities and score gradient.
struct TileGrad {
    p: Vec<f32>,
    ds: Vec<f32>,
}

impl Pass<'_> {
    /// P and dS of a query block's stacked rows (`qs`, `dos`: queries and output gradient)
    /// against `keys`.
    fn tile(
        &self,
        block: &QueryBlock,
        qs: &CpuStorage,
        dos: &CpuStorage,
        keys: &Range<usize>,
    ) -> candle_core::Result<TileGrad> {
        let (ctx, d) = (self.ctx, self.ctx.dims);
        let kc = keys.len();
        let mut p = block.scores(ctx, qs, keys)?;
        block.probabilities(&mut p, kc, self.stats, &d);
        let mut ds = matmul(
            View::own(dos, d.width),
            ctx.v.rows_t(d.kv_at(block.b, block.g, keys.start), d.width),
            d.rep * block.n(),
            d.width,
            kc,
        )?;
        block.score_gradient(&mut ds, &p, kc, self.delta, ctx);
        Ok(TileGrad { p, ds })
    }

    /// dK and dV of key block `kb` of batch row `b`, KV head `g`: sums over the query blocks
    /// that see it.
    fn key_block(
        &self,
        (b, g, kb): (usize, usize, usize),
    ) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        let (ctx, d) = (self.ctx, self.ctx.dims);
        let keys = d.keys_of(kb);
        let kc = keys.len();
        let mut dk = vec![0f32; kc * d.width];
        let mut dv = vec![0f32; kc * d.width];
        for qb in 0..d.query_blocks() {
            let block = QueryBlock {
                b,
                g,
                queries: d.queries_of(qb),
            };
            let span = ctx.mask.span(b, &block.queries);
            if span.end <= keys.start || keys.end <= span.start {
                continue;
            }
            let rows = d.rep * block.n();
            let qs = CpuStorage::F32(block.gather_q(ctx));
            let dos = CpuStorage::F32(block.gather_rows(self.grad, &d));
            let TileGrad { p, ds } = self.tile(&block, &qs, &dos, &keys)?;
            let (p, ds) = (CpuStorage::F32(p), CpuStorage::F32(ds));
            // dV += P^T dO, dK += dS^T Q.
            let v_part = matmul(
                View::own_t(&p, kc),
                View::own(&dos, d.width),
                kc,
                rows,
                d.width,
            )?;
            add_into(&mut dv, &v_part);
            let k_part = matmul(
                View::own_t(&ds, kc),
                View::own(&qs, d.width),
                kc,
                rows,
                d.width,
            )?;
            add_into(&mut dk, &k_part);
        }
        Ok((dk, dv))
    }

    /// dQ of a query block's stacked rows: `dS K` over the keys it visits.
    fn query_block(&self, block: &QueryBlock) -> candle_core::Result<Vec<f32>> {
        let (ctx, d) = (self.ctx, self.ctx.dims);
        let rows = d.rep * block.n();
        let qs = CpuStorage::F32(block.gather_q(ctx));
        let dos = CpuStorage::F32(block.gather_rows(self.grad, &d));
        let mut dq = vec![0f32; rows * d.width];
        for keys in tiles(ctx.mask.span(block.b, &block.queries)) {
            let kc = keys.len();
            let ds = CpuStorage::F32(self.tile(block, &qs, &dos, &keys)?.ds);
            let part = matmul(
                View::own(&ds, kc),
                ctx.k.rows(d.kv_at(block.b, block.g, keys.start), d.width),
                rows,
                kc,
                d.width,
            )?;
            add_into(&mut dq, &part);
        }
        Ok(dq)
    }
}

impl FlashAttention {
    /// The mask's storage, read alongside the op's arguments (no other lock is taken on it: the
    /// mask is never written).
    fn with_mask<R>(
        &self,
        f: impl FnOnce(Option<(&[f32], &Layout)>) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        match &self.mask {
            None => f(None),
            Some(mask) => {
                let (storage, layout) = mask.storage_and_layout();
                let values = Input::from_storage(&storage, layout, "the mask")?.values;
                f(Some((values, layout)))
            }
        }
    }
}

impl CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "flash-attention"
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
        let dims = Dims::new(ql, kl, vl)?;
        self.with_mask(|mask| {
            let ctx = Ctx {
                dims,
                scale: self.scale,
                q: Input::new(qs, ql, "q")?,
                k: Input::new(ks, kl, "k")?,
                v: Input::new(vs, vl, "v")?,
                mask: Mask::new(mask, &dims)?,
            };
            let result = ctx.forward()?;
            let len = result.len();
            Ok((CpuStorage::F32(result), Shape::from(len)))
        })
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (dq, dk, dv) = {
            let (qs, ql) = q.storage_and_layout();
            let (ks, kl) = k.storage_and_layout();
            let (vs, vl) = v.storage_and_layout();
            let (rs, rl) = res.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            let dims = Dims::new(ql, kl, vl)?;
            let result = Input::from_storage(&rs, rl, "the output")?.values;
            let grad = Input::from_storage(&gs, gl, "the gradient")?.values;
            let rows = dims.out_len() / dims.width;
            if result.len() != rows * (dims.width + 2) || grad.len() != result.len() {
                bail!(
                    "{NAME}: output of {} and gradient of {} values for {rows} rows",
                    result.len(),
                    grad.len()
                );
            }
            let (out, stats) = result.split_at(dims.out_len());
            self.with_mask(|mask| {
                let ctx = Ctx {
                    dims,
                    scale: self.scale,
                    q: Input::from_storage(&qs, ql, "q")?,
                    k: Input::from_storage(&ks, kl, "k")?,
                    v: Input::from_storage(&vs, vl, "v")?,
                    mask: Mask::new(mask, &dims)?,
                };
                ctx.backward(out, stats, &grad[..dims.out_len()])
            })?
        };
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(dk, k.shape(), device)?),
            Some(Tensor::from_vec(dv, v.shape(), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::{self, Kernels};
    use crate::model::vector::max_diff;
    use candle_core::{Device, Var};

    /// The unfused path of mod.rs (before this kernel), from differentiable primitives:
    /// `(B, T, heads * hd)`.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f32) -> Tensor {
        let (b, h, t, d) = q.dims4().unwrap();
        let (_, g, keys, _) = k.dims4().unwrap();
        let qg = q.reshape((b, g, h / g * t, d)).unwrap();
        let scores = qg
            .matmul(&k.t().unwrap())
            .unwrap()
            .reshape((b, h, t, keys))
            .unwrap();
        let scaled = (scores * f64::from(scale)).unwrap();
        let scaled = match mask {
            Some(m) => scaled.broadcast_add(m).unwrap(),
            None => scaled,
        };
        let probs = ops::softmax_last(&scaled, Kernels::Autograd).unwrap();
        probs
            .reshape((b, g, h / g * t, keys))
            .unwrap()
            .matmul(v)
            .unwrap()
            .reshape((b, h, t, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, h * d))
            .unwrap()
    }

    /// `(B, 1, T, keys)`: query `q` (the last T of `keys` positions) sees the keys at or
    /// before it from its row's `pad` on, as sampling's prefill mask (and, with no padding,
    /// scoring's causal mask).
    fn padded_causal(pads: &[usize], t: usize, keys: usize) -> Tensor {
        let v: Vec<f32> = pads
            .iter()
            .flat_map(|&p| {
                (0..t).flat_map(move |q| {
                    let pos = keys - t + q;
                    (0..keys).map(move |k| if k <= pos && k >= p { 0.0 } else { MASKED })
                })
            })
            .collect();
        Tensor::from_vec(v, (pads.len(), 1, t, keys), &Device::Cpu).unwrap()
    }

    struct Case {
        batch: usize,
        heads: usize,
        kv_heads: usize,
        queries: usize,
        keys: usize,
        width: usize,
    }

    fn inputs(c: &Case) -> (Var, Var, Var, Tensor) {
        let dev = Device::Cpu;
        let randn = |shape: (usize, usize, usize, usize), std: f64| {
            Var::from_tensor(&(Tensor::randn(0f32, 1., shape, &dev).unwrap() * std).unwrap())
                .unwrap()
        };
        // Large enough queries for peaked probabilities, as trained models have.
        let q = randn((c.batch, c.heads, c.queries, c.width), 2.0);
        let k = randn((c.batch, c.kv_heads, c.keys, c.width), 1.0);
        let v = randn((c.batch, c.kv_heads, c.keys, c.width), 1.0);
        let weights =
            Tensor::randn(0f32, 1., (c.batch, c.queries, c.heads * c.width), &dev).unwrap();
        (q, k, v, weights)
    }

    /// Output and gradients of q, k, v of `sum(attention * weights)`.
    fn run(
        f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
        (q, k, v, weights): &(Var, Var, Var, Tensor),
    ) -> [Tensor; 4] {
        let out = f(q.as_tensor(), k.as_tensor(), v.as_tensor());
        let grads = (&out * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad = |x: &Var| grads.get(x).unwrap().clone();
        [out.detach(), grad(q), grad(k), grad(v)]
    }

    fn largest(x: &Tensor) -> f32 {
        x.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn value_and_gradients_match_the_unfused_attention() {
        // SmolLM2's grouping (9 heads on 3 KV heads) and a multi-head-per-group tiny one;
        // positions that are not a multiple of the block or tile sizes, exactly one block, one
        // position, and more keys than queries (a prefill after cached tokens).
        let smol = |batch, queries, keys| Case {
            batch,
            heads: 9,
            kv_heads: 3,
            queries,
            keys,
            width: 16,
        };
        let cases = [
            smol(2, 150, 150),
            smol(1, 64, 64),
            smol(2, 1, 1),
            smol(2, 5, 140),
            Case {
                batch: 3,
                heads: 4,
                kv_heads: 2,
                queries: 131,
                keys: 131,
                width: 8,
            },
        ];
        let scale = 0.25f32;
        for c in &cases {
            let (t, keys) = (c.queries, c.keys);
            // Scoring's causal mask shared by the batch; per-row left padding (rows that see
            // no key at all where the padding covers a whole query block); no mask.
            let mut pads = vec![0; c.batch];
            if let Some(last) = pads.last_mut() {
                *last = (keys - t + 70).min(keys - 1);
            }
            let masks = [
                Some(padded_causal(&[0], t, keys)),
                Some(padded_causal(&pads, t, keys)),
                None,
            ];
            let data = inputs(c);
            for mask in &masks {
                let fused = run(
                    |q, k, v| attention(q, k, v, mask.as_ref(), scale).unwrap(),
                    &data,
                );
                let plain = run(|q, k, v| reference(q, k, v, mask.as_ref(), scale), &data);
                for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
                    // Relative to the largest value: gradients of k sum over many queries.
                    let diff = max_diff(f, p) / largest(p).max(1.0);
                    assert!(
                        diff < 5e-6,
                        "{} of T={t} keys={keys} (mask {:?}) differs by {diff}",
                        ["output", "dq", "dk", "dv"][i],
                        mask.as_ref().map(Tensor::dims)
                    );
                }
                assert!(largest(&fused[2]) > 0.0 && largest(&fused[3]) > 0.0);
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let c = Case {
            batch: 2,
            heads: 9,
            kv_heads: 3,
            queries: 200,
            keys: 200,
            width: 16,
        };
        let data = inputs(&c);
        let mask = padded_causal(&[0, 30], c.queries, c.keys);
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    run(
                        |q, k, v| attention(q, k, v, Some(&mask), 0.25).unwrap(),
                        &data,
                    )
                })
        };
        let (one, two) = (on(1), on(2));
        for (a, b) in one.iter().zip(&two) {
            assert_eq!(max_diff(a, b), 0.0);
        }
    }

    #[test]
    fn rejects_shapes_that_do_not_fit() {
        let dev = Device::Cpu;
        let zeros = |shape: (usize, usize, usize, usize)| {
            Tensor::zeros(shape, candle_core::DType::F32, &dev).unwrap()
        };
        let (q, k) = (zeros((2, 4, 5, 8)), zeros((2, 2, 5, 8)));
        let err = attention(&q, &k, &k, Some(&zeros((2, 1, 5, 6))), 1.0).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        let err = attention(&q, &zeros((2, 3, 5, 8)), &zeros((2, 3, 5, 8)), None, 1.0).unwrap_err();
        assert!(err.to_string().contains("cannot share"), "{err}");
        let err = attention(&q, &k, &zeros((2, 2, 6, 8)), None, 1.0).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }

    #[test]
    fn keys_all_masked_with_infinity_give_zeros_not_nan() {
        let c = Case {
            batch: 1,
            heads: 4,
            kv_heads: 2,
            queries: 3,
            keys: 3,
            width: 8,
        };
        let data = inputs(&c);
        // Query 0 sees no key at all (-inf everywhere); queries 1 and 2 see keys 1 and 2.
        let inf = f32::NEG_INFINITY;
        let mask = [inf, inf, inf, inf, 0.0, inf, inf, 0.0, 0.0];
        let mask = Tensor::from_vec(mask.to_vec(), (1, 1, 3, 3), &Device::Cpu).unwrap();
        let [out, dq, dk, dv] = run(
            |q, k, v| attention(q, k, v, Some(&mask), 0.25).unwrap(),
            &data,
        );
        assert_eq!(largest(&out.narrow(1, 0, 1).unwrap()), 0.0);
        assert_eq!(largest(&dq.narrow(2, 0, 1).unwrap()), 0.0);
        for x in [&out, &dq, &dk, &dv] {
            assert!(largest(x).is_finite());
        }
    }

    /// The unfused path as mod.rs runs it on the CPU: the products and the masked softmax
    /// kernel (masked_softmax.rs).
    fn unfused(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f32) -> Tensor {
        let (b, h, t, d) = q.dims4().unwrap();
        let (_, g, keys, _) = k.dims4().unwrap();
        let qg = q.reshape((b, g, h / g * t, d)).unwrap();
        let scores = qg.matmul(&k.t().unwrap()).unwrap();
        let scores = scores.reshape((b, h, t, keys)).unwrap();
        let probs = crate::model::masked_softmax::masked_softmax(&scores, mask, scale).unwrap();
        let out = probs.reshape((b, g, h / g * t, keys)).unwrap();
        let out = out.matmul(v).unwrap().reshape((b, h, t, d)).unwrap();
        out.transpose(1, 2).unwrap().reshape((b, t, h * d)).unwrap()
    }

    /// Prints the time of a forward and backward of this kernel and of the unfused path at
    /// SmolLM2's shapes, to compare by hand (wall time on a shared machine is too noisy to
    /// assert on): `cargo test --release -p arlas-policy --lib timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints timings, asserts nothing"]
    fn timing() {
        for (batch, t) in [(1, 1024), (8, 256)] {
            let c = Case {
                batch,
                heads: 9,
                kv_heads: 3,
                queries: t,
                keys: t,
                width: 64,
            };
            let data = inputs(&c);
            let mask = padded_causal(&[0], t, t);
            let seconds = |f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor| {
                let start = std::time::Instant::now();
                for _ in 0..5 {
                    run(f, &data);
                }
                start.elapsed().as_secs_f64() / 5.0
            };
            for _ in 0..2 {
                let fused = seconds(&|q, k, v| attention(q, k, v, Some(&mask), 0.125).unwrap());
                let plain = seconds(&|q, k, v| unfused(q, k, v, &mask, 0.125));
                eprintln!(
                    "B={batch} T={t}: fused {:.1} ms, unfused {:.1} ms (forward and backward)",
                    fused * 1e3,
                    plain * 1e3
                );
            }
        }
    }
}
