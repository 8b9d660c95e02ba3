//! One forward and backward pass over a row group: whole, or with activation checkpointing
//! (see model/checkpointed.rs).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::model::Decoder;
use crate::scoring::{self, Layout, ScoreItem, ScoreOutput};

/// What a pass produced.
pub(crate) struct Pass<T> {
    /// The value of the loss that was back-propagated.
    pub(crate) loss: f64,
    /// Entropies of the scored distributions (no graph).
    pub(crate) entropies: Tensor,
    /// What the loss function returned besides the loss.
    pub(crate) extra: T,
    /// The gradient of each trainable variable that received one; `None` when the loss was
    /// not finite (nothing was back-propagated).
    pub(crate) grads: Option<BTreeMap<String, Tensor>>,
}

/// Scores `items` with `decoder` (in the compute dtype, over the trainable variables
/// `vars`), turns the scores into a scalar loss with `loss` and back-propagates it.
/// Checkpointed, the same gradients come from a layer-by-layer backward that keeps one
/// layer's graph at a time instead of all of them.
pub(crate) fn run<T>(
    decoder: &Decoder,
    vars: &BTreeMap<String, Var>,
    items: &[ScoreItem],
    checkpointing: bool,
    loss: impl FnOnce(&ScoreOutput) -> Result<(Tensor, T)>,
) -> Result<Pass<T>> {
    if checkpointing {
        let layout = Layout::new(decoder, items)?;
        if !layout.is_empty() {
            return checkpointed(decoder, vars, &layout, loss);
        }
    }
    let out = scoring::score(decoder, items, crate::model::Kernels::Autograd)?;
    let (loss, extra) = loss(&out)?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    let grads = if value.is_finite() {
        let mut grads = BTreeMap::new();
        collect(&loss.backward()?, vars, &mut grads)?;
        Some(grads)
    } else {
        None
    };
    Ok(Pass {
        loss: value,
        entropies: out.entropies,
        extra,
        grads,
    })
}

/// The checkpointed pass: the layers forward without a graph, the head (final norm, LM
/// head, log-probs, loss) with one from the last boundary made a variable, then the layers
/// backward from the head's gradient of that boundary.
fn checkpointed<T>(
    decoder: &Decoder,
    vars: &BTreeMap<String, Var>,
    layout: &Layout,
    loss: impl FnOnce(&ScoreOutput) -> Result<(Tensor, T)>,
) -> Result<Pass<T>> {
    let positions = layout.positions();
    let mut boundaries = decoder.boundaries(&layout.ids, &positions, &layout.mask)?;
    // `boundaries` always ends with the last layer's output (h_0 without layers).
    let top = match boundaries.pop() {
        Some(last) => Var::from_tensor(&last)?,
        None => {
            return Err(Error::InvalidInput(
                "the decoder gave no hidden states".into(),
            ));
        }
    };
    let out = layout.head(decoder, &decoder.final_norm(top.as_tensor())?)?;
    let entropies = out.entropies.clone();
    let (loss, extra) = loss(&out)?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    if !value.is_finite() {
        return Ok(Pass {
            loss: value,
            entropies,
            extra,
            grads: None,
        });
    }
    let mut grads = BTreeMap::new();
    let store = loss.backward()?;
    // The head's graph goes before the layers' backward starts.
    drop((out, loss));
    collect(&store, vars, &mut grads)?;
    if let Some(grad) = store.get(top.as_tensor()).cloned() {
        drop(store);
        decoder.backprop_layers(
            &layout.ids,
            &positions,
            &layout.mask,
            boundaries,
            grad,
            &mut |store| collect(store, vars, &mut grads),
        )?;
    }
    Ok(Pass {
        loss: value,
        entropies,
        extra,
        grads: Some(grads),
    })
}

/// Adds the gradients `store` holds for `vars` to `grads`, by name: a variable used in
/// several segments (a head tied to the embedding) sums its parts.
fn collect(
    store: &GradStore,
    vars: &BTreeMap<String, Var>,
    grads: &mut BTreeMap<String, Tensor>,
) -> Result<()> {
    for (name, var) in vars {
        let Some(g) = store.get(var.as_tensor()) else {
            continue;
        };
        match grads.entry(name.clone()) {
            Entry::Occupied(mut sum) => {
                let total = (sum.get() + g)?;
                sum.insert(total);
            }
            Entry::Vacant(slot) => {
                slot.insert(g.detach());
            }
        }
    }
    Ok(())
}
