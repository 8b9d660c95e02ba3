//! The Llama-family decoder: RMSNorm, RoPE (rotate-half), grouped-query attention, SwiGLU,
//! tied or untied head, optional q/k/v bias (Qwen2), optional per-head q/k RMSNorm before
//! RoPE (Qwen3), Llama 3 RoPE scaling (rope.rs) and optional LoRA adapters.
//!
//! Tensor names are Hugging Face's (`model.layers.{i}.self_attn.q_proj.weight`, ...), so the
//! same construction trains from a `Var` store and loads a safetensors checkpoint.
//!
//! A decoder computes in one dtype (f32 or bf16, see precision.rs); its weights may be stored
//! in another (a trainable policy's f32 master weights): [`Decoder::for_compute`] casts them
//! for one call, through differentiable casts.

mod cache;
mod checkpointed;
mod decode_attention;
mod flash_attention;
mod linear;
mod masked_softmax;
pub(crate) mod ops;
mod packed;
mod rms_norm;
mod rope;
pub(crate) mod store;
mod swiglu;
pub(crate) mod token_logprobs;
pub(crate) mod vector;

pub(crate) use cache::KvCache;
pub(crate) use linear::LoraBuilder;
pub use ops::Kernels;
use ops::Ops;
pub(crate) use rope::Positions;

use decode_attention::{DecodeStep, Heads};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::config::LlamaConfig;
use crate::error::{Error, Result};
use linear::{Linear, Stacked};
use packed::Packed;
use rope::RopeTables;
use std::sync::Arc;

/// What a forward pass attends with: the rotary tables and mask of a full pass, or the
/// host-side inputs of one decoding step's fused kernels.
enum Step<'a> {
    Full {
        cos: &'a Tensor,
        sin: &'a Tensor,
        mask: Option<&'a Tensor>,
    },
    Decode(&'a DecodeStep),
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// q, k and v stacked into one projection (see [`Decoder::stacked`]).
    qkv: Option<Stacked>,
    /// Qwen3's `q_norm` and `k_norm` weights, `(head_dim,)` each, and their eps.
    qk_norm: Option<QkNorm>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// RMSNorm of every query and key head before RoPE (Qwen3).
#[derive(Debug, Clone)]
struct QkNorm {
    q: Tensor,
    k: Tensor,
    eps: f64,
}

impl QkNorm {
    fn map(&self, f: &impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self {
            q: f(&self.q)?,
            k: f(&self.k)?,
            eps: self.eps,
        })
    }

    /// Normalises q and k inside a decoding step's `(B, (heads + 2 kv_heads) * hd)` product.
    fn stacked(&self, qkv: &Tensor, heads: Heads, ops: Ops) -> Result<Tensor> {
        let Heads {
            heads,
            kv_heads,
            head_dim: hd,
        } = heads;
        let b = qkv.dim(0)?;
        let part = |start: usize, n: usize, w: Option<&Tensor>| -> Result<Tensor> {
            let x = qkv.narrow(D::Minus1, start * hd, n * hd)?;
            match w {
                Some(w) => {
                    Ok(
                        ops::rms_norm(&x.contiguous()?.reshape((b, n, hd))?, w, self.eps, ops)?
                            .reshape((b, n * hd))?,
                    )
                }
                None => Ok(x),
            }
        };
        let q = part(0, heads, Some(&self.q))?;
        let k = part(heads, kv_heads, Some(&self.k))?;
        let v = part(heads + kv_heads, kv_heads, None)?;
        Ok(Tensor::cat(&[q, k, v], D::Minus1)?)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    /// gate and up stacked into one projection (see [`Decoder::stacked`]).
    gate_up: Option<Stacked>,
}

#[derive(Debug, Clone)]
struct Block {
    input_layernorm: Tensor,
    self_attn: Attention,
    post_attention_layernorm: Tensor,
    mlp: Mlp,
}

/// The decoder's weights and the code that runs them (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    config: LlamaConfig,
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    /// The head packed for few-row products (sampling copies on the CPU, see packed.rs).
    lm_head_packed: Option<Arc<Packed>>,
    rope: RopeTables,
    device: Device,
    /// The dtype forward passes compute in (see [`Decoder::for_compute`]).
    dtype: DType,
    /// Whether arlas's CPU kernels may run where they apply (f32 on the CPU); off, the
    /// portable primitives run instead, as on other devices.
    cpu_kernels: bool,
}

fn pp_lora<'a>(lora: Option<&LoraBuilder<'a>>, name: &str) -> Option<LoraBuilder<'a>> {
    lora.map(|l| l.pp(name))
}

/// The adapter builder of projection `name`, when the adapter config targets it.
fn lora_for<'a>(lora: Option<&LoraBuilder<'a>>, name: &str) -> Option<LoraBuilder<'a>> {
    pp_lora(lora, name).filter(|l| l.config.targets(name))
}

impl Attention {
    fn new(
        cfg: &LlamaConfig,
        vb: &VarBuilder,
        lora: Option<&LoraBuilder>,
    ) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let hd = cfg.head_width();
        let q = cfg.num_attention_heads * hd;
        let kv = cfg.kv_heads() * hd;
        let bias = cfg.qkv_bias();
        let std = cfg.initializer_range;
        let lin = |name: &str, i: usize, o: usize, b: bool| {
            Linear::new(&vb.pp(name), lora_for(lora, name).as_ref(), i, o, b, std)
        };
        Ok(Self {
            q_proj: lin("q_proj", h, q, bias)?,
            k_proj: lin("k_proj", h, kv, bias)?,
            v_proj: lin("v_proj", h, kv, bias)?,
            o_proj: lin("o_proj", q, h, false)?,
            qkv: None,
            qk_norm: if cfg.qk_norm() {
                Some(QkNorm {
                    q: norm_weight(&vb.pp("q_norm"), hd)?,
                    k: norm_weight(&vb.pp("k_norm"), hd)?,
                    eps: cfg.rms_norm_eps,
                })
            } else {
                None
            },
            heads: cfg.num_attention_heads,
            kv_heads: cfg.kv_heads(),
            head_dim: hd,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        step: &Step,
        cache: Option<(&mut KvCache, usize)>,
        ops: Ops,
    ) -> Result<Tensor> {
        let kernels = ops.kernels;
        let (cos, sin, mask) = match step {
            Step::Decode(step) => {
                let (cache, layer) = cache.ok_or_else(|| {
                    Error::InvalidInput("a decoding step needs the kv cache".into())
                })?;
                return self.decode(x, step, cache, layer, ops);
            }
            Step::Full { cos, sin, mask } => (*cos, *sin, *mask),
        };
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = match &self.qkv {
            Some(qkv) if qkv.serves(b * t) => {
                let y = qkv.forward(x)?;
                (
                    y.narrow(D::Minus1, 0, nh * hd)?,
                    y.narrow(D::Minus1, nh * hd, nkv * hd)?,
                    y.narrow(D::Minus1, (nh + nkv) * hd, nkv * hd)?,
                )
            }
            _ => (
                self.q_proj.forward(x)?,
                self.k_proj.forward(x)?,
                self.v_proj.forward(x)?,
            ),
        };
        let (mut q, mut k, v) = (split(q, nh)?, split(k, nkv)?, split(v, nkv)?);
        if let Some(norm) = &self.qk_norm {
            q = ops::rms_norm(&q, &norm.q, norm.eps, ops)?;
            k = ops::rms_norm(&k, &norm.k, norm.eps, ops)?;
        }
        let q = ops::rope(&q, cos, sin, kernels)?;
        let k = ops::rope(&k, cos, sin, kernels)?;
        let scale = 1.0 / usize_to_f64(hd).sqrt();
        if ops.native && cache.is_none() {
            // Training and scoring on the CPU: one kernel that keeps no (B, heads, T, T)
            // scores for the backward (flash_attention.rs). Other devices and dtypes keep the
            // path below.
            #[allow(clippy::cast_possible_truncation)] // 1/sqrt(hd) is well within f32
            let out = flash_attention::attention(&q, &k, &v, mask, scale as f32)?;
            return self.o_proj.forward(&out);
        }
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v),
        };
        let tk = k.dim(2)?;
        let rep = nh / nkv;
        // Grouped-query attention without copying K/V: query heads j*rep .. j*rep+rep-1 share
        // KV head j (Hugging Face's repeat_kv order), so fold them into the row dimension.
        let qg = q.contiguous()?.reshape((b, nkv, rep * t, hd))?;
        let scores = qg.matmul(&k.t()?)?.reshape((b, nh, t, tk))?;
        let probs = match mask {
            // One kernel for scale, mask and softmax (f32 on the CPU only; here only a prefill
            // after cached tokens reaches it).
            #[allow(clippy::cast_possible_truncation)] // 1/sqrt(hd) is well within f32
            Some(m) if ops.native => masked_softmax::masked_softmax(&scores, m, scale as f32)?,
            // Elsewhere the primitives, in f32 (the mask is f32): a bf16 softmax over
            // thousands of keys would lose most of its precision in the sum.
            _ => {
                let scaled = (scores.to_dtype(DType::F32)? * scale)?;
                let scaled = match mask {
                    Some(m) => scaled.broadcast_add(m)?,
                    None => scaled,
                };
                ops::softmax_last(&scaled, kernels)?.to_dtype(v.dtype())?
            }
        };
        let out = probs.reshape((b, nkv, rep * t, tk))?.matmul(&v)?;
        let out = out
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        self.o_proj.forward(&out)
    }

    /// One decoding step on the CPU, `x` of shape `(B, hidden)`: the stacked projection, then
    /// two kernels that write the new key/value into the cache and attend (see
    /// decode_attention.rs).
    fn decode(
        &self,
        x: &Tensor,
        step: &DecodeStep,
        cache: &mut KvCache,
        layer: usize,
        ops: Ops,
    ) -> Result<Tensor> {
        let qkv = match &self.qkv {
            Some(qkv) => qkv.forward(x)?,
            None => Tensor::cat(
                &[
                    self.q_proj.forward(x)?,
                    self.k_proj.forward(x)?,
                    self.v_proj.forward(x)?,
                ],
                D::Minus1,
            )?,
        };
        let heads = Heads {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        };
        let qkv = match &self.qk_norm {
            Some(norm) => norm.stacked(&qkv, heads, ops)?,
            None => qkv,
        };
        let kv = cache.buffer(
            layer,
            step.batch,
            (self.kv_heads, self.head_dim),
            DType::F32,
            x.device(),
        )?;
        decode_attention::append_kv(&kv, &qkv, step, heads)?;
        #[allow(clippy::cast_possible_truncation)] // 1/sqrt(hd) is well within f32
        let scale = (1.0 / usize_to_f64(self.head_dim).sqrt()) as f32;
        let out = decode_attention::attend(&qkv, &kv, step, heads, scale)?;
        self.o_proj.forward(&out)
    }

    fn map(&self, f: &impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self {
            q_proj: self.q_proj.map(f)?,
            k_proj: self.k_proj.map(f)?,
            v_proj: self.v_proj.map(f)?,
            o_proj: self.o_proj.map(f)?,
            qkv: self.qkv.as_ref().map(|l| l.map(f)).transpose()?,
            qk_norm: self.qk_norm.as_ref().map(|n| n.map(f)).transpose()?,
            ..*self
        })
    }

    fn stacked(&self, pack: bool) -> Result<Self> {
        let qkv = Stacked::new(&[&self.q_proj, &self.k_proj, &self.v_proj], pack)?;
        let merged = |l: &Linear| {
            if qkv.is_some() {
                Ok(l.clone())
            } else {
                l.for_sampling(pack)
            }
        };
        Ok(Self {
            q_proj: merged(&self.q_proj)?,
            k_proj: merged(&self.k_proj)?,
            v_proj: merged(&self.v_proj)?,
            o_proj: self.o_proj.for_sampling(pack)?,
            qkv,
            qk_norm: self.qk_norm.clone(),
            ..*self
        })
    }
}

impl Mlp {
    fn new(
        cfg: &LlamaConfig,
        vb: &VarBuilder,
        lora: Option<&LoraBuilder>,
    ) -> candle_core::Result<Self> {
        let (h, i, b, std) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.mlp_bias,
            cfg.initializer_range,
        );
        let lin = |name: &str, i: usize, o: usize| {
            Linear::new(&vb.pp(name), lora_for(lora, name).as_ref(), i, o, b, std)
        };
        Ok(Self {
            gate_proj: lin("gate_proj", h, i)?,
            up_proj: lin("up_proj", h, i)?,
            down_proj: lin("down_proj", i, h)?,
            gate_up: None,
        })
    }

    fn forward(&self, x: &Tensor, ops: Ops) -> Result<Tensor> {
        let rows = x.elem_count() / x.dim(D::Minus1)?.max(1);
        let (gate, up) = match &self.gate_up {
            // Sampling on the CPU: one kernel reads gate and up from the stacked product.
            Some(gate_up) if ops.native && gate_up.serves(rows) => {
                return self
                    .down_proj
                    .forward(&swiglu::swiglu_stacked(&gate_up.forward(x)?)?);
            }
            Some(gate_up) if gate_up.serves(rows) => {
                let y = gate_up.forward(x)?;
                let i = gate_up.out_dim()? / 2;
                (y.narrow(D::Minus1, 0, i)?, y.narrow(D::Minus1, i, i)?)
            }
            _ => (self.gate_proj.forward(x)?, self.up_proj.forward(x)?),
        };
        // The one-kernel activation runs on the CPU in f32 only (elsewhere the primitives).
        let act = if ops.native {
            swiglu::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        self.down_proj.forward(&act)
    }

    fn map(&self, f: &impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self {
            gate_proj: self.gate_proj.map(f)?,
            up_proj: self.up_proj.map(f)?,
            down_proj: self.down_proj.map(f)?,
            gate_up: self.gate_up.as_ref().map(|l| l.map(f)).transpose()?,
        })
    }

    fn stacked(&self, pack: bool) -> Result<Self> {
        Ok(Self {
            gate_up: Stacked::new(&[&self.gate_proj, &self.up_proj], pack)?,
            down_proj: self.down_proj.for_sampling(pack)?,
            ..self.clone()
        })
    }
}

fn norm_weight(vb: &VarBuilder, size: usize) -> candle_core::Result<Tensor> {
    vb.get_with_hints(size, "weight", Init::Const(1.0))
}

impl Block {
    fn new(
        cfg: &LlamaConfig,
        vb: &VarBuilder,
        lora: Option<&LoraBuilder>,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            input_layernorm: norm_weight(&vb.pp("input_layernorm"), cfg.hidden_size)?,
            self_attn: Attention::new(
                cfg,
                &vb.pp("self_attn"),
                pp_lora(lora, "self_attn").as_ref(),
            )?,
            post_attention_layernorm: norm_weight(
                &vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
            )?,
            mlp: Mlp::new(cfg, &vb.pp("mlp"), pp_lora(lora, "mlp").as_ref())?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        eps: f64,
        step: &Step,
        cache: Option<(&mut KvCache, usize)>,
        ops: Ops,
    ) -> Result<Tensor> {
        let normed = ops::rms_norm(x, &self.input_layernorm, eps, ops)?;
        let attn = self.self_attn.forward(&normed, step, cache, ops)?;
        let h = (x + attn)?;
        let normed = ops::rms_norm(&h, &self.post_attention_layernorm, eps, ops)?;
        Ok((&h + self.mlp.forward(&normed, ops)?)?)
    }

    fn stacked(&self, pack: bool) -> Result<Self> {
        Ok(Self {
            self_attn: self.self_attn.stacked(pack)?,
            mlp: self.mlp.stacked(pack)?,
            ..self.clone()
        })
    }

    fn map(&self, f: &impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(Self {
            input_layernorm: f(&self.input_layernorm)?,
            self_attn: self.self_attn.map(f)?,
            post_attention_layernorm: f(&self.post_attention_layernorm)?,
            mlp: self.mlp.map(f)?,
        })
    }
}

impl Decoder {
    /// Builds the decoder from `vb` (base weights) and, optionally, a LoRA adapter store;
    /// forward passes compute in `dtype`.
    pub(crate) fn new(
        config: &LlamaConfig,
        vb: &VarBuilder,
        lora: Option<&LoraBuilder>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        config.validate()?;
        let build = || -> candle_core::Result<(Tensor, Vec<Block>, Tensor, Tensor)> {
            let embed = vb.pp("model.embed_tokens").get_with_hints(
                (config.vocab_size, config.hidden_size),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: config.initializer_range,
                },
            )?;
            let layers = (0..config.num_hidden_layers)
                .map(|i| {
                    let name = format!("model.layers.{i}");
                    Block::new(config, &vb.pp(&name), pp_lora(lora, &name).as_ref())
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let norm = norm_weight(&vb.pp("model.norm"), config.hidden_size)?;
            let head = if config.tie_word_embeddings {
                embed.clone()
            } else {
                vb.pp("lm_head").get_with_hints(
                    (config.vocab_size, config.hidden_size),
                    "weight",
                    Init::Randn {
                        mean: 0.0,
                        stdev: config.initializer_range,
                    },
                )?
            };
            Ok((embed, layers, norm, head))
        };
        let (embed_tokens, layers, norm, lm_head) = build().map_err(store::build_error)?;
        Ok(Self {
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            lm_head_packed: None,
            rope: RopeTables::new(config, device)?,
            device: device.clone(),
            dtype,
            cpu_kernels: true,
        })
    }

    pub(crate) fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Allows or forbids arlas's CPU kernels (see [`Ops::native`]).
    pub(crate) fn set_cpu_kernels(&mut self, on: bool) {
        self.cpu_kernels = on;
    }

    /// Whether arlas's CPU kernels are allowed (see [`Decoder::set_cpu_kernels`]).
    pub(crate) fn cpu_kernels(&self) -> bool {
        self.cpu_kernels
    }

    /// Whether this decoder's passes use arlas's f32 CPU kernels.
    pub(crate) fn native(&self) -> bool {
        self.cpu_kernels && self.device.is_cpu() && self.dtype == DType::F32
    }

    /// Final hidden states `(B, T, hidden)` for token ids `(B, T)`.
    ///
    /// `mask` is additive, `(B or 1, 1, T, T_keys)`. With a cache, keys/values are appended
    /// and attention covers everything cached.
    pub(crate) fn hidden(
        &self,
        ids: &Tensor,
        positions: &Positions,
        mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let eps = self.config.rms_norm_eps;
        let ops = Ops {
            kernels,
            native: self.native(),
        };
        let decode = match &cache {
            Some(c) => self.decode_step(b, t, c, positions, mask, ops)?,
            None => None,
        };
        // A decoding step runs on `(B, hidden)` matrices throughout (see Attention::decode).
        let x = self.embed_tokens.index_select(&ids.flatten_all()?, 0)?;
        let mut x = match decode {
            Some(_) => x,
            None => x.reshape((b, t, self.config.hidden_size))?,
        };
        let rope;
        let step = match &decode {
            Some(step) => Step::Decode(step),
            None => {
                rope = self.rope.select(positions)?;
                Step::Full {
                    cos: &rope.0,
                    sin: &rope.1,
                    mask,
                }
            }
        };
        for (i, block) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            x = block.forward(&x, eps, &step, layer_cache, ops)?;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        ops::rms_norm(&x, &self.norm, eps, ops)?
            .reshape((b, t, self.config.hidden_size))
            .map_err(Into::into)
    }

    /// The host-side inputs of the fused decoding kernels when a step can use them (one new
    /// token per row, no gradient, f32 on the CPU); `None` otherwise.
    fn decode_step(
        &self,
        b: usize,
        t: usize,
        cache: &KvCache,
        positions: &Positions,
        mask: Option<&Tensor>,
        ops: Ops,
    ) -> Result<Option<DecodeStep>> {
        if t != 1 || ops.kernels != Kernels::Fused || !ops.native {
            return Ok(None);
        }
        if cache.free() == 0 {
            return Err(Error::InvalidInput(format!(
                "kv cache overflow: {} cached + 1 new token exceed its capacity",
                cache.len()
            )));
        }
        let keys = cache.len() + 1;
        let mask = match mask {
            None => vec![0.0; b * keys],
            Some(m) if m.dims() == [b, 1, 1, keys] => m.flatten_all()?.to_vec1()?,
            Some(_) => return Ok(None),
        };
        let ids = match positions {
            Positions::PerRow { ids, .. } if ids.len() == b => ids.clone(),
            Positions::Range { start, len: 1 } => {
                vec![u32::try_from(*start).unwrap_or(u32::MAX); b]
            }
            _ => return Ok(None),
        };
        let (cos, sin) = self.rope.host_rows(&ids)?;
        Ok(Some(DecodeStep {
            batch: b,
            cached: cache.len(),
            mask,
            cos,
            sin,
        }))
    }

    /// Logits `(N, vocab)` for hidden states `(N, hidden)`, always f32: the product runs in
    /// the compute dtype (as Hugging Face's), and log-softmax and sampling take its result
    /// upcast.
    ///
    /// An f32 head (an f32 product over upcast hidden states, as some RL systems use against
    /// sampler/learner mismatch) was measured too: SmolLM2's bf16 sampled-vs-scored max
    /// difference went from 0.13 to 0.10 and the mean stayed 0.019, so the mismatch comes
    /// from the bf16 activations of the layers, not from rounding the logits; not worth an f32
    /// product per step.
    pub(crate) fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        if let Some(p) = &self.lm_head_packed
            && hidden.dtype() == DType::F32
            && hidden.rank() == 2
            && hidden.dim(0)? <= linear::FEW_ROWS
        {
            return p.matmul(hidden);
        }
        Ok(linear::weight_matmul(&self.lm_head, hidden)?.to_dtype(DType::F32)?)
    }

    /// A copy for one sampling call with q/k/v and gate/up stacked into single projections
    /// (see [`Linear::stacked`]) and every adapter folded into its weight
    /// ([`Linear::for_sampling`]): the same function, fewer and wider matmuls. It copies the
    /// projection weights, so it does not see later in-place updates: build it per call.
    pub(crate) fn stacked(&self) -> Result<Self> {
        // Few-row products against packed weights are one of arlas's CPU kernels.
        let pack = self.native();
        Ok(Self {
            layers: self
                .layers
                .iter()
                .map(|b| b.stacked(pack))
                .collect::<Result<Vec<_>>>()?,
            lm_head_packed: if pack {
                Packed::new(&self.lm_head)?
            } else {
                None
            },
            ..self.clone()
        })
    }

    /// The same decoder over detached tensors: shares storage (so in-place weight updates
    /// show through) but never builds an autograd graph.
    pub(crate) fn detached(&self) -> Result<Self> {
        self.map(&|t| Ok(t.detach()))
    }

    /// The decoder with every weight in the compute dtype, for one call: where the weights
    /// are stored in it already (frozen policies, f32) this shares them; otherwise (f32
    /// master weights of a bf16 policy) it casts them, and the casts carry the gradient back
    /// to the master weights. A tied head is cast once, with the embedding.
    pub(crate) fn for_compute(&self) -> Result<Self> {
        let dtype = self.dtype;
        self.map(&|t| Ok(t.to_dtype(dtype)?))
    }

    /// Applies `f` to every weight (to the embedding only when the head is tied to it, so
    /// that a cast copies it once).
    fn map(&self, f: &impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        let embed_tokens = f(&self.embed_tokens)?;
        let lm_head = if self.config.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            f(&self.lm_head)?
        };
        Ok(Self {
            config: self.config.clone(),
            embed_tokens,
            layers: self
                .layers
                .iter()
                .map(|b| b.map(f))
                .collect::<Result<Vec<_>>>()?,
            norm: f(&self.norm)?,
            lm_head,
            lm_head_packed: None,
            rope: self.rope.clone(),
            device: self.device.clone(),
            dtype: self.dtype,
            cpu_kernels: self.cpu_kernels,
        })
    }
}

#[allow(clippy::cast_precision_loss)] // head widths are far below 2^52
fn usize_to_f64(n: usize) -> f64 {
    n as f64
}
