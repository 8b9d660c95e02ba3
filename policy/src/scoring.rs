//! Scoring: full-sequence forward passes that return the log-probability (with autograd) and
//! the entropy of every completion token of a batch of sequences.
//!
//! Sequences are right-padded; a causal mask is all they need, because padding only ever
//! follows the real tokens. Only positions that predict a masked token go through the LM
//! head, which keeps the head's cost and memory proportional to the completion tokens.

use std::ops::Range;

use candle_core::{D, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Decoder, Kernels, Positions, ops, token_logprobs};
use crate::sampling::{MASKED, u32_of};

/// One sequence to score: every id the actor fed and sampled, and `mask[i] = true` on the
/// tokens whose log-probs are wanted (the player's own completions; several spans allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreItem {
    pub tokens: Vec<u32>,
    pub mask: Vec<bool>,
}

impl ScoreItem {
    /// A prompt followed by its completion, the completion masked.
    pub fn completion(prompt: &[u32], completion: &[u32]) -> Self {
        let mut tokens = prompt.to_vec();
        tokens.extend_from_slice(completion);
        let mut mask = vec![false; prompt.len()];
        mask.extend(std::iter::repeat_n(true, completion.len()));
        Self { tokens, mask }
    }

    /// Number of masked (scored) tokens.
    pub fn scored_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }
}

/// Log-probs and entropies of the masked tokens of a batch, flattened in item order.
#[derive(Debug, Clone)]
pub struct ScoreOutput {
    /// `(N,)` log-probs; carries the autograd graph when produced by `Policy::score`.
    pub logprobs: Tensor,
    /// `(N,)` entropies of the predicted distributions (no graph).
    pub entropies: Tensor,
    /// The slice of the flat outputs that belongs to each item.
    pub spans: Vec<Range<usize>>,
}

impl ScoreOutput {
    /// Total scored tokens.
    pub fn len(&self) -> usize {
        self.spans.last().map_or(0, |s| s.end)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Log-probs per item.
    pub fn logprobs_vec(&self) -> Result<Vec<Vec<f32>>> {
        self.split(&self.logprobs)
    }

    /// Entropies per item.
    pub fn entropies_vec(&self) -> Result<Vec<Vec<f32>>> {
        self.split(&self.entropies)
    }

    fn split(&self, t: &Tensor) -> Result<Vec<Vec<f32>>> {
        let flat = if self.is_empty() {
            Vec::new()
        } else {
            t.detach().to_vec1::<f32>()?
        };
        Ok(self
            .spans
            .iter()
            .map(|s| flat[s.clone()].to_vec())
            .collect())
    }
}

/// Checks an item against the model: lengths, mask, vocabulary and context.
pub(crate) fn validate_item(
    i: usize,
    item: &ScoreItem,
    vocab: usize,
    max_ctx: usize,
) -> Result<()> {
    if item.tokens.len() != item.mask.len() {
        return Err(Error::InvalidInput(format!(
            "item {i} has {} tokens but {} mask entries",
            item.tokens.len(),
            item.mask.len()
        )));
    }
    if item.tokens.is_empty() {
        return Err(Error::InvalidInput(format!("item {i} is empty")));
    }
    if item.mask[0] {
        return Err(Error::InvalidInput(format!(
            "item {i} masks its first token, which has no context to be scored from"
        )));
    }
    if item.tokens.len() > max_ctx {
        return Err(Error::InvalidInput(format!(
            "item {i} has {} tokens; the model's context is {max_ctx}",
            item.tokens.len()
        )));
    }
    if let Some(bad) = item.tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::InvalidInput(format!(
            "item {i} contains token id {bad} outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// A batch laid out for one full-sequence pass: right-padded ids, the causal mask, and the
/// flat rows (into `(B * T, hidden)`) that predict each masked token.
pub(crate) struct Layout {
    pub(crate) ids: Tensor,
    pub(crate) mask: Tensor,
    batch: usize,
    width: usize,
    rows: Vec<u32>,
    targets: Vec<u32>,
    spans: Vec<Range<usize>>,
}

impl Layout {
    /// Validates `items` against the model and lays them out.
    pub(crate) fn new(decoder: &Decoder, items: &[ScoreItem]) -> Result<Self> {
        let config = decoder.config();
        for (i, item) in items.iter().enumerate() {
            validate_item(i, item, config.vocab_size, config.max_position_embeddings)?;
        }
        let device = decoder.device();
        let mut spans = Vec::with_capacity(items.len());
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let width = items.iter().map(|it| it.tokens.len()).max().unwrap_or(0);
        for (b, item) in items.iter().enumerate() {
            let start = targets.len();
            for (i, (&token, &m)) in item.tokens.iter().zip(&item.mask).enumerate() {
                if m {
                    rows.push(u32_of(b * width + i - 1));
                    targets.push(token);
                }
            }
            spans.push(start..targets.len());
        }
        let batch = items.len();
        let mut ids = Vec::with_capacity(batch * width);
        for item in items {
            ids.extend_from_slice(&item.tokens);
            ids.extend(std::iter::repeat_n(0u32, width - item.tokens.len()));
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, (batch, width), device)?,
            mask: causal_mask(width, device)?,
            batch,
            width,
            rows,
            targets,
            spans,
        })
    }

    /// Whether no token is masked (nothing to score).
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Positions `0..T`, shared by every row.
    pub(crate) fn positions(&self) -> Positions {
        Positions::Range {
            start: 0,
            len: self.width,
        }
    }

    /// The output of a batch without masked tokens.
    fn empty(&self, device: &Device) -> Result<ScoreOutput> {
        let empty = Tensor::zeros(0, candle_core::DType::F32, device)?;
        Ok(ScoreOutput {
            logprobs: empty.clone(),
            entropies: empty,
            spans: self.spans.clone(),
        })
    }

    /// The head of the pass: from the final (normed) hidden states `(B, T, hidden)`, the
    /// log-probs and entropies of the masked tokens. Only their rows go through the LM head.
    pub(crate) fn head(&self, decoder: &Decoder, hidden: &Tensor) -> Result<ScoreOutput> {
        let device = decoder.device();
        if self.is_empty() {
            return self.empty(device);
        }
        let hidden = hidden.reshape((self.batch * self.width, decoder.config().hidden_size))?;
        let n = self.targets.len();
        let rows = Tensor::from_vec(self.rows.clone(), n, device)?;
        let logits = decoder.logits(&hidden.index_select(&rows, 0)?)?;
        let (logprobs, entropies) = if decoder.native() {
            // One kernel with its own backward (no (tokens, vocab) log-softmax kept for it).
            token_logprobs::token_logprobs(&logits, &self.targets)?
        } else {
            let log_probs = ops::log_softmax_last(&logits)?;
            let targets = Tensor::from_vec(self.targets.clone(), (n, 1), device)?;
            let logprobs = log_probs.gather(&targets, D::Minus1)?.squeeze(1)?;
            let detached = log_probs.detach();
            let entropies = (detached.exp()? * &detached)?.sum(D::Minus1)?.neg()?;
            (logprobs, entropies)
        };
        Ok(ScoreOutput {
            logprobs,
            entropies,
            spans: self.spans.clone(),
        })
    }
}

/// Scores `items` with `decoder` (see the module docs).
pub(crate) fn score(
    decoder: &Decoder,
    items: &[ScoreItem],
    kernels: Kernels,
) -> Result<ScoreOutput> {
    let layout = Layout::new(decoder, items)?;
    if layout.is_empty() {
        return layout.empty(decoder.device());
    }
    let positions = layout.positions();
    let hidden = decoder.hidden(&layout.ids, &positions, Some(&layout.mask), None, kernels)?;
    layout.head(decoder, &hidden)
}

/// Full next-token log-prob distributions after each context (scoring path, no cache).
pub(crate) fn next_token_logprobs(
    decoder: &Decoder,
    contexts: &[Vec<u32>],
    kernels: Kernels,
) -> Result<Vec<Vec<f32>>> {
    if contexts.is_empty() {
        return Ok(Vec::new());
    }
    let config = decoder.config();
    let items: Vec<ScoreItem> = contexts
        .iter()
        .map(|c| ScoreItem {
            tokens: c.clone(),
            mask: vec![false; c.len()],
        })
        .collect();
    for (i, item) in items.iter().enumerate() {
        validate_item(i, item, config.vocab_size, config.max_position_embeddings)?;
    }
    let device = decoder.device().clone();
    let width = contexts.iter().map(Vec::len).max().unwrap_or(0);
    let batch = contexts.len();
    let mut ids = Vec::with_capacity(batch * width);
    let mut rows = Vec::with_capacity(batch);
    for (b, c) in contexts.iter().enumerate() {
        ids.extend_from_slice(c);
        ids.extend(std::iter::repeat_n(0u32, width - c.len()));
        rows.push(u32_of(b * width + c.len() - 1));
    }
    let ids = Tensor::from_vec(ids, (batch, width), &device)?;
    let mask = causal_mask(width, &device)?;
    let positions = Positions::Range {
        start: 0,
        len: width,
    };
    let hidden = decoder.hidden(&ids, &positions, Some(&mask), None, kernels)?;
    let hidden = hidden.reshape((batch * width, config.hidden_size))?;
    let last = hidden.index_select(&Tensor::from_vec(rows, batch, &device)?, 0)?;
    let log_probs = ops::log_softmax_last(&decoder.logits(&last)?)?;
    Ok(log_probs.detach().to_vec2::<f32>()?)
}

/// `(1, 1, T, T)` additive causal mask.
pub(crate) fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|q| (0..t).map(move |k| if k <= q { 0.0 } else { MASKED }))
        .collect();
    Ok(Tensor::from_vec(mask, (1, 1, t, t), device)?)
}
