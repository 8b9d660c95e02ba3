//! LoRA settings: low-rank adapters on every linear layer of the decoder, base frozen.
//!
//! Each projection (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
//! `down_proj`) gets `y += (alpha / rank) * x A^T B^T` with `A` of shape `(rank, in)` drawn
//! uniformly in `±1/sqrt(in)` and `B` of shape `(out, rank)` starting at zero, so a fresh
//! adapter leaves the model unchanged (PEFT's defaults). The LM head and the embeddings are
//! not adapted. Adapter tensors are named like PEFT's (`...q_proj.lora_A.weight`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The projections that receive an adapter.
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Rank and scale of the adapters (the paper used rank 128 on 12-14B models).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
}

impl LoraConfig {
    /// Checks that the rank is positive and alpha finite.
    pub fn new(rank: usize, alpha: f64) -> Result<Self> {
        if rank == 0 || !alpha.is_finite() {
            return Err(Error::InvalidInput(format!(
                "lora rank {rank} must be positive and alpha {alpha} finite"
            )));
        }
        Ok(Self { rank, alpha })
    }

    /// The factor `alpha / rank` applied to the adapter's output.
    pub fn scale(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // ranks are small
        let r = self.rank as f64;
        self.alpha / r
    }
}
