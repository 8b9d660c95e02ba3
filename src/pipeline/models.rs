//! Loading the players' policies: one [`Models`] per process knows the models directory,
//! the device and the pool of frozen bases that every policy with adapters shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arlas_policy::{BasePool, CorpusFn, Device, LoadOptions, LoraConfig, ModelSpec, Policy};
use serde::{Deserialize, Serialize};

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

/// Whether a player trains LoRA adapters over a frozen shared base or every weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdapterMode {
    /// Adapters over a pretrained base (SmolLM2, a model directory, an adapter checkpoint);
    /// every weight for the `tiny` presets, which start from random weights that adapters
    /// alone cannot teach.
    #[default]
    Auto,
    /// Always adapters.
    On,
    /// Always full fine-tuning.
    Off,
}

/// How players are adapted: the mode and the adapters' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterSettings {
    pub mode: AdapterMode,
    /// The adapters (rank, alpha, target projections), when they are used.
    pub lora: LoraConfig,
    /// The KL reference of an adapter-trained player: its warm-up adapters (frozen) over the
    /// shared base, or the base alone (adapters switched off). Neither copies the base.
    pub reference: KlReference,
}

impl Default for AdapterSettings {
    fn default() -> Self {
        Self {
            mode: AdapterMode::Auto,
            lora: LoraConfig::default(),
            reference: KlReference::Warmup,
        }
    }
}

/// What an adapter-trained player's KL term compares with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KlReference {
    /// The player's warm-up (its imitation adapters, frozen): the policy RL started from.
    #[default]
    Warmup,
    /// The base with the adapters switched off.
    Base,
}

impl AdapterSettings {
    /// The adapters a fresh player built on `spec` gets (`None`: full fine-tuning).
    pub fn for_spec(&self, spec: &ModelSpec) -> Option<LoraConfig> {
        let adapters = match self.mode {
            AdapterMode::On => true,
            AdapterMode::Off => false,
            AdapterMode::Auto => is_pretrained(spec),
        };
        adapters.then(|| self.lora.clone())
    }

    /// Checks the adapters' settings.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.lora.validate().context("invalid adapter settings")?;
        Ok(())
    }
}

/// Whether `spec` starts from trained weights: anything but a `tiny` preset, and a directory
/// whose manifest does not name a `tiny` preset as its source.
fn is_pretrained(spec: &ModelSpec) -> bool {
    match spec {
        ModelSpec::Tiny(_) => false,
        ModelSpec::SmolLM2 => true,
        ModelSpec::Path(dir) => {
            arlas_policy::read_manifest(dir).map_or(true, |m| !m.source.starts_with("tiny"))
        }
    }
}

/// Where this process loads policies from (see the module docs). Clones share the pool.
#[derive(Debug, Clone)]
pub struct Models {
    pub dir: PathBuf,
    pub device: Device,
    pub pool: BasePool,
}

impl Models {
    pub fn new(dir: impl Into<PathBuf>, device: Device) -> Self {
        Self {
            dir: dir.into(),
            device,
            pool: BasePool::new(),
        }
    }

    /// Load options: trainable or frozen, fresh adapters `lora` when given, the shared pool.
    pub fn options(&self, trainable: bool, seed: u64, lora: Option<LoraConfig>) -> LoadOptions {
        LoadOptions {
            models_dir: self.dir.clone(),
            lora,
            trainable,
            seed,
            tiny_corpus: Some(game_corpus()),
            precision: None,
            bases: Some(self.pool.clone()),
        }
    }

    /// Loads `spec`, with fresh adapters `lora` when given.
    pub fn load_spec(
        &self,
        spec: &ModelSpec,
        trainable: bool,
        seed: u64,
        lora: Option<LoraConfig>,
    ) -> anyhow::Result<Policy> {
        Policy::load(spec, &self.device, &self.options(trainable, seed, lora))
            .with_context(|| format!("cannot load model {spec}"))
    }

    /// Loads `model` (a `--model` value or a directory), with fresh adapters `lora`.
    pub fn load(
        &self,
        model: &str,
        trainable: bool,
        seed: u64,
        lora: Option<LoraConfig>,
    ) -> anyhow::Result<Policy> {
        self.load_spec(&ModelSpec::parse(model)?, trainable, seed, lora)
    }

    /// Loads a checkpoint or model directory as it is (an adapter checkpoint brings its
    /// adapters and takes its base from the pool).
    pub fn load_dir(&self, dir: &Path, trainable: bool) -> anyhow::Result<Policy> {
        Policy::load(
            &ModelSpec::Path(dir.to_path_buf()),
            &self.device,
            &self.options(trainable, 0, None),
        )
        .with_context(|| format!("cannot load the checkpoint at {}", dir.display()))
    }
}
