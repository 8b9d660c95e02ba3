//! The learner of one player.

use std::path::Path;

use arlas_core::Trajectory;
use arlas_policy::{
    GrpoItem, Manifest, Policy, ScoreItem, SftItem, StepStats, TrainConfig, Trainer,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Player;
use crate::error::{Error, Result};
use crate::groups::{GroupStats, grpo_items};

/// Items scored to measure the sampler-vs-learner log-prob mismatch of an update.
const MISMATCH_ITEMS: usize = 4;

/// How a learner trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnerConfig {
    /// Optimizer, schedule and GRPO loss settings.
    pub train: TrainConfig,
    /// Items per optimizer step in GRPO updates.
    pub minibatch_size: usize,
    /// Items per optimizer step in the imitation warm-up.
    pub sft_minibatch_size: usize,
    /// Leave out rollouts whose advantage is zero (groups with equal rewards).
    pub skip_zero_advantage: bool,
    /// Trajectories produced by a policy more than this many versions old are dropped.
    pub max_staleness: u64,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            train: TrainConfig::default(),
            minibatch_size: 16,
            sft_minibatch_size: 16,
            skip_zero_advantage: true,
            max_staleness: 4,
        }
    }
}

impl LearnerConfig {
    fn validate(&self) -> Result<()> {
        if self.minibatch_size == 0 || self.sft_minibatch_size == 0 {
            return Err(Error::Config(format!(
                "minibatch sizes must be positive (got {} and {})",
                self.minibatch_size, self.sft_minibatch_size
            )));
        }
        Ok(())
    }
}

/// What one GRPO update did.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub player: Player,
    /// The policy version after the update.
    pub version: u64,
    pub trajectories: usize,
    /// Trajectories older than the staleness bound, left out.
    pub dropped_stale: usize,
    pub items: usize,
    pub groups: GroupStats,
    /// Mean |learner log-prob - sampler log-prob| over a few items before the update.
    pub logprob_mismatch: f64,
    pub steps: Vec<StepStats>,
}

impl UpdateReport {
    /// Token-weighted means over the update's steps: (loss, kl, entropy, clip fraction,
    /// grad norm). Zeros when no step ran.
    pub fn means(&self) -> StepMeans {
        StepMeans::of(&self.steps)
    }
}

/// Token-weighted means of several steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMeans {
    pub loss: f64,
    pub kl: f64,
    pub entropy: f64,
    pub clip_fraction: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub skipped: usize,
}

impl StepMeans {
    pub fn of(steps: &[StepStats]) -> Self {
        let mut m = Self::default();
        let mut weight = 0f64;
        for s in steps.iter().filter(|s| !s.skipped) {
            #[allow(clippy::cast_precision_loss)]
            let w = s.tokens.max(1) as f64;
            weight += w;
            m.loss += s.loss * w;
            m.kl += s.kl * w;
            m.entropy += s.entropy * w;
            m.clip_fraction += s.clip_fraction * w;
            m.grad_norm += s.grad_norm * w;
            m.tokens += s.tokens;
        }
        m.skipped = steps.iter().filter(|s| s.skipped).count();
        if weight > 0.0 {
            m.loss /= weight;
            m.kl /= weight;
            m.entropy /= weight;
            m.clip_fraction /= weight;
            m.grad_norm /= weight;
        }
        m
    }
}

/// Trains one player's policy.
pub struct Learner {
    player: Player,
    trainer: Trainer,
    reference: Option<Policy>,
    version: u64,
    config: LearnerConfig,
}

impl Learner {
    /// A learner for `player` whose policy is at `version`. The KL reference is set with
    /// [`Learner::freeze_reference`] (usually right after the warm-up).
    pub fn new(
        player: Player,
        trainer: Trainer,
        config: LearnerConfig,
        version: u64,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            player,
            trainer,
            reference: None,
            version,
            config,
        })
    }

    pub fn player(&self) -> Player {
        self.player
    }

    /// The live policy (actors in the same process sample from it directly).
    pub fn policy(&self) -> &Policy {
        self.trainer.policy()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Moves to the next version with the weights unchanged: lock-step (`--sync`) training
    /// publishes one version per batch even when a batch taught nothing, so that actors
    /// waiting for new versions go on.
    pub fn advance_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// Freezes a copy of the current weights as the KL reference.
    pub fn freeze_reference(&mut self) -> Result<()> {
        self.reference = Some(self.trainer.policy().frozen_copy()?);
        Ok(())
    }

    /// Uses `reference` as the KL reference.
    pub fn set_reference(&mut self, reference: Policy) {
        self.reference = Some(reference);
    }

    /// One epoch of imitation over `items` in shuffled mini-batches. `on_step` sees each
    /// step's index, the number of steps and its stats (for progress bars and metrics).
    pub fn imitate(
        &mut self,
        items: &[SftItem],
        seed: u64,
        mut on_step: impl FnMut(usize, usize, &StepStats),
    ) -> Result<Vec<StepStats>> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let chunks: Vec<&[usize]> = order.chunks(self.config.sft_minibatch_size).collect();
        let mut steps = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let mut batch: Vec<SftItem> = chunk.iter().map(|&j| items[j].clone()).collect();
            // Similar lengths share a micro-batch: less padding to compute through.
            batch.sort_by_key(|item| item.tokens.len());
            let stats = self.trainer.sft_step(&batch)?;
            on_step(i, chunks.len(), &stats);
            steps.push(stats);
        }
        Ok(steps)
    }

    /// A GRPO update from `trajectories` (this player's side of each), in shuffled
    /// mini-batches; the version goes up by one if any step ran.
    pub fn update(&mut self, trajectories: &[Trajectory], seed: u64) -> Result<UpdateReport> {
        let oldest = self.version.saturating_sub(self.config.max_staleness);
        let fresh: Vec<Trajectory> = trajectories
            .iter()
            .filter(|t| (oldest..=self.version).contains(&t.version(self.player)))
            .cloned()
            .collect();
        let dropped_stale = trajectories.len() - fresh.len();
        if dropped_stale > 0 {
            tracing::warn!(player = %self.player, dropped_stale, version = self.version, "dropped stale trajectories");
        }
        let (mut items, groups) = grpo_items(self.player, &fresh, self.config.skip_zero_advantage);
        items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let logprob_mismatch = self.mismatch(&items)?;
        let mut steps = Vec::new();
        for batch in items.chunks_mut(self.config.minibatch_size) {
            // Similar lengths share a micro-batch: less padding to compute through.
            batch.sort_by_key(|item| item.tokens.len());
            steps.push(self.trainer.grpo_step(batch, self.reference.as_ref())?);
        }
        if steps.iter().any(|s| !s.skipped) {
            self.version += 1;
        }
        Ok(UpdateReport {
            player: self.player,
            version: self.version,
            trajectories: trajectories.len(),
            dropped_stale,
            items: items.len(),
            groups,
            logprob_mismatch,
            steps,
        })
    }

    /// Mean absolute difference between the learner's log-probs (before the update) and the
    /// sampler's, over the first few items: 0 up to float noise when nothing is stale.
    fn mismatch(&self, items: &[GrpoItem]) -> Result<f64> {
        let sample: Vec<&GrpoItem> = items.iter().take(MISMATCH_ITEMS).collect();
        if sample.is_empty() {
            return Ok(0.0);
        }
        let scores: Vec<ScoreItem> = sample
            .iter()
            .map(|i| ScoreItem {
                tokens: i.tokens.clone(),
                mask: i.mask.clone(),
            })
            .collect();
        let scored = self
            .trainer
            .policy()
            .score_no_grad(&scores)?
            .logprobs_vec()?;
        let (mut sum, mut n) = (0f64, 0usize);
        for (row, item) in scored.iter().zip(&sample) {
            for (a, b) in row.iter().zip(&item.behaviour_logprobs) {
                sum += f64::from((a - b).abs());
                n += 1;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        Ok(if n == 0 { 0.0 } else { sum / n as f64 })
    }

    /// Writes the policy, optimizer and trainer state to `dir`.
    pub fn save(&self, dir: &Path) -> Result<Manifest> {
        Ok(self.trainer.save_checkpoint(dir)?)
    }
}
