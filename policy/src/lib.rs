//! LLM policies on candle: one Llama-family decoder that **samples** (batched, KV cache) and
//! **scores** (full sequence, autograd) over the same weights, with tokenizers, chat
//! templates, checkpoints and SFT/GRPO training. Actors sample from a [`Policy`]; learners
//! score and update it with a [`Trainer`]; both agree on every log-prob to 1e-4 in f32.
//!
//! Layout:
//! - [`config`]: `LlamaConfig`, the Hugging Face `config.json` (Llama, SmolLM2, Qwen2-style);
//! - `model/`: the decoder (RMSNorm, RoPE, GQA, SwiGLU, LoRA), differentiable on the
//!   training path, fused kernels on the sampling path, KV cache, weight stores;
//! - [`sampling`] (`generate`, the behaviour log-prob convention), [`scoring`] (`score`);
//! - [`tokenizer`], [`chat`]: BPE training for `tiny`, segment-by-segment chat rendering;
//! - [`load`]: `ModelSpec` (`tiny`, `tiny-2m`, `tiny-20m`, `smollm2`, a directory) and
//!   `Policy::load`; [`gguf`] and [`fetch`] bring SmolLM2 from its GGUF;
//! - [`train`]: AdamW, schedule, SFT and GRPO losses, the `Trainer`;
//! - [`checkpoint`]: atomic checkpoint directories with a manifest of hashes;
//! - [`mod@bench`]: FLOP counts and a measured matmul peak for MFU.
//!
//! ```no_run
//! use arlas_policy::{LoadOptions, ModelSpec, Policy, SamplingParams, ScoreItem};
//! let policy = Policy::load(&ModelSpec::parse("tiny")?, &candle_core::Device::Cpu, &LoadOptions::default())?;
//! let chat = policy.chat();
//! let mut prompt = chat.begin();
//! prompt.extend(chat.user("What is 2 + 2?")?);
//! prompt.extend(chat.assistant_prefix()?);
//! let params = SamplingParams { max_new_tokens: 32, stop: vec!["</action>".into()], ..Default::default() };
//! let out = policy.generate(&[prompt.clone()], &params)?;
//! let scored = policy.score_no_grad(&[ScoreItem::completion(&prompt, &out[0].tokens)])?;
//! assert_eq!(scored.logprobs_vec()?[0].len(), out[0].logprobs.len());
//! # Ok::<(), arlas_policy::Error>(())
//! ```

#![deny(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod alloc;
pub mod base_pool;
pub mod bench;
pub mod chat;
pub mod checkpoint;
pub mod config;
mod device;
mod error;
pub mod fetch;
pub mod gguf;
pub mod load;
pub mod lora;
mod model;
mod policy;
pub mod precision;
pub mod presets;
mod row_groups;
pub mod sampling;
pub mod scoring;
pub mod tokenizer;
pub mod train;

pub use alloc::tune_allocator;
pub use base_pool::BasePool;
/// The candle version this crate is built on (devices, tensors), for downstream crates.
pub use candle_core;
pub use candle_core::{Device, Tensor};
pub use chat::{ChatFormat, ChatTemplate, JinjaChat, Rendered};
pub use checkpoint::{Manifest, read_manifest, save_policy, verify as verify_checkpoint};
pub use config::LlamaConfig;
pub use device::device_from_name;
pub use error::{Error, Result};
pub use load::{CorpusFn, LoadOptions, ModelSpec, build_tiny, tiny_dir};
pub use lora::LoraConfig;
pub use model::Kernels;
pub use policy::{Policy, tensors_to_safetensors};
pub use precision::Precision;
pub use presets::TinyPreset;
pub use sampling::{Finish, Generation, SamplingParams, SequenceCache};
pub use scoring::{ScoreItem, ScoreOutput};
pub use tokenizer::{PolicyTokenizer, train_tiny_tokenizer};
pub use train::{GrpoItem, SftItem, StepStats, TrainConfig, Trainer};
