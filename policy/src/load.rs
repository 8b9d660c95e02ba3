//! `ModelSpec` and `Policy::load`: every model source behind one `--model` value.
//!
//! - `tiny`, `tiny-2m`, `tiny-20m`: a random-init decoder with a BPE tokenizer trained on the
//!   game's text, cached as a model directory under `models_dir/<preset>/` (built on first
//!   use when a corpus is supplied, see [`LoadOptions::tiny_corpus`]);
//! - `smollm2`: SmolLM2-135M-Instruct from `models_dir/smollm2/*.gguf`, dequantized to f32;
//! - a path: a Hugging Face model directory or an arlas checkpoint (same layout).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::base_pool::BasePool;
use crate::chat::{ChatFormat, ChatTemplate, JinjaChat};
use crate::checkpoint;
use crate::config::{LlamaConfig, TokenIds};
use crate::error::{Error, Result};
use crate::fetch;
use crate::gguf;
use crate::lora::LoraConfig;
use crate::model::store::Fill;
use crate::policy::{Policy, PolicyParts};
use crate::precision::Precision;
use crate::presets::TinyPreset;
use crate::tokenizer::{PolicyTokenizer, TINY_SPECIAL_TOKENS, train_tiny_tokenizer};

/// Which model to load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelSpec {
    Tiny(TinyPreset),
    SmolLM2,
    Path(PathBuf),
}

impl ModelSpec {
    /// Parses a `--model` value: `tiny`, `tiny-2m`, `tiny-20m`, `smollm2` or a directory.
    pub fn parse(value: &str) -> Result<Self> {
        if let Some(p) = TinyPreset::parse(value) {
            return Ok(Self::Tiny(p));
        }
        if value == "smollm2" || value == "smollm2-135m" {
            return Ok(Self::SmolLM2);
        }
        let path = Path::new(value);
        let path_like = value.contains(std::path::MAIN_SEPARATOR) || value.starts_with('.');
        if path.is_dir() || path_like {
            return Ok(Self::Path(path.to_path_buf()));
        }
        Err(Error::UnknownModel(value.to_string()))
    }
}

impl FromStr for ModelSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tiny(p) => f.write_str(p.name()),
            Self::SmolLM2 => f.write_str("smollm2"),
            Self::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Produces the text a `tiny` tokenizer is trained on (the game's corpus), or says why not.
pub type CorpusFn = Arc<dyn Fn() -> std::result::Result<Vec<String>, String> + Send + Sync>;

/// How to load a policy.
#[derive(Clone)]
pub struct LoadOptions {
    /// Where `tiny` models are cached and `smollm2` is fetched (`models/` by default).
    pub models_dir: PathBuf,
    /// Attach LoRA adapters (fresh ones; a LoRA checkpoint brings its own settings).
    pub lora: Option<LoraConfig>,
    /// Make the weights (or the adapters, under LoRA) trainable `Var`s. Actors and
    /// reference models load frozen, which never builds autograd graphs.
    pub trainable: bool,
    /// Seed of every random initialisation (tiny weights, LoRA `A` matrices).
    pub seed: u64,
    /// Corpus for building a missing `tiny` model directory.
    pub tiny_corpus: Option<CorpusFn>,
    /// The compute dtype; `None` picks [`Precision::default_for`] the device (f32 on the
    /// CPU, bf16 on a GPU). Trainable variables are f32 whatever this is.
    pub precision: Option<Precision>,
    /// Where policies with adapters take their frozen base: one copy per model shared by
    /// all of them (see [`BasePool`]). `None`: each loads its own.
    pub bases: Option<BasePool>,
}

impl LoadOptions {
    /// The compute dtype on `device`: the one asked for, else the device's default.
    pub fn precision_on(&self, device: &Device) -> Precision {
        self.precision
            .unwrap_or_else(|| Precision::default_for(device))
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            models_dir: PathBuf::from("models"),
            lora: None,
            trainable: false,
            seed: 0,
            tiny_corpus: None,
            precision: None,
            bases: None,
        }
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("models_dir", &self.models_dir)
            .field("lora", &self.lora)
            .field("trainable", &self.trainable)
            .field("seed", &self.seed)
            .field("tiny_corpus", &self.tiny_corpus.is_some())
            .field("precision", &self.precision)
            .field("bases", &self.bases)
            .finish()
    }
}

impl Policy {
    /// Loads the model named by `spec` on `device`. With fresh adapters (`options.lora`) and
    /// a pool (`options.bases`), the base comes from the pool, shared.
    pub fn load(spec: &ModelSpec, device: &Device, options: &LoadOptions) -> Result<Self> {
        if let (Some(pool), Some(_)) = (&options.bases, &options.lora)
            && !is_adapter_checkpoint(spec)
        {
            let base = pool.base(spec, device, options)?;
            return base.with_adapter(fresh_lora(options).unwrap_or_default(), options.trainable);
        }
        match spec {
            ModelSpec::Tiny(preset) => {
                let dir = tiny_dir(&options.models_dir, *preset);
                if !dir.join("config.json").is_file() {
                    let Some(corpus) = &options.tiny_corpus else {
                        return Err(Error::ModelNotFound {
                            path: dir,
                            hint: format!(
                                "build it first with `arlas model build-tiny --model {}`",
                                preset.name()
                            ),
                        });
                    };
                    let texts = corpus().map_err(Error::Corpus)?;
                    build_tiny(*preset, texts.into_iter(), options.seed, &dir)?;
                }
                load_dir(&dir, device, options, Some(preset.name()))
            }
            ModelSpec::SmolLM2 => load_smollm2(device, options),
            ModelSpec::Path(dir) => load_dir(dir, device, options, None),
        }
    }

    /// A randomly initialised model of `config` (seeded), with `tokenizer` and `format`.
    pub fn random(
        config: &LlamaConfig,
        tokenizer: PolicyTokenizer,
        format: ChatFormat,
        device: &Device,
        options: &LoadOptions,
        source: &str,
    ) -> Result<Self> {
        Policy::assemble(
            PolicyParts {
                config: config.clone(),
                weights: HashMap::new(),
                fill: Fill::Random { seed: options.seed },
                chat: ChatTemplate::new(format, tokenizer)?,
                source: source.to_string(),
                base_id: None,
                lora: fresh_lora(options),
                trainable: options.trainable,
                precision: options.precision_on(device),
            },
            device,
        )
    }
}

/// The GGUF's own chat template, rendered with its BOS and EOS tokens; a built-in format
/// guessed from the vocabulary when it has none.
fn gguf_chat(
    template: Option<&str>,
    config: &LlamaConfig,
    tokenizer: PolicyTokenizer,
) -> Result<ChatTemplate> {
    let Some(source) = template else {
        return ChatTemplate::new(ChatFormat::detect(None, &tokenizer), tokenizer);
    };
    let token = |ids: Option<Vec<u32>>| {
        ids.and_then(|ids| ids.first().copied())
            .and_then(|id| tokenizer.inner().id_to_token(id))
    };
    let bos = token(config.bos_token_id.as_ref().map(TokenIds::to_vec));
    let eos = token(Some(config.eos_ids()));
    ChatTemplate::from_jinja(JinjaChat::new(source, bos, eos)?, tokenizer)
}

/// Where a `tiny` preset is cached.
pub fn tiny_dir(models_dir: &Path, preset: TinyPreset) -> PathBuf {
    models_dir.join(preset.name())
}

/// Trains the tokenizer on `corpus`, initialises the preset with `seed` and saves it as a
/// model directory at `dir` (config.json, model.safetensors, tokenizer.json, manifest).
pub fn build_tiny(
    preset: TinyPreset,
    corpus: impl Iterator<Item = String> + Send,
    seed: u64,
    dir: &Path,
) -> Result<Policy> {
    let tokenizer = PolicyTokenizer::new(train_tiny_tokenizer(corpus, preset.vocab_size())?);
    let eos = tokenizer
        .token_id(TINY_SPECIAL_TOKENS[0])
        .ok_or_else(|| Error::Tokenizer("the tiny tokenizer lacks <|endoftext|>".to_string()))?;
    let config = preset.config(tokenizer.vocab_size(), eos);
    let options = LoadOptions {
        seed,
        ..LoadOptions::default()
    };
    let policy = Policy::random(
        &config,
        tokenizer,
        ChatFormat::Tiny,
        &Device::Cpu,
        &options,
        preset.name(),
    )?;
    checkpoint::save_policy(&policy, dir)?;
    tracing::info!(dir = %dir.display(), params = config.num_parameters(), "built {}", preset.name());
    Ok(policy)
}

/// Fresh adapters of `options.lora`: its settings, no tensors (they are initialised) and the
/// init seed.
fn fresh_lora(options: &LoadOptions) -> Option<(LoraConfig, HashMap<String, Tensor>, u64)> {
    options
        .lora
        .clone()
        .map(|c| (c, HashMap::new(), options.seed.wrapping_add(0x10_4a)))
}

fn load_smollm2(device: &Device, options: &LoadOptions) -> Result<Policy> {
    let path = fetch::smollm2_gguf_path(&options.models_dir);
    if !path.is_file() {
        return Err(Error::ModelNotFound {
            path,
            hint: "fetch it with `arlas model fetch smollm2`".to_string(),
        });
    }
    let gguf = gguf::load_gguf_llama(&path, device)?;
    let config = LlamaConfig::from_value(gguf.config)?;
    let tokenizer = PolicyTokenizer::new(gguf.tokenizer);
    let chat = gguf_chat(gguf.chat_template.as_deref(), &config, tokenizer)?;
    Policy::assemble(
        PolicyParts {
            config,
            weights: gguf.tensors,
            fill: Fill::Required,
            chat,
            source: "smollm2".to_string(),
            // Pinned and checked when fetched: the base's identity.
            base_id: Some(fetch::GGUF_SHA256.to_string()),
            lora: fresh_lora(options),
            trainable: options.trainable,
            precision: options.precision_on(device),
        },
        device,
    )
}

/// Loads a Hugging Face directory or an arlas checkpoint (full or LoRA).
fn load_dir(
    dir: &Path,
    device: &Device,
    options: &LoadOptions,
    source: Option<&str>,
) -> Result<Policy> {
    if !dir.is_dir() {
        return Err(Error::ModelNotFound {
            path: dir.to_path_buf(),
            hint: "expected a directory with config.json, *.safetensors and tokenizer.json"
                .to_string(),
        });
    }
    let manifest = if dir.join(checkpoint::MANIFEST).is_file() {
        Some(checkpoint::verify(dir)?)
    } else {
        None
    };
    if dir.join(checkpoint::ADAPTER_CONFIG).is_file() {
        return load_lora_checkpoint(dir, manifest.as_ref(), device, options);
    }
    let config = LlamaConfig::from_file(&dir.join("config.json"))?;
    let mut weights = HashMap::new();
    for file in safetensors_files(dir)? {
        let loaded = candle_core::safetensors::load(&file, device)
            .map_err(|e| Error::Config(format!("cannot read weights {}: {e}", file.display())))?;
        weights.extend(loaded);
    }
    if weights.is_empty() {
        return Err(Error::ModelNotFound {
            path: dir.to_path_buf(),
            hint: "the directory has no model *.safetensors file".to_string(),
        });
    }
    let tokenizer = PolicyTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let chat = checkpoint::read_chat(dir, &tokenizer)?;
    // What a LoRA checkpoint names as its base: the preset, or the directory itself.
    let source = source.map_or_else(|| dir.display().to_string(), str::to_string);
    let base_id = match manifest {
        Some(m) => m.content_hash,
        None => checkpoint::hash_model_files(dir)?,
    };
    Policy::assemble(
        PolicyParts {
            config,
            weights,
            fill: Fill::Required,
            chat,
            source,
            base_id: Some(base_id),
            lora: fresh_lora(options),
            trainable: options.trainable,
            precision: options.precision_on(device),
        },
        device,
    )
}

fn load_lora_checkpoint(
    dir: &Path,
    manifest: Option<&checkpoint::Manifest>,
    device: &Device,
    options: &LoadOptions,
) -> Result<Policy> {
    let adapter = checkpoint::read_adapter(dir, device)?;
    let base_spec = ModelSpec::parse(&adapter.base)?;
    let base = match &options.bases {
        Some(pool) => pool.base(&base_spec, device, options)?,
        None => Policy::load(
            &base_spec,
            device,
            &LoadOptions {
                lora: None,
                trainable: false,
                ..options.clone()
            },
        )?,
    };
    // The adapters were trained on one base: refuse another one under the same name.
    if let (Some(want), Some(found)) = (
        manifest.and_then(|m| m.base_content_hash.as_deref()),
        base.base_id(),
    ) && want != found
    {
        return Err(Error::checkpoint(
            dir,
            format!(
                "its adapters were trained on base {} with content hash {want}, but the base found has {found}; use the base they were trained on",
                adapter.base
            ),
        ));
    }
    base.with_adapter((adapter.config, adapter.tensors, 0), options.trainable)
}

/// Whether `spec` names a LoRA checkpoint directory (it brings its own adapters).
fn is_adapter_checkpoint(spec: &ModelSpec) -> bool {
    matches!(spec, ModelSpec::Path(dir) if dir.join(checkpoint::ADAPTER_CONFIG).is_file())
}

/// The model weight files of a directory, sorted (optimizer and adapter files excluded).
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".safetensors")
            && name != checkpoint::OPTIMIZER_FILE
            && name != checkpoint::ADAPTER_FILE
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
