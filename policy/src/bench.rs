//! Speed accounting: FLOPs per token and a matmul peak measured in-process, for MFU.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use crate::config::LlamaConfig;
use crate::error::Result;

/// FLOPs of one token's forward pass attending to `context` earlier tokens:
/// `2 * matmul parameters + 4 * layers * context * heads * head_dim` (QK^T and PV).
pub fn forward_flops_per_token(config: &LlamaConfig, context: usize) -> f64 {
    let dense = 2.0 * to_f64(config.matmul_parameters());
    let attention = 4.0
        * to_f64(config.num_hidden_layers)
        * to_f64(context)
        * to_f64(config.num_attention_heads * config.head_width());
    dense + attention
}

/// FLOPs of one training token: forward plus backward, about 3x the forward pass.
pub fn train_flops_per_token(config: &LlamaConfig, context: usize) -> f64 {
    3.0 * forward_flops_per_token(config, context)
}

/// The best f32 matmul throughput (FLOP/s) of `device` over a few `n x n` products.
pub fn measure_matmul_peak(device: &Device, n: usize) -> Result<f64> {
    let a = Tensor::ones((n, n), DType::F32, device)?;
    let b = Tensor::ones((n, n), DType::F32, device)?;
    let mut best = 0.0f64;
    // One warm-up, then keep the fastest of a few runs.
    for round in 0..6 {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        device.synchronize()?;
        let seconds = start.elapsed().as_secs_f64();
        drop(c);
        if round > 0 && seconds > 0.0 {
            best = best.max(2.0 * to_f64(n).powi(3) / seconds);
        }
    }
    Ok(best)
}

#[allow(clippy::cast_precision_loss)] // counts are far below 2^52
fn to_f64(n: usize) -> f64 {
    n as f64
}
