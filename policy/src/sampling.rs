//! Batched generation with a KV cache.
//!
//! Prompts of different lengths are left-padded into one batch; each row keeps its own
//! positions (0 at its first real token) and an additive mask hides the padding. Rows that
//! finish are dropped from the batch (and the cache) so the rest run faster.
//!
//! **Behaviour log-prob convention.** `Generation::logprobs[i]` is the log-probability of the
//! sampled token under the model's full distribution at temperature 1 (plain log-softmax of
//! the logits, no temperature, no top-p truncation). Tokens are *drawn* with the requested
//! temperature and top-p. The learner's scorer computes exactly this quantity, so at
//! `temperature = 1, top_p = 1` it is the true behaviour log-prob; with other settings it is
//! the log-prob under the untempered policy (what GRPO's ratio is taken against).

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use rayon::prelude::*;

use crate::model::vector::{exp_f32, max_of, sum_of};
use crate::model::{Decoder, Kernels, KvCache, Positions};
use crate::row_groups;
use crate::tokenizer::PolicyTokenizer;

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
}

struct Row {
    pad: usize,
    prompt_len: usize,
    limit: usize,
    rng: ChaCha8Rng,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<Finish>,
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

/// Samples completions for `prompts` (see the module docs).
pub(crate) fn generate(
    decoder: &Decoder,
    rules: &StopRules,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
) -> Result<Vec<Generation>> {
    validate(params)?;
    if prompts.is_empty() || params.max_new_tokens == 0 {
        return generate_group(decoder, rules, prompts, 0, params);
    }
    // Stacked projections: a copy of the weights per call (~280 MB for SmolLM2, tens of ms),
    // repaid many times over by the decoding steps' wider matmuls.
    let decoder = &decoder.stacked()?;
    // Small models decode large batches as independent groups (see row_groups.rs).
    let groups = row_groups::sampling_groups(decoder.config(), decoder.device(), prompts.len());
    if groups == 1 {
        return generate_group(decoder, rules, prompts, 0, params);
    }
    let rows = prompts.len().div_ceil(groups);
    let parts = prompts
        .par_chunks(rows)
        .enumerate()
        .map(|(g, part)| generate_group(decoder, rules, part, g * rows, params))
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// Samples one group of rows as one batch; `first` is the index of its first row in the whole
/// batch (its generator stream and its name in errors).
fn generate_group(
    decoder: &Decoder,
    rules: &StopRules,
    prompts: &[Vec<u32>],
    first: usize,
    params: &SamplingParams,
) -> Result<Vec<Generation>> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let config = decoder.config();
    let max_ctx = config.max_position_embeddings;
    let vocab = config.vocab_size;
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(prompts.len());
    for (i, prompt) in (first..).zip(prompts) {
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
            limit: params.max_new_tokens.min(max_ctx - prompt.len()),
            rng,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish: if params.max_new_tokens == 0 {
                Some(Finish::Length)
            } else {
                None
            },
        });
    }
    if params.max_new_tokens == 0 {
        return Ok(finish_rows(rows));
    }
    let device = decoder.device().clone();
    let capacity = width + rows.iter().map(|r| r.limit).max().unwrap_or(0);
    let mut cache = KvCache::new(config.num_hidden_layers, capacity);

    // Prefill: every prompt, left-padded.
    let batch = rows.len();
    let mut ids = Vec::with_capacity(batch * width);
    let mut positions = Vec::with_capacity(batch * width);
    for (row, prompt) in rows.iter().zip(prompts) {
        ids.extend(std::iter::repeat_n(0u32, row.pad));
        ids.extend_from_slice(prompt);
        positions.extend((0..width).map(|t| u32_of(t.saturating_sub(row.pad))));
    }
    let mask = prefill_mask(&rows, width, &device)?;
    let ids = Tensor::from_vec(ids, (batch, width), &device)?;
    let positions = Positions::PerRow {
        batch,
        len: width,
        ids: positions,
    };
    let hidden = decoder.hidden(
        &ids,
        &positions,
        Some(&mask),
        Some(&mut cache),
        Kernels::Fused,
    )?;
    let mut last = hidden.narrow(1, width - 1, 1)?.squeeze(1)?;

    let mut active: Vec<usize> = (0..batch).collect();
    loop {
        // f32 (see Decoder::logits); on a GPU this copy is the step's one synchronisation.
        let logits = decoder.logits(&last)?.to_vec2::<f32>()?;
        // Each active row draws from its own logits with its own generator, in parallel.
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
        for &r in &active {
            let row = &mut rows[r];
            let token = *row.tokens.last().unwrap_or(&0);
            row.finish = if rules.eos.contains(&token) {
                Some(Finish::Eos)
            } else if hits_stop(rules.tokenizer, &row.tokens, &params.stop)? {
                Some(Finish::Stop)
            } else if row.tokens.len() >= row.limit {
                Some(Finish::Length)
            } else {
                None
            };
        }
        let keep: Vec<usize> = (0..active.len())
            .filter(|&slot| rows[active[slot]].finish.is_none())
            .collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            let idx: Vec<u32> = keep.iter().map(|&s| u32_of(s)).collect();
            cache.retain_rows(&Tensor::from_vec(idx, keep.len(), &device)?)?;
            active = keep.iter().map(|&s| active[s]).collect();
        }
        let b = active.len();
        let keys = cache.len() + 1;
        let mut next = Vec::with_capacity(b);
        let mut pos = Vec::with_capacity(b);
        let mut mask = Vec::with_capacity(b * keys);
        for &r in &active {
            let row = &rows[r];
            next.push(*row.tokens.last().unwrap_or(&0));
            pos.push(u32_of(row.prompt_len + row.tokens.len() - 1));
            mask.extend((0..keys).map(|k| if k < row.pad { MASKED } else { 0.0 }));
        }
        let ids = Tensor::from_vec(next, (b, 1), &device)?;
        let mask = Tensor::from_vec(mask, (b, 1, 1, keys), &device)?;
        let positions = Positions::PerRow {
            batch: b,
            len: 1,
            ids: pos,
        };
        let hidden = decoder.hidden(
            &ids,
            &positions,
            Some(&mask),
            Some(&mut cache),
            Kernels::Fused,
        )?;
        last = hidden.squeeze(1)?;
    }
    Ok(finish_rows(rows))
}

fn finish_rows(rows: Vec<Row>) -> Vec<Generation> {
    rows.into_iter()
        .map(|r| Generation {
            tokens: r.tokens,
            logprobs: r.logprobs,
            finish: r.finish.unwrap_or(Finish::Length),
        })
        .collect()
}

/// `(B, 1, T, T)`: a query sees keys at or before it that are not padding.
fn prefill_mask(rows: &[Row], width: usize, device: &Device) -> Result<Tensor> {
    let mut mask = Vec::with_capacity(rows.len() * width * width);
    for row in rows {
        for q in 0..width {
            mask.extend((0..width).map(|k| if k <= q && k >= row.pad { 0.0 } else { MASKED }));
        }
    }
    Ok(Tensor::from_vec(
        mask,
        (rows.len(), 1, width, width),
        device,
    )?)
}

fn hits_stop(tokenizer: &PolicyTokenizer, tokens: &[u32], stop: &[String]) -> Result<bool> {
    if stop.is_empty() {
        return Ok(false);
    }
    let text = tokenizer.decode(tokens, false)?;
    Ok(stop.iter().any(|s| text.contains(s.as_str())))
}

/// Draws one token id from `logits` (see [`sample_token`]) and returns it with its log-prob
/// under the untempered distribution (the behaviour log-prob, see the module docs).
///
/// At temperature 1 without top-p, the one pass of `exp` that the log-prob needs also gives
/// the sampling weights (f32, vectorised); other settings draw with [`sample_token`].
pub(crate) fn draw(
    logits: &[f32],
    temperature: f32,
    top_p: f32,
    rng: &mut ChaCha8Rng,
) -> (u32, f32) {
    let max = max_of(logits);
    let weights: Vec<f32> = logits.iter().map(|&l| exp_f32(l - max)).collect();
    let total = sum_of(&weights);
    let log_total = max + total.ln();
    let token = if temperature == 1.0 && top_p >= 1.0 {
        let mut u = rng.random::<f64>() * f64::from(total);
        let mut chosen = None;
        for (i, &w) in weights.iter().enumerate() {
            u -= f64::from(w);
            if u < 0.0 {
                chosen = Some(u32_of(i));
                break;
            }
        }
        // Rounding can leave u just above zero: take the last token with any weight.
        chosen.unwrap_or_else(|| u32_of(weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)))
    } else {
        sample_token(logits, temperature, top_p, rng)
    };
    let logprob = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| l - log_total);
    (token, logprob)
}

/// Draws one token id from `logits` with temperature and top-p (greedy at temperature 0).
pub(crate) fn sample_token(
    logits: &[f32],
    temperature: f32,
    top_p: f32,
    rng: &mut ChaCha8Rng,
) -> u32 {
    if temperature == 0.0 {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        return u32_of(best);
    }
    let t = f64::from(temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((f64::from(l) - f64::from(max)) / t).exp())
        .collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    let total: f64 = weights.iter().sum();
    let mut kept_total = total;
    if top_p < 1.0 {
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let target = f64::from(top_p) * total;
        let mut acc = 0.0;
        let mut keep = 0;
        for &i in &order {
            acc += weights[i];
            keep += 1;
            if acc >= target {
                break;
            }
        }
        order.truncate(keep.max(1));
        kept_total = acc;
    }
    let mut u = rng.random::<f64>() * kept_total;
    for &i in &order {
        u -= weights[i];
        if u < 0.0 {
            return u32_of(i);
        }
    }
    u32_of(*order.last().unwrap_or(&0))
}

#[allow(clippy::cast_possible_truncation)] // ids and positions are below the u32 vocabulary/context sizes
pub(crate) fn u32_of(n: usize) -> u32 {
    n as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_first_maximum() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(sample_token(&[0.1, 2.0, 2.0, -1.0], 0.0, 1.0, &mut rng), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Probabilities ~0.71, 0.26, 0.03: top_p 0.7 keeps only the first token.
        let logits = [3.0, 2.0, -0.3];
        for _ in 0..200 {
            assert_eq!(sample_token(&logits, 1.0, 0.7, &mut rng), 0);
        }
        let mut seen = [0usize; 3];
        for _ in 0..2000 {
            seen[sample_token(&logits, 1.0, 1.0, &mut rng) as usize] += 1;
        }
        assert!(
            seen[2] > 0 && seen[1] > seen[2] && seen[0] > seen[1],
            "{seen:?}"
        );
    }

    #[test]
    fn draw_returns_the_log_softmax_of_its_token_and_follows_the_distribution() {
        let logits = [3.0f32, 2.0, -0.3, -1e4];
        let log_total = logits.iter().map(|&l| f64::from(l).exp()).sum::<f64>().ln();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            let (token, logprob) = draw(&logits, 1.0, 1.0, &mut rng);
            let want = f64::from(logits[token as usize]) - log_total;
            assert!(
                (f64::from(logprob) - want).abs() < 1e-5,
                "{logprob} vs {want}"
            );
            seen[token as usize] += 1;
        }
        // Probabilities ~0.71, 0.26, 0.03, 0.
        assert!(seen[0] > 2600 && seen[0] < 3100, "{seen:?}");
        assert!(seen[1] > 900 && seen[1] < 1200, "{seen:?}");
        assert!(seen[2] > 60 && seen[3] == 0, "{seen:?}");
        // Other settings go through sample_token and still report the untempered log-prob.
        let (token, logprob) = draw(&logits, 0.0, 1.0, &mut rng);
        assert_eq!(token, 0);
        assert!((f64::from(logprob) - (3.0 - log_total)).abs() < 1e-5);
    }

    #[test]
    fn sampling_is_seeded() {
        let logits: Vec<f32> = (0..50u8).map(|i| f32::from(i % 7) * 0.3).collect();
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample_token(&logits, 0.8, 0.9, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
