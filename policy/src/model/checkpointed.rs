//! Activation checkpointing: the layer-by-layer backward pass of training.
//!
//! A whole backward pass needs every intermediate of every layer, kept by autograd from the
//! forward pass until the backward: for SmolLM2-135M about 6 MB per token, so one
//! 1,024-token conversation peaked at 6.9 GB. Checkpointed, the forward pass keeps only the
//! hidden state between layers (`(B, T, hidden)` each, 2.3 KB per token for SmolLM2) and no
//! graph; the backward then recomputes one layer at a time from its input, with a graph, and
//! back-propagates through it alone: the graph alive at any time is one layer's (or the
//! head's). The price is a second forward pass of the layers: measured on SmolLM2 with LoRA
//! (one 1,024-token item), 6.87 -> 1.52 GB peak for 16% more time per step.
//!
//! Layer `i` maps `h_i` to `h_{i+1}`. Given `g = dL/dh_{i+1}`, the recomputed layer, fed
//! `h_i` as a variable, is back-propagated from the surrogate `sum(layer(h_i) * g)` (with `g`
//! a constant): its gradient is exactly `g` on the output, so every weight of the layer gets
//! its true gradient and `h_i` gets `dL/dh_i`, which feeds the layer below. The recomputation
//! runs the same ops on the same inputs as the forward pass, so it reproduces it exactly.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::{Decoder, Kernels, Ops, Positions, Step, ops};
use crate::error::Result;

/// Receives the gradients of one backward segment (the head, a layer, the embedding).
pub(crate) type Collect<'a> = dyn FnMut(&GradStore) -> Result<()> + 'a;

impl Decoder {
    /// The ops of the training path (differentiable kernels).
    fn training_ops(&self) -> Ops {
        Ops {
            kernels: Kernels::Autograd,
            native: self.native(),
        }
    }

    /// The embeddings `(B, T, hidden)` of ids `(B, T)`.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let x = self.embed_tokens.index_select(&ids.flatten_all()?, 0)?;
        Ok(x.reshape((b, t, self.config.hidden_size))?)
    }

    /// The hidden states at every layer boundary, `h_0` (the embeddings) to `h_L` (the last
    /// layer's output, before the final norm), computed without a graph: the only
    /// activations a checkpointed step keeps across layers.
    pub(crate) fn boundaries(
        &self,
        ids: &Tensor,
        positions: &Positions,
        mask: &Tensor,
    ) -> Result<Vec<Tensor>> {
        // The same ops as the backward's recomputation, over detached weights: no graph.
        let frozen = self.detached()?;
        let ops = self.training_ops();
        let (cos, sin) = self.rope.select(positions)?;
        let step = Step::Full {
            cos: &cos,
            sin: &sin,
            mask: Some(mask),
        };
        let mut out = Vec::with_capacity(self.layers.len() + 1);
        let mut x = frozen.embed(ids)?;
        for block in &frozen.layers {
            let next = block.forward(&x, self.config.rms_norm_eps, &step, None, ops)?;
            out.push(x);
            x = next;
        }
        out.push(x);
        Ok(out)
    }

    /// The final norm, with a graph (the start of the head).
    pub(crate) fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(x, &self.norm, self.config.rms_norm_eps, self.training_ops())
    }

    /// Back-propagates `grad` (`dL/dh_L`) down the layers and into the embedding, one
    /// recomputed layer at a time (see the module docs); `boundaries` are `h_0 .. h_{L-1}`
    /// from [`Decoder::boundaries`], each dropped once its layer is done. Every segment's
    /// gradients go to `collect`.
    pub(crate) fn backprop_layers(
        &self,
        ids: &Tensor,
        positions: &Positions,
        mask: &Tensor,
        mut boundaries: Vec<Tensor>,
        mut grad: Tensor,
        collect: &mut Collect,
    ) -> Result<()> {
        let ops = self.training_ops();
        let (cos, sin) = self.rope.select(positions)?;
        let step = Step::Full {
            cos: &cos,
            sin: &sin,
            mask: Some(mask),
        };
        for block in self.layers.iter().rev() {
            let Some(input) = boundaries.pop() else {
                break;
            };
            let x = Var::from_tensor(&input)?;
            drop(input);
            let out = block.forward(x.as_tensor(), self.config.rms_norm_eps, &step, None, ops)?;
            let store = (out * &grad)?.sum_all()?.backward()?;
            collect(&store)?;
            grad = match store.get(x.as_tensor()) {
                Some(g) => g.clone(),
                // Unreachable through the residual stream; nothing flows further down.
                None => return Ok(()),
            };
        }
        // Only a trainable embedding (full fine-tuning) takes a gradient here.
        if self.embed_tokens.track_op() {
            let store = (self.embed(ids)? * &grad)?.sum_all()?.backward()?;
            collect(&store)?;
        }
        Ok(())
    }
}
