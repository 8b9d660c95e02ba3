//! Learning-rate schedule: linear warm-up, then cosine decay to a floor.

use super::TrainConfig;

/// The learning rate of optimizer step `step` (0-based).
///
/// Warm-up: `lr * (step + 1) / warmup_steps` for the first `warmup_steps` steps. Then a
/// cosine from `lr` down to `lr * min_lr_ratio` at `total_steps`, flat after it.
/// `total_steps = 0` keeps `lr` constant after warm-up.
pub fn learning_rate(config: &TrainConfig, step: u64) -> f64 {
    let base = config.learning_rate;
    let warmup = config.warmup_steps;
    if step < warmup {
        return base * to_f64(step + 1) / to_f64(warmup);
    }
    if config.total_steps <= warmup {
        return base;
    }
    let progress = (to_f64(step - warmup) / to_f64(config.total_steps - warmup)).min(1.0);
    let floor = base * config.min_lr_ratio;
    floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[allow(clippy::cast_precision_loss)] // step counts are far below 2^52
fn to_f64(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let config = TrainConfig {
            learning_rate: 1.0,
            min_lr_ratio: 0.1,
            warmup_steps: 4,
            total_steps: 14,
            ..TrainConfig::default()
        };
        let lrs: Vec<f64> = (0..20).map(|s| learning_rate(&config, s)).collect();
        assert!((lrs[0] - 0.25).abs() < 1e-12);
        assert!((lrs[3] - 1.0).abs() < 1e-12);
        assert!((lrs[4] - 1.0).abs() < 1e-12);
        // Half-way through the decay: (1 + 0.1) / 2.
        assert!((lrs[9] - 0.55).abs() < 1e-12);
        assert!((lrs[14] - 0.1).abs() < 1e-12);
        assert!((lrs[19] - 0.1).abs() < 1e-12);
        assert!(lrs[4..15].windows(2).all(|w| w[1] <= w[0]));
        let constant = TrainConfig {
            learning_rate: 0.5,
            warmup_steps: 0,
            total_steps: 0,
            ..TrainConfig::default()
        };
        assert_eq!(learning_rate(&constant, 1000), 0.5);
    }
}
