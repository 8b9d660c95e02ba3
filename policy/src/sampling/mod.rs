//! Batched generation with a KV cache, continued across calls.
//!
//! Prompts of different lengths are left-padded into one batch; each row keeps its own
//! positions (0 at its first real token) and an additive mask hides the padding. Rows that
//! finish are dropped from the batch (and the cache) so the rest run faster.
//!
//! **Continuing a sequence.** [`Policy::generate_cached`] takes one [`SequenceCache`] per
//! prompt: the keys and values of a sequence sampled before (a conversation so far). Only the
//! prompt tokens after the longest prefix the cache shares with the prompt are fed through the
//! model (`Generation::prefilled` counts them), and the cache ends holding the prompt and the
//! completion. A multi-turn conversation thus prefills each turn's new tokens once instead of
//! its whole history every turn; [`Policy::prefill`] computes a shared prefix once for rows
//! that fork it (a GRPO group's common prompt). The cached keys and values are those a
//! single pass over the whole sequence computes, up to float rounding, so sampled log-probs
//! still agree with scoring (tested to the same 1e-4). Layout details: `batch.rs`.
//!
//! **Behaviour log-prob convention.** `Generation::logprobs[i]` is the log-probability of the
//! sampled token under the model's full distribution at temperature 1 (plain log-softmax of
//! the logits, no temperature, no top-p truncation). Tokens are *drawn* with the requested
//! temperature and top-p. The learner's scorer computes exactly this quantity, so at
//! `temperature = 1, top_p = 1` it is the true behaviour log-prob; with other settings it is
//! the log-prob under the untempered policy (what GRPO's ratio is taken against).
//!
//! [`Policy::generate_cached`]: crate::Policy::generate_cached
//! [`Policy::prefill`]: crate::Policy::prefill

mod batch;
mod draw;
mod sequence;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Decoder;
use crate::row_groups;
use crate::tokenizer::PolicyTokenizer;

pub use sequence::SequenceCache;

/// Additive mask value for hidden keys: finite so that a fully masked (padding) row stays
/// finite, and large enough that `exp` underflows to exactly zero.
pub(crate) const MASKED: f32 = -1e9;

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// New tokens per prompt at most (also bounded by the model's context).
    pub max_new_tokens: usize,
    /// 0 = greedy (argmax, lowest id on ties); 1 = the model's distribution.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Generation stops once the decoded completion contains any of these strings.
    pub stop: Vec<String>,
    /// Seed of the sampler; row `i` of a batch uses stream `i` of it.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 1.0,
            top_p: 1.0,
            stop: Vec::new(),
            seed: 0,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// An end-of-sequence or end-of-turn token was sampled (it is the last token).
    Eos,
    /// A stop string appeared; the last token is the one that completed it.
    Stop,
    /// `max_new_tokens` or the context length was reached.
    Length,
}

/// One prompt's completion: sampled ids and the behaviour log-prob of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub finish: Finish,
    /// Prompt tokens this call fed through the model: the whole prompt, less what the row's
    /// [`SequenceCache`] already held (0 when nothing was sampled).
    #[serde(default)]
    pub prefilled: usize,
}

/// What generation needs besides the decoder.
pub(crate) struct StopRules<'a> {
    pub(crate) eos: &'a [u32],
    pub(crate) tokenizer: &'a PolicyTokenizer,
}

fn validate(params: &SamplingParams) -> Result<()> {
    if !(params.temperature.is_finite() && params.temperature >= 0.0) {
        return Err(Error::InvalidInput(format!(
            "temperature {} must be finite and >= 0",
            params.temperature
        )));
    }
    if !(params.top_p > 0.0 && params.top_p <= 1.0) {
        return Err(Error::InvalidInput(format!(
            "top_p {} must be in (0, 1]",
            params.top_p
        )));
    }
    if params.stop.iter().any(String::is_empty) {
        return Err(Error::InvalidInput("stop strings must not be empty".into()));
    }
    Ok(())
}

/// Samples completions for `prompts` (see the module docs), continuing each row from its
/// cache in `caches` (one per prompt) when given; without, nothing is kept.
pub(crate) fn generate(
    decoder: &Decoder,
    rules: &StopRules,
    prompts: &[Vec<u32>],
    caches: Option<&mut [SequenceCache]>,
    params: &SamplingParams,
) -> Result<Vec<Generation>> {
    validate(params)?;
    let keep = caches.is_some();
    let mut fresh;
    let caches = match caches {
        Some(caches) if caches.len() == prompts.len() => caches,
        Some(caches) => {
            return Err(Error::InvalidInput(format!(
                "{} sequence caches for {} prompts",
                caches.len(),
                prompts.len()
            )));
        }
        None => {
            fresh = vec![SequenceCache::new(); prompts.len()];
            &mut fresh[..]
        }
    };
    if prompts.is_empty() || params.max_new_tokens == 0 {
        return batch::sample(decoder, rules, prompts, (caches, keep), 0, params);
    }
    // Stacked projections, adapters folded in, packed for the decoding steps' few-row
    // products where the CPU has a kernel for them (row-major for gemm elsewhere): a copy of
    // the weights per call (the size of the model's weights), repaid many times over by the
    // decoding steps' fewer, wider and faster matmuls.
    let decoder = &decoder.stacked()?;
    // Small models decode large batches as independent groups (see row_groups.rs).
    let groups = row_groups::sampling_groups(decoder.config(), decoder.device(), prompts.len());
    if groups == 1 {
        return batch::sample(decoder, rules, prompts, (caches, keep), 0, params);
    }
    let rows = prompts.len().div_ceil(groups);
    let parts = prompts
        .par_chunks(rows)
        .zip(caches.par_chunks_mut(rows))
        .enumerate()
        .map(|(g, (part, caches))| {
            batch::sample(decoder, rules, part, (caches, keep), g * rows, params)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// The caches of `prompts` (every token of each), computed in one batch without sampling.
pub(crate) fn prefill<'p>(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
) -> Result<Vec<SequenceCache<'p>>> {
    let mut caches = vec![SequenceCache::new(); prompts.len()];
    batch::prefill_only(decoder, prompts, &mut caches)?;
    Ok(caches)
}

#[allow(clippy::cast_possible_truncation)] // ids and positions are below the u32 vocabulary/context sizes
pub(crate) fn u32_of(n: usize) -> u32 {
    n as u32
}
