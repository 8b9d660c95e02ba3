//! How a small model uses several cores: independent groups of rows instead of split ops.
//!
//! A small model's forward pass is hundreds of small ops. Run as one batch on several
//! threads, every op is split across them and the threads synchronise at each one: for the
//! 2M-parameter `tiny` on 2 cores that synchronisation cost more than the second core gave.
//! Split into groups, each group is a batch of its own and a task on rayon's pool: one thread
//! runs a group start to finish, the ops inside it still spread to any idle thread, and the
//! results are joined in order. Measured on 2 cores (docs/benchmarks.md): `tiny` sampling at
//! batch 32 from 9.6k to 14.7k tokens/s, GRPO training at batch 8 x 256 tokens from 7.5k to
//! 9.7k tokens/s (then 12.1k with the allocator's top pad, alloc.rs).
//!
//! The groups depend only on the model and the batch, never on the thread count, so a seed
//! gives the same samples and the same update on any machine. (A row's values do depend, in
//! the last bits, on which rows share its group, as they already depend on its batch.)

use std::ops::Range;

use candle_core::Device;

use crate::config::LlamaConfig;

/// Models up to this width count as small: their ops cost more to dispatch and synchronise
/// than to compute. SmolLM2-135M (576) is not small: its matmuls use the cores well.
const SMALL_MODEL_MAX_HIDDEN: usize = 512;
/// Rows per sampling group at most.
const SAMPLING_GROUP_ROWS: usize = 16;
/// Padded tokens per training group at least: fewer would leave the matmuls too small.
const TRAINING_GROUP_TOKENS: usize = 1024;

fn small(config: &LlamaConfig, device: &Device) -> bool {
    device.is_cpu() && config.hidden_size <= SMALL_MODEL_MAX_HIDDEN
}

/// Sampling: how many groups to decode `batch` rows in.
pub(crate) fn sampling_groups(config: &LlamaConfig, device: &Device, batch: usize) -> usize {
    if small(config, device) {
        batch.div_ceil(SAMPLING_GROUP_ROWS).max(1)
    } else {
        1
    }
}

/// Training: the micro-batch `items` (indices into `lengths`, each item's token count) split
/// into consecutive groups of at least [`TRAINING_GROUP_TOKENS`] padded tokens, balanced by
/// row count.
pub(crate) fn training_groups(
    config: &LlamaConfig,
    device: &Device,
    items: Range<usize>,
    lengths: &[usize],
) -> Vec<Range<usize>> {
    let rows = items.len();
    let longest = lengths
        .get(items.clone())
        .and_then(|l| l.iter().max().copied())
        .unwrap_or(0);
    let groups = if small(config, device) {
        (rows * longest / TRAINING_GROUP_TOKENS).clamp(1, rows.max(1))
    } else {
        1
    };
    split(items, groups)
}

/// `items` in `groups` consecutive ranges whose sizes differ by at most one.
pub(crate) fn split(items: Range<usize>, groups: usize) -> Vec<Range<usize>> {
    let (rows, groups) = (items.len(), groups.max(1));
    let (base, extra) = (rows / groups, rows % groups);
    let mut start = items.start;
    (0..groups)
        .map(|g| {
            let end = start + base + usize::from(g < extra);
            let range = start..end;
            start = end;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_balanced_and_covers_every_row_once() {
        assert_eq!(split(3..10, 3), vec![3..6, 6..8, 8..10]);
        assert_eq!(split(0..2, 5), vec![0..1, 1..2]);
        assert_eq!(split(0..4, 1), vec![0..4]);
        assert!(split(5..5, 2).is_empty());
    }

    #[test]
    fn only_small_cpu_models_are_grouped() {
        let mut config = crate::presets::TinyPreset::DEFAULT.config(100, 0);
        let cpu = Device::Cpu;
        assert_eq!(sampling_groups(&config, &cpu, 32), 2);
        assert_eq!(sampling_groups(&config, &cpu, 16), 1);
        let lengths = vec![256; 8];
        assert_eq!(training_groups(&config, &cpu, 0..8, &lengths).len(), 2);
        assert_eq!(training_groups(&config, &cpu, 0..2, &lengths).len(), 1);
        config.hidden_size = 576;
        assert_eq!(sampling_groups(&config, &cpu, 32), 1);
        assert_eq!(training_groups(&config, &cpu, 0..8, &lengths), vec![0..8]);
    }
}
