//! Loading the players' policies.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use arlas_policy::{CorpusFn, Device, LoadOptions, ModelSpec, Policy};

/// Episodes of game text the `tiny` tokenizer is trained on.
pub const TINY_CORPUS_EPISODES: u64 = 3000;
/// Seed of that corpus (fixed: every machine must build the same tokenizer).
pub const TINY_CORPUS_SEED: u64 = 0;

/// The game's text, for training a `tiny` tokenizer.
pub fn game_corpus() -> CorpusFn {
    Arc::new(|| {
        let opts = arlas_game::CorpusOptions {
            episodes: TINY_CORPUS_EPISODES,
            seed: TINY_CORPUS_SEED,
            split: arlas_game::Split::Train,
        };
        arlas_game::corpus(&opts).map_err(|e| e.to_string())
    })
}

/// Load options for `models_dir`, trainable or frozen.
pub fn options(models_dir: &Path, trainable: bool, seed: u64) -> LoadOptions {
    LoadOptions {
        models_dir: models_dir.to_path_buf(),
        lora: None,
        trainable,
        seed,
        tiny_corpus: Some(game_corpus()),
        precision: None,
    }
}

/// Loads `model` (a `--model` value or a directory).
pub fn load(
    model: &str,
    models_dir: &Path,
    trainable: bool,
    seed: u64,
    device: &Device,
) -> anyhow::Result<Policy> {
    let spec = ModelSpec::parse(model)?;
    Policy::load(&spec, device, &options(models_dir, trainable, seed))
        .with_context(|| format!("cannot load model {model}"))
}

/// Loads a checkpoint or model directory.
pub fn load_dir(
    dir: &Path,
    models_dir: &Path,
    trainable: bool,
    device: &Device,
) -> anyhow::Result<Policy> {
    Policy::load(
        &ModelSpec::Path(dir.to_path_buf()),
        device,
        &options(models_dir, trainable, 0),
    )
    .with_context(|| format!("cannot load the checkpoint at {}", dir.display()))
}
