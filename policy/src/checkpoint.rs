//! Checkpoints: a directory in Hugging Face layout plus a manifest of content hashes.
//!
//! ```text
//! config.json                 Hugging Face config (full models)
//! model.safetensors           f32 weights, HF names (full models; a tied head is not repeated)
//! adapter_config.json         PEFT-style LoRA settings + base model (LoRA checkpoints)
//! adapter_model.safetensors   the adapters, PEFT names `base_model.model.<name>`
//! tokenizer.json              tokenizers-crate tokenizer
//! tokenizer_config.json       chat template (jinja) and special tokens, for transformers
//! arlas_chat.json             the arlas chat format (`tiny`, `chat_ml`, ...)
//! optimizer.safetensors       AdamW moments (trainer checkpoints)
//! trainer_state.json          step, optimizer step, training config (trainer checkpoints)
//! manifest.json               sha256 and size of every file above, and their content hash
//! ```
//!
//! Writing is atomic: everything goes to a temporary sibling directory that is renamed into
//! place (an existing checkpoint at the same path is moved aside first, then removed).
//! Loading verifies every hash and size, so corruption and truncation fail loudly.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chat::{ChatFormat, ChatTemplate, JinjaChat};
use crate::error::{Error, Result};
use crate::lora::{LORA_TARGETS, LoraConfig};
use crate::policy::{Policy, tensors_to_safetensors};
use crate::tokenizer::PolicyTokenizer;

pub const MANIFEST: &str = "manifest.json";
pub const CONFIG_FILE: &str = "config.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const CHAT_FILE: &str = "arlas_chat.json";
/// Where transformers 4.43+ saves a model's chat template, beside `tokenizer_config.json`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const TRAINER_STATE: &str = "trainer_state.json";

const FORMAT: &str = "arlas-checkpoint-v1";
const PEFT_PREFIX: &str = "base_model.model.";

/// Full weights or LoRA adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    Full,
    Lora,
}

/// Size and sha256 of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub kind: CheckpointKind,
    /// The model the weights came from (`tiny-2m`, `smollm2`, a path).
    pub source: String,
    pub files: BTreeMap<String, FileEntry>,
    /// sha256 over the sorted `name\0sha256\n` lines: one id for the whole checkpoint.
    pub content_hash: String,
    /// LoRA checkpoints: the content hash of the base the adapters were trained on
    /// ([`Policy::base_id`]); loading checks that the base found has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_content_hash: Option<String>,
}

fn content_hash(files: &BTreeMap<String, FileEntry>) -> String {
    let mut h = Sha256::new();
    for (name, entry) in files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(entry.sha256.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The files of a policy's model (no optimizer state).
pub(crate) fn policy_files(policy: &Policy) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let format = policy.chat().format();
    match (policy.lora(), policy.adapter_tensors()) {
        (Some(lora), Some(adapters)) => {
            let renamed: BTreeMap<String, Tensor> = adapters
                .into_iter()
                .map(|(k, t)| (format!("{PEFT_PREFIX}{k}"), t))
                .collect();
            files.push((ADAPTER_FILE.to_string(), tensors_to_safetensors(&renamed)?));
            let adapter_config = serde_json::json!({
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": lora.rank,
                "lora_alpha": lora.alpha,
                "lora_dropout": 0.0,
                "bias": "none",
                "fan_in_fan_out": false,
                "inference_mode": true,
                "target_modules": lora.targets,
                "base_model_name_or_path": policy.source(),
            });
            files.push((ADAPTER_CONFIG.to_string(), pretty(&adapter_config)?));
        }
        _ => {
            let tensors = policy.base_tensors();
            // The dtype the weights are stored in: f32, or bf16 for a frozen bf16 policy.
            let stored = match tensors.values().next().map(Tensor::dtype) {
                Some(candle_core::DType::BF16) => "bfloat16",
                Some(candle_core::DType::F16) => "float16",
                _ => "float32",
            };
            let mut config = policy.config().clone();
            config.extra.insert(
                "torch_dtype".to_string(),
                serde_json::Value::String(stored.to_string()),
            );
            files.push((CONFIG_FILE.to_string(), config.to_json()?.into_bytes()));
            let views = tensors.iter().map(|(k, t)| (k.clone(), t));
            let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
            files.push((
                MODEL_FILE.to_string(),
                safetensors::tensor::serialize(views, Some(metadata))?,
            ));
        }
    }
    files.push((
        TOKENIZER_FILE.to_string(),
        policy.tokenizer().to_json()?.into_bytes(),
    ));
    files.push((
        TOKENIZER_CONFIG.to_string(),
        pretty(&tokenizer_config(policy))?,
    ));
    files.push((
        CHAT_FILE.to_string(),
        pretty(&serde_json::json!({ "format": format }))?,
    ));
    Ok(files)
}

fn tokenizer_config(policy: &Policy) -> serde_json::Value {
    let tok = policy.tokenizer();
    let name = |id: Option<u32>| -> serde_json::Value {
        id.and_then(|id| tok.inner().id_to_token(id))
            .map_or(serde_json::Value::Null, serde_json::Value::String)
    };
    let config = policy.config();
    let eos = config.eos_ids().first().copied();
    let bos = config
        .bos_token_id
        .as_ref()
        .and_then(|b| b.to_vec().first().copied());
    let chat = policy.chat();
    // A model's own template keeps its text and the special tokens it was rendered with.
    let (template, bos, eos) = match chat.jinja() {
        Some(j) => (
            serde_json::Value::from(j.source()),
            j.bos_token()
                .map_or(serde_json::Value::Null, serde_json::Value::from),
            j.eos_token()
                .map_or(serde_json::Value::Null, serde_json::Value::from),
        ),
        None => (
            serde_json::Value::from(chat.format().jinja()),
            name(bos),
            name(eos),
        ),
    };
    serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": template,
        "eos_token": eos,
        "bos_token": bos,
        "pad_token": name(config.eos_ids().first().copied()),
        "model_max_length": config.max_position_embeddings,
        "clean_up_tokenization_spaces": false,
    })
}

fn pretty(v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::json("<checkpoint file>", e))
}

/// Saves a policy's model (no optimizer) to `dir`, atomically.
pub fn save_policy(policy: &Policy, dir: &Path) -> Result<Manifest> {
    let files = policy_files(policy)?;
    write_checkpoint(dir, policy, files)
}

/// Writes `files` and their manifest to `dir` atomically.
pub(crate) fn write_checkpoint(
    dir: &Path,
    policy: &Policy,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Manifest> {
    let kind = if policy.lora().is_some() {
        CheckpointKind::Lora
    } else {
        CheckpointKind::Full
    };
    let mut entries = BTreeMap::new();
    for (name, bytes) in &files {
        entries.insert(
            name.clone(),
            FileEntry {
                sha256: hex::encode(Sha256::digest(bytes)),
                bytes: bytes.len() as u64,
            },
        );
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        kind,
        source: policy.source().to_string(),
        content_hash: content_hash(&entries),
        files: entries,
        base_content_hash: match kind {
            CheckpointKind::Lora => policy.base_id().map(str::to_string),
            CheckpointKind::Full => None,
        },
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let base = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::InvalidInput(format!("checkpoint path {} has no name", dir.display()))
    })?;
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let tmp = parent.join(format!(".{base}.tmp-{stamp}"));
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = tmp.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    };
    let result = (|| {
        for (name, bytes) in &files {
            write(name, bytes)?;
        }
        write(
            MANIFEST,
            &serde_json::to_vec_pretty(&manifest).map_err(|e| Error::json(MANIFEST, e))?,
        )?;
        if dir.exists() {
            let old = parent.join(format!(".{base}.old-{stamp}"));
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| manifest)
}

/// Reads `manifest.json` without checking the files.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::json(&path, e))
}

/// Checks every file of the manifest (size and sha256) and the content hash.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let manifest = read_manifest(dir)?;
    if manifest.format != FORMAT {
        return Err(Error::checkpoint(
            dir,
            format!("unknown format {:?}, expected {FORMAT}", manifest.format),
        ));
    }
    for (name, entry) in &manifest.files {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path)
            .map_err(|e| Error::checkpoint(dir, format!("{name} is missing: {e}")))?;
        if meta.len() != entry.bytes {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "{name} has {} bytes, the manifest says {}: the file is truncated or was replaced",
                    meta.len(),
                    entry.bytes
                ),
            ));
        }
        let found = sha256_file(&path)?;
        if found != entry.sha256 {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "{name} has sha256 {found}, the manifest says {}: the file is corrupted, restore it or use another checkpoint",
                    entry.sha256
                ),
            ));
        }
    }
    let expected = content_hash(&manifest.files);
    if expected != manifest.content_hash {
        return Err(Error::checkpoint(
            dir,
            format!(
                "content hash {} does not match its files ({expected})",
                manifest.content_hash
            ),
        ));
    }
    Ok(manifest)
}

/// The content hash of a model directory that has no manifest (a Hugging Face download):
/// the manifest's hash over its config, weights and tokenizer files.
pub(crate) fn hash_model_files(dir: &Path) -> Result<String> {
    let mut files = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let wanted = name == CONFIG_FILE
            || name == TOKENIZER_FILE
            || (name.ends_with(".safetensors") && name != OPTIMIZER_FILE && name != ADAPTER_FILE);
        if wanted && path.is_file() {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            files.insert(
                name.to_string(),
                FileEntry {
                    sha256: sha256_file(&path)?,
                    bytes,
                },
            );
        }
    }
    Ok(content_hash(&files))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The chat of a model directory: the built-in format `arlas_chat.json` names; else the
/// model's own template (`chat_template.jinja`, or the `chat_template` of
/// `tokenizer_config.json`); else a built-in format guessed from the vocabulary.
pub(crate) fn read_chat(dir: &Path, tokenizer: &PolicyTokenizer) -> Result<ChatTemplate> {
    let chat = dir.join(CHAT_FILE);
    let config = read_tokenizer_config(dir)?;
    if chat.is_file() {
        #[derive(Deserialize)]
        struct Chat {
            format: ChatFormat,
        }
        let text = std::fs::read_to_string(&chat).map_err(|e| Error::io(&chat, e))?;
        let parsed: Chat = serde_json::from_str(&text).map_err(|e| Error::json(&chat, e))?;
        if parsed.format != ChatFormat::Template {
            return ChatTemplate::new(parsed.format, tokenizer.clone());
        }
    }
    let file = dir.join(CHAT_TEMPLATE_FILE);
    let template = if file.is_file() {
        Some(std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?)
    } else {
        config.as_ref().and_then(chat_template_of)
    };
    match template {
        Some(source) => {
            let token = |key: &str| config.as_ref().and_then(|c| special_token(c.get(key)?));
            let jinja = JinjaChat::new(&source, token("bos_token"), token("eos_token"))?;
            ChatTemplate::from_jinja(jinja, tokenizer.clone())
        }
        None => ChatTemplate::new(ChatFormat::detect(None, tokenizer), tokenizer.clone()),
    }
}

fn read_tokenizer_config(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join(TOKENIZER_CONFIG);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::json(&path, e))
}

/// `chat_template` as one string, or the one named `default` in a list of named templates.
fn chat_template_of(config: &serde_json::Value) -> Option<String> {
    match config.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template")?.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// A special token as tokenizer configs write it: a string or `{"content": ...}`.
fn special_token(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// The adapters of a LoRA checkpoint.
pub(crate) struct AdapterFiles {
    pub(crate) base: String,
    pub(crate) config: LoraConfig,
    pub(crate) tensors: HashMap<String, Tensor>,
}

pub(crate) fn read_adapter(dir: &Path, device: &Device) -> Result<AdapterFiles> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
    let rank = value.get("r").and_then(serde_json::Value::as_u64);
    // PEFT writes a list (or one regex string, which arlas does not write): default to all.
    let targets: Vec<String> = match value.get("target_modules") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => LORA_TARGETS.iter().map(|t| (*t).to_string()).collect(),
    };
    let alpha = value.get("lora_alpha").and_then(serde_json::Value::as_f64);
    let base = value
        .get("base_model_name_or_path")
        .and_then(|b| b.as_str())
        .map(str::to_string);
    let (Some(rank), Some(alpha), Some(base)) = (rank, alpha, base) else {
        return Err(Error::checkpoint(
            dir,
            "adapter_config.json needs r, lora_alpha and base_model_name_or_path",
        ));
    };
    let rank = usize::try_from(rank)
        .map_err(|_| Error::checkpoint(dir, format!("lora rank {rank} is too large")))?;
    let weights = dir.join(ADAPTER_FILE);
    let loaded = candle_core::safetensors::load(&weights, device)
        .map_err(|e| Error::checkpoint(dir, format!("cannot read {ADAPTER_FILE}: {e}")))?;
    let tensors = loaded
        .into_iter()
        .map(|(k, t)| (k.strip_prefix(PEFT_PREFIX).unwrap_or(&k).to_string(), t))
        .collect();
    Ok(AdapterFiles {
        base,
        config: LoraConfig::with_targets(rank, alpha, targets)?,
        tensors,
    })
}
