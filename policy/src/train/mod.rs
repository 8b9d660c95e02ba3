//! Training a policy: AdamW with clipping, warm-up + cosine schedule and gradient
//! accumulation; SFT and GRPO steps; checkpoints that resume exactly.
//!
//! One call of [`Trainer::sft_step`] or [`Trainer::grpo_step`] is one optimizer step over
//! all the items given, processed in micro-batches of `micro_batch_size` items whose
//! gradients are accumulated. Losses are token-level means over every scored token of the
//! step. A NaN or infinite loss or gradient norm skips the update (weights, moments and
//! the step counter untouched) with a warning.

mod backprop;
mod loss;
mod optimizer;
mod schedule;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Manifest};
use crate::error::{Error, Result};
use crate::load::{LoadOptions, ModelSpec};
use crate::policy::{Policy, tensors_to_safetensors};
use crate::row_groups;
use crate::scoring::{ScoreItem, ScoreOutput, validate_item};

pub use loss::{GrpoCoefficients, GrpoTerms, grpo_token_loss, sft_token_loss};
pub use schedule::learning_rate;

use optimizer::AdamW;

/// A demonstration: tokens and the mask of the tokens to imitate.
pub type SftItem = ScoreItem;

/// One sequence of a GRPO batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoItem {
    /// Every id the actor fed and sampled.
    pub tokens: Vec<u32>,
    /// True on this player's sampled tokens.
    pub mask: Vec<bool>,
    /// The sampler's log-prob of each masked token, in order.
    pub behaviour_logprobs: Vec<f32>,
    /// The episode's group-normalised advantage, shared by all its tokens.
    pub advantage: f32,
}

/// Optimizer, schedule and loss settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub learning_rate: f64,
    /// The cosine decays to `learning_rate * min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Step at which the cosine reaches its floor (0 = constant after warm-up).
    pub total_steps: u64,
    /// Decoupled weight decay (matrices only).
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub max_grad_norm: f64,
    /// Items per forward/backward pass; gradients of a step's micro-batches accumulate.
    pub micro_batch_size: usize,
    /// Padded tokens per forward/backward pass at most (items x the longest item's length;
    /// 0 = no cap), so that a micro-batch of long conversations does not hold the activations
    /// of `micro_batch_size` of them at once: memory follows tokens, not items. An item
    /// longer than the cap is a micro-batch of its own.
    pub micro_batch_tokens: usize,
    /// GRPO lower clip bound (ratio floor `1 - clip_low`).
    pub clip_low: f64,
    /// GRPO upper clip bound (ratio ceiling `1 + clip_high`).
    pub clip_high: f64,
    /// Coefficient of the k3 KL penalty to the reference model.
    pub kl_coef: f64,
    /// Recompute each decoder layer during the backward pass instead of keeping its
    /// activations from the forward pass (see model/checkpointed.rs): a step then holds the
    /// hidden state between layers and one layer's graph at a time, not every layer's graph.
    /// The same gradients for one more forward pass of the layers. On by default because
    /// memory, not compute, limits what fits: SmolLM2-135M with LoRA (rank 16) on one
    /// 1,024-token conversation peaked at 6.87 GB without it and 1.52 GB with it, for 16%
    /// more seconds per step (two items: 11.4 -> 1.9 GB, +22%).
    pub activation_checkpointing: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            min_lr_ratio: 0.1,
            warmup_steps: 0,
            total_steps: 0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: 1.0,
            micro_batch_size: 4,
            micro_batch_tokens: 0,
            clip_low: 0.1,
            clip_high: 0.3,
            kl_coef: 0.05,
            activation_checkpointing: true,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        let finite = [
            self.learning_rate,
            self.min_lr_ratio,
            self.weight_decay,
            self.beta1,
            self.beta2,
            self.eps,
            self.max_grad_norm,
            self.clip_low,
            self.clip_high,
            self.kl_coef,
        ];
        if finite.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(Error::InvalidInput(format!(
                "training settings must be finite and non-negative: {self:?}"
            )));
        }
        if self.micro_batch_size == 0
            || self.beta1 >= 1.0
            || self.beta2 >= 1.0
            || self.clip_low >= 1.0
        {
            return Err(Error::InvalidInput(format!(
                "micro_batch_size must be positive, betas below 1 and clip_low below 1: {self:?}"
            )));
        }
        Ok(())
    }
}

/// The end of the micro-batch that starts at item `start`: at most `micro_batch_size` items
/// whose padded size (count x longest) stays within `micro_batch_tokens`, and at least one.
fn micro_batch_end(start: usize, lengths: &[usize], config: &TrainConfig) -> usize {
    let cap = match config.micro_batch_tokens {
        0 => usize::MAX,
        cap => cap,
    };
    let last = (start + config.micro_batch_size.max(1)).min(lengths.len());
    let mut longest = 0;
    for (i, &len) in lengths.iter().enumerate().take(last).skip(start) {
        longest = longest.max(len);
        if i > start && (i + 1 - start).saturating_mul(longest) > cap {
            return i;
        }
    }
    last
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Mean token loss.
    pub loss: f64,
    /// Mean k3 KL to the reference (0 without one or for SFT).
    pub kl: f64,
    /// Mean entropy of the scored distributions.
    pub entropy: f64,
    /// Fraction of tokens on the clipped branch (GRPO).
    pub clip_fraction: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Scored tokens in the step.
    pub tokens: usize,
    /// Learning rate used.
    pub learning_rate: f64,
    /// True when the update was skipped (NaN or infinite loss or gradient).
    pub skipped: bool,
}

/// `trainer_state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: u64,
    optimizer_step: u64,
    config: TrainConfig,
}

/// Trains a policy (owns it; see the module docs).
pub struct Trainer {
    policy: Policy,
    config: TrainConfig,
    optimizer: AdamW,
    step: u64,
}

/// What one row group of a micro-batch contributes to a step.
struct GroupResult {
    loss: f64,
    kl_sum: f64,
    clipped: usize,
    entropy: f64,
    grads: BTreeMap<String, Tensor>,
}

/// The summed loss of one row group and its side statistics.
struct MicroLoss {
    loss: Tensor,
    kl_sum: f64,
    clipped: usize,
}

impl Trainer {
    /// A trainer for a policy loaded with `trainable: true`.
    pub fn new(policy: Policy, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        if policy.trainable_vars().is_empty() {
            return Err(Error::InvalidInput(
                "the policy has no trainable weights: load it with LoadOptions { trainable: true, .. }"
                    .to_string(),
            ));
        }
        Ok(Self {
            policy,
            config,
            optimizer: AdamW::default(),
            step: 0,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Mutable access (e.g. to load broadcast weights); the optimizer state is kept.
    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    pub fn into_policy(self) -> Policy {
        self.policy
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Optimizer steps taken (skipped steps do not count).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The learning rate of the next step.
    pub fn learning_rate(&self) -> f64 {
        learning_rate(&self.config, self.step)
    }

    /// One SFT step: mean negative log-likelihood of the masked tokens.
    pub fn sft_step(&mut self, items: &[SftItem]) -> Result<StepStats> {
        let total = self.count_tokens(items.iter())?;
        self.run_step(items, total, |_, out| {
            Ok(MicroLoss {
                loss: sft_token_loss(&out.logprobs)?.sum_all()?,
                kl_sum: 0.0,
                clipped: 0,
            })
        })
    }

    /// One GRPO step: clipped policy ratio against the behaviour log-probs, KL to
    /// `reference` (scored without a graph) when given.
    pub fn grpo_step(
        &mut self,
        items: &[GrpoItem],
        reference: Option<&Policy>,
    ) -> Result<StepStats> {
        let scores: Vec<ScoreItem> = items
            .iter()
            .map(|it| ScoreItem {
                tokens: it.tokens.clone(),
                mask: it.mask.clone(),
            })
            .collect();
        let total = self.count_tokens(scores.iter())?;
        for (i, (item, score)) in items.iter().zip(&scores).enumerate() {
            if item.behaviour_logprobs.len() != score.scored_tokens() {
                return Err(Error::InvalidInput(format!(
                    "grpo item {i} has {} behaviour log-probs for {} masked tokens",
                    item.behaviour_logprobs.len(),
                    score.scored_tokens()
                )));
            }
        }
        let coefficients = GrpoCoefficients {
            clip_low: self.config.clip_low,
            clip_high: self.config.clip_high,
            kl_coef: self.config.kl_coef,
        };
        self.run_step(&scores, total, |range, out| {
            let chunk = &scores[range.clone()];
            let reference_lp: Option<Vec<f32>> = match reference {
                Some(r) => Some(r.score_no_grad(chunk)?.logprobs.to_vec1::<f32>()?),
                None => None,
            };
            let mut behaviour = Vec::new();
            let mut advantages = Vec::new();
            for item in &items[range] {
                behaviour.extend_from_slice(&item.behaviour_logprobs);
                advantages.extend(std::iter::repeat_n(
                    item.advantage,
                    item.behaviour_logprobs.len(),
                ));
            }
            let terms = grpo_token_loss(
                &out.logprobs,
                &behaviour,
                reference_lp.as_deref(),
                &advantages,
                coefficients,
            )?;
            Ok(MicroLoss {
                loss: terms.loss.sum_all()?,
                kl_sum: terms.kl.iter().map(|&k| f64::from(k)).sum(),
                clipped: terms.clipped.iter().filter(|&&c| c).count(),
            })
        })
    }

    fn count_tokens<'a>(&self, items: impl Iterator<Item = &'a ScoreItem>) -> Result<usize> {
        let config = self.policy.config();
        let mut total = 0;
        for (i, item) in items.enumerate() {
            validate_item(i, item, config.vocab_size, config.context_len())?;
            total += item.scored_tokens();
        }
        if total == 0 {
            return Err(Error::InvalidInput(
                "the step has no masked tokens to train on".to_string(),
            ));
        }
        Ok(total)
    }

    /// Accumulates gradients over micro-batches, clips, and updates. `micro` turns the
    /// scores of a range of `scores` into its summed loss; a small model's micro-batch runs
    /// as row groups in parallel (see row_groups.rs), their gradients summed in order.
    fn run_step(
        &mut self,
        scores: &[ScoreItem],
        total_tokens: usize,
        micro: impl Fn(std::ops::Range<usize>, &ScoreOutput) -> Result<MicroLoss> + Sync,
    ) -> Result<StepStats> {
        let lr = self.learning_rate();
        let vars = self.policy.trainable_vars();
        let denominator = count_f64(total_tokens);
        let lengths: Vec<usize> = scores.iter().map(|it| it.tokens.len()).collect();
        let lengths = lengths.as_slice();
        let items = lengths.len();
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let (mut loss_sum, mut kl_sum, mut entropy_sum, mut clipped) = (0.0, 0.0, 0.0, 0);
        let mut start = 0;
        let mut skipped = false;
        // One group's loss, statistics and gradients; `None` when its loss is not finite.
        let group = |range: std::ops::Range<usize>| -> Result<Option<GroupResult>> {
            let pass = backprop::run(
                &self.policy.compute_decoder()?,
                &vars,
                &scores[range.clone()],
                self.config.activation_checkpointing,
                |out| {
                    let parts = micro(range.clone(), out)?;
                    Ok(((parts.loss / denominator)?, (parts.kl_sum, parts.clipped)))
                },
            )?;
            let Some(grads) = pass.grads else {
                return Ok(None);
            };
            let entropy = f64::from(pass.entropies.sum_all()?.to_scalar::<f32>()?);
            Ok(Some(GroupResult {
                loss: pass.loss,
                kl_sum: pass.extra.0,
                clipped: pass.extra.1,
                entropy,
                grads,
            }))
        };
        'micro_batches: while start < items {
            let end = micro_batch_end(start, lengths, &self.config);
            let groups = row_groups::training_groups(
                self.policy.config(),
                self.policy.device(),
                start..end,
                lengths,
            );
            start = end;
            let results: Vec<Option<GroupResult>> = if groups.len() == 1 {
                groups.into_iter().map(group).collect::<Result<_>>()?
            } else {
                groups.into_par_iter().map(group).collect::<Result<_>>()?
            };
            for result in results {
                let Some(result) = result else {
                    skipped = true;
                    break 'micro_batches;
                };
                loss_sum += result.loss;
                kl_sum += result.kl_sum;
                clipped += result.clipped;
                entropy_sum += result.entropy;
                for (name, g) in result.grads {
                    let acc = match grads.remove(&name) {
                        Some(prev) => (prev + g)?,
                        None => g,
                    };
                    grads.insert(name, acc);
                }
            }
        }
        let mut stats = StepStats {
            loss: loss_sum,
            kl: kl_sum / denominator,
            entropy: entropy_sum / denominator,
            clip_fraction: count_f64(clipped) / denominator,
            grad_norm: 0.0,
            tokens: total_tokens,
            learning_rate: lr,
            skipped,
        };
        if skipped {
            tracing::warn!(
                step = self.step,
                "non-finite loss: update skipped, weights unchanged"
            );
            stats.loss = f64::NAN;
            return Ok(stats);
        }
        let mut squares = 0.0;
        for g in grads.values() {
            squares += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
        let norm = squares.sqrt();
        stats.grad_norm = norm;
        if !norm.is_finite() {
            tracing::warn!(
                step = self.step,
                "non-finite gradient norm: update skipped, weights unchanged"
            );
            stats.skipped = true;
            return Ok(stats);
        }
        let max = self.config.max_grad_norm;
        let scale = if max > 0.0 && norm > max {
            max / (norm + 1e-6)
        } else {
            1.0
        };
        self.optimizer
            .update(&self.config, &vars, &grads, lr, scale)?;
        self.step += 1;
        Ok(stats)
    }

    /// Writes the model, the optimizer state and the trainer state to `dir` (atomically).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<Manifest> {
        let mut files = checkpoint::policy_files(&self.policy)?;
        files.push((
            checkpoint::OPTIMIZER_FILE.to_string(),
            tensors_to_safetensors(&self.optimizer.state_tensors())?,
        ));
        let state = TrainerState {
            step: self.step,
            optimizer_step: self.optimizer.step_count(),
            config: self.config.clone(),
        };
        files.push((
            checkpoint::TRAINER_STATE.to_string(),
            serde_json::to_vec_pretty(&state)
                .map_err(|e| Error::json(checkpoint::TRAINER_STATE, e))?,
        ));
        checkpoint::write_checkpoint(dir, &self.policy, files)
    }

    /// Restores a trainer from a checkpoint written by [`Trainer::save_checkpoint`]
    /// (verifying its hashes): weights, optimizer moments, step and settings.
    pub fn resume(dir: &Path, device: &Device, options: &LoadOptions) -> Result<Self> {
        let options = LoadOptions {
            trainable: true,
            lora: None,
            ..options.clone()
        };
        let policy = Policy::load(&ModelSpec::Path(dir.to_path_buf()), device, &options)?;
        let state_path = dir.join(checkpoint::TRAINER_STATE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| {
            Error::checkpoint(
                dir,
                format!("no trainer state ({e}): was it saved by a Trainer?"),
            )
        })?;
        let state: TrainerState =
            serde_json::from_str(&text).map_err(|e| Error::json(&state_path, e))?;
        let moments = candle_core::safetensors::load(dir.join(checkpoint::OPTIMIZER_FILE), device)
            .map_err(|e| Error::checkpoint(dir, format!("cannot read the optimizer state: {e}")))?;
        let optimizer = AdamW::restore(moments, state.optimizer_step, &policy.trainable_vars())?;
        state.config.validate()?;
        Ok(Self {
            policy,
            config: state.config,
            optimizer,
            step: state.step,
        })
    }
}

#[allow(clippy::cast_precision_loss)] // token counts are far below 2^52
fn count_f64(n: usize) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(lengths: &[usize], items: usize, tokens: usize) -> Vec<usize> {
        let config = TrainConfig {
            micro_batch_size: items,
            micro_batch_tokens: tokens,
            ..TrainConfig::default()
        };
        let (mut start, mut out) = (0, Vec::new());
        while start < lengths.len() {
            start = micro_batch_end(start, lengths, &config);
            out.push(start);
        }
        out
    }

    #[test]
    fn micro_batches_respect_both_caps_and_always_advance() {
        let lengths = [100, 300, 200, 900, 50, 50];
        assert_eq!(ends(&lengths, 4, 0), [4, 6]);
        // Padded: 1x100, 2x300 = 600, 3x300 = 900 > 800: cut before the third item.
        assert_eq!(ends(&lengths, 4, 800), [2, 3, 4, 6]);
        // Every item alone when the cap is below each of them.
        assert_eq!(ends(&lengths, 4, 1), [1, 2, 3, 4, 5, 6]);
    }
}
