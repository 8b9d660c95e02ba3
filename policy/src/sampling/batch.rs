//! One batch of rows sampled together: where each row sits in the batch's KV cache, the
//! prefill of what is new in each prompt, and the decoding loop.
//!
//! Layout: rows are left-padded so that every row's sequence ends at the same slot (one
//! cache length for the batch, as a decoding step needs). A row that brings cached keys and
//! values from an earlier call has them copied to the slots before its new tokens; the new
//! tokens of all rows are then fed as one block as wide as the most new tokens of any row.
//! A row with fewer new tokens has padding queries at the front of its block, over slots
//! that already hold its cached tokens: those queries see nothing and write nothing.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::draw::draw;
use super::{Finish, Generation, MASKED, SamplingParams, SequenceCache, StopRules, u32_of};
use crate::config::LlamaConfig;
use crate::error::{Error, Result};
use crate::model::{Decoder, Kernels, KvCache, Positions};
use crate::tokenizer::PolicyTokenizer;

struct Row {
    /// Left padding: the row's sequence starts at this slot of the batch's cache.
    pad: usize,
    prompt_len: usize,
    /// Prompt tokens whose keys and values came from the row's cache.
    reused: usize,
    /// Prompt tokens this call fed through the model.
    prefilled: usize,
    limit: usize,
    rng: ChaCha8Rng,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<Finish>,
}

impl Row {
    /// Prompt tokens fed in this call's block.
    fn new_tokens(&self) -> usize {
        self.prompt_len - self.reused
    }
}

/// Samples one group of rows as one batch; `first` is the index of its first row in the whole
/// batch (its generator stream and its name in errors). With `keep`, each row's cache ends
/// holding its prompt and completion (all but the last sampled id, which was never fed).
pub(super) fn sample(
    decoder: &Decoder,
    rules: &StopRules,
    prompts: &[Vec<u32>],
    (caches, keep): (&mut [SequenceCache], bool),
    first: usize,
    params: &SamplingParams,
) -> Result<Vec<Generation>> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let reused: Vec<usize> = prompts
        .iter()
        .zip(caches.iter())
        .map(|(p, c)| c.reusable(p))
        .collect();
    let mut rows = new_rows(decoder.config(), prompts, &reused, first, params)?;
    if params.max_new_tokens == 0 {
        // Nothing to sample, so nothing is computed and the caches stay as they were.
        return Ok(finish_rows(rows));
    }
    let width = rows[0].pad + rows[0].prompt_len;
    let capacity = width + rows.iter().map(|r| r.limit).max().unwrap_or(0);
    let mut cache = KvCache::new(decoder.config().num_hidden_layers, capacity);
    let last = prefill(decoder, &mut rows, prompts, caches, &mut cache)?;
    let kept = keep.then_some((prompts, caches));
    decode(decoder, rules, params, &mut rows, &mut cache, last, kept)?;
    Ok(finish_rows(rows))
}

/// Fills `caches` (fresh, one per prompt) with every token of each prompt, in one batch
/// and without sampling: a prefix that several rows will continue from.
pub(super) fn prefill_only(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
    caches: &mut [SequenceCache],
) -> Result<()> {
    if prompts.is_empty() {
        return Ok(());
    }
    // Rows need a sampling limit; nothing is drawn, so any will do.
    let params = SamplingParams {
        max_new_tokens: 1,
        ..SamplingParams::default()
    };
    let mut rows = new_rows(
        decoder.config(),
        prompts,
        &vec![0; prompts.len()],
        0,
        &params,
    )?;
    let width = rows[0].pad + rows[0].prompt_len;
    let mut cache = KvCache::new(decoder.config().num_hidden_layers, width);
    prefill(decoder, &mut rows, prompts, caches, &mut cache)?;
    for (slot, ((row, prompt), seq)) in rows.iter().zip(prompts).zip(caches).enumerate() {
        seq.fill(prompt.clone(), cache.extract(slot, row.pad)?);
    }
    Ok(())
}

/// Checks each prompt against the model and sets up its row (padding, generator, limit).
fn new_rows(
    config: &LlamaConfig,
    prompts: &[Vec<u32>],
    reused: &[usize],
    first: usize,
    params: &SamplingParams,
) -> Result<Vec<Row>> {
    let max_ctx = config.max_position_embeddings;
    let vocab = config.vocab_size;
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(prompts.len());
    for ((i, prompt), &reused) in (first..).zip(prompts).zip(reused) {
        if prompt.is_empty() {
            return Err(Error::InvalidInput(format!("prompt {i} is empty")));
        }
        if prompt.len() >= max_ctx {
            return Err(Error::InvalidInput(format!(
                "prompt {i} has {} tokens; the model's context is {max_ctx}",
                prompt.len()
            )));
        }
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidInput(format!(
                "prompt {i} contains token id {bad} outside the vocabulary of {vocab}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(i as u64);
        rows.push(Row {
            pad: width - prompt.len(),
            prompt_len: prompt.len(),
            reused,
            prefilled: 0,
            limit: params.max_new_tokens.min(max_ctx - prompt.len()),
            rng,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish: (params.max_new_tokens == 0).then_some(Finish::Length),
        });
    }
    Ok(rows)
}

/// Copies the rows' cached keys and values into `cache`, then feeds every row's new prompt
/// tokens as one left-padded block. Returns each row's last hidden state, `(B, hidden)`.
fn prefill(
    decoder: &Decoder,
    rows: &mut [Row],
    prompts: &[Vec<u32>],
    caches: &mut [SequenceCache],
    cache: &mut KvCache,
) -> Result<Tensor> {
    let batch = rows.len();
    let width = rows[0].pad + rows[0].prompt_len;
    let block = rows.iter().map(Row::new_tokens).max().unwrap_or(0);
    for (r, (row, seq)) in rows.iter().zip(caches.iter_mut()).enumerate() {
        for (layer, kv) in seq.take(row.reused)?.iter().enumerate() {
            cache.place(layer, (r, batch), row.pad, kv)?;
        }
    }
    let start = width - block;
    cache.start_at(start)?;
    if rows.iter().any(|r| r.reused > 0) {
        cache.skip_next(rows.iter().map(|r| block - r.new_tokens()).collect());
    }
    let device = decoder.device();
    let mut ids = Vec::with_capacity(batch * block);
    let mut positions = Vec::with_capacity(batch * block);
    let mut mask = Vec::with_capacity(batch * block * width);
    for (row, prompt) in rows.iter().zip(prompts) {
        for slot in start..width {
            // Slots before the row's new tokens are padding queries (or its cached tokens).
            let real = slot >= row.pad + row.reused;
            let position = if real { slot - row.pad } else { 0 };
            ids.push(if real { prompt[position] } else { 0 });
            positions.push(u32_of(position));
            mask.extend((0..width).map(|k| {
                if real && k >= row.pad && k <= slot {
                    0.0
                } else {
                    MASKED
                }
            }));
        }
    }
    let ids = Tensor::from_vec(ids, (batch, block), device)?;
    let mask = Tensor::from_vec(mask, (batch, 1, block, width), device)?;
    let positions = Positions::PerRow {
        batch,
        len: block,
        ids: positions,
    };
    let hidden = decoder.hidden(&ids, &positions, Some(&mask), Some(cache), Kernels::Fused)?;
    for row in rows.iter_mut() {
        row.prefilled = row.new_tokens();
    }
    Ok(hidden.narrow(1, block - 1, 1)?.squeeze(1)?)
}

/// Draws, checks for the end, and feeds the drawn ids back, until every row has finished.
/// Finished rows leave the batch (and the cache); with `kept`, each leaves its keys and
/// values in its sequence cache first.
fn decode(
    decoder: &Decoder,
    rules: &StopRules,
    params: &SamplingParams,
    rows: &mut [Row],
    cache: &mut KvCache,
    mut last: Tensor,
    mut kept: Option<(&[Vec<u32>], &mut [SequenceCache])>,
) -> Result<()> {
    let device = decoder.device().clone();
    let mut active: Vec<usize> = (0..rows.len()).collect();
    loop {
        // f32 (see Decoder::logits); on a GPU this copy is the step's one synchronisation.
        let logits = decoder.logits(&last)?.to_vec2::<f32>()?;
        draw_active(rows, &active, &logits, params);
        for &r in &active {
            rows[r].finish = finish_of(&rows[r], rules, params)?;
        }
        let keep: Vec<usize> = (0..active.len())
            .filter(|&slot| rows[active[slot]].finish.is_none())
            .collect();
        if let Some((prompts, caches)) = kept.as_mut() {
            for (slot, &r) in active.iter().enumerate() {
                if rows[r].finish.is_some() {
                    save_row(&rows[r], slot, cache, &prompts[r], &mut caches[r])?;
                }
            }
        }
        if keep.is_empty() {
            return Ok(());
        }
        if keep.len() < active.len() {
            let idx: Vec<u32> = keep.iter().map(|&s| u32_of(s)).collect();
            cache.retain_rows(&Tensor::from_vec(idx, keep.len(), &device)?)?;
            active = keep.iter().map(|&s| active[s]).collect();
        }
        let (ids, positions, mask) = step_inputs(rows, &active, cache.len(), &device)?;
        let hidden = decoder.hidden(&ids, &positions, Some(&mask), Some(cache), Kernels::Fused)?;
        last = hidden.squeeze(1)?;
    }
}

/// Each active row draws from its own logits with its own generator, in parallel.
fn draw_active(rows: &mut [Row], active: &[usize], logits: &[Vec<f32>], params: &SamplingParams) {
    let mut active_rows: Vec<&mut Row> = rows
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| active.binary_search(i).is_ok())
        .map(|(_, row)| row)
        .collect();
    active_rows
        .par_iter_mut()
        .zip(logits.par_iter())
        .for_each(|(row, logits)| {
            let (token, logprob) = draw(logits, params.temperature, params.top_p, &mut row.rng);
            row.tokens.push(token);
            row.logprobs.push(logprob);
        });
}

/// Whether the row's last drawn id ends its generation, and why.
fn finish_of(row: &Row, rules: &StopRules, params: &SamplingParams) -> Result<Option<Finish>> {
    let token = *row.tokens.last().unwrap_or(&0);
    Ok(if rules.eos.contains(&token) {
        Some(Finish::Eos)
    } else if hits_stop(rules.tokenizer, &row.tokens, &params.stop)? {
        Some(Finish::Stop)
    } else if row.tokens.len() >= row.limit {
        Some(Finish::Length)
    } else {
        None
    })
}

/// A finished row's sequence cache: its prompt and every sampled id but the last (never
/// fed), whose keys and values sit in slots `pad ..` of batch slot `slot`.
fn save_row(
    row: &Row,
    slot: usize,
    cache: &KvCache,
    prompt: &[u32],
    seq: &mut SequenceCache,
) -> Result<()> {
    let fed = &row.tokens[..row.tokens.len().saturating_sub(1)];
    let mut tokens = Vec::with_capacity(prompt.len() + fed.len());
    tokens.extend_from_slice(prompt);
    tokens.extend_from_slice(fed);
    if tokens.len() != cache.len() - row.pad {
        return Err(Error::InvalidInput(format!(
            "kv cache holds {} tokens of a row that fed {}",
            cache.len() - row.pad,
            tokens.len()
        )));
    }
    seq.fill(tokens, cache.extract(slot, row.pad)?);
    Ok(())
}

/// One decoding step's inputs for the active rows: each row's last drawn id at its next
/// position, and a mask over the cache that hides the row's left padding.
fn step_inputs(
    rows: &[Row],
    active: &[usize],
    cached: usize,
    device: &Device,
) -> Result<(Tensor, Positions, Tensor)> {
    let b = active.len();
    let keys = cached + 1;
    let mut next = Vec::with_capacity(b);
    let mut pos = Vec::with_capacity(b);
    let mut mask = Vec::with_capacity(b * keys);
    for &r in active {
        let row = &rows[r];
        next.push(*row.tokens.last().unwrap_or(&0));
        pos.push(u32_of(row.prompt_len + row.tokens.len() - 1));
        mask.extend((0..keys).map(|k| if k < row.pad { MASKED } else { 0.0 }));
    }
    let positions = Positions::PerRow {
        batch: b,
        len: 1,
        ids: pos,
    };
    Ok((
        Tensor::from_vec(next, (b, 1), device)?,
        positions,
        Tensor::from_vec(mask, (b, 1, 1, keys), device)?,
    ))
}

fn finish_rows(rows: Vec<Row>) -> Vec<Generation> {
    rows.into_iter()
        .map(|r| Generation {
            tokens: r.tokens,
            logprobs: r.logprobs,
            finish: r.finish.unwrap_or(Finish::Length),
            prefilled: r.prefilled,
        })
        .collect()
}

fn hits_stop(tokenizer: &PolicyTokenizer, tokens: &[u32], stop: &[String]) -> Result<bool> {
    if stop.is_empty() {
        return Ok(false);
    }
    let text = tokenizer.decode(tokens, false)?;
    Ok(stop.iter().any(|s| text.contains(s.as_str())))
}
