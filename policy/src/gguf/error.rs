//! What can go wrong turning a GGUF file into f32 Hugging Face tensors and a tokenizer.

use std::path::PathBuf;

/// Errors of [`crate::gguf::load_gguf_llama`] and its parts.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened.
    #[error(
        "cannot open gguf file {path}: {source}; fetch it with scripts/fetch-smollm2.sh or `arlas model fetch smollm2`"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The header, metadata or tensor index could not be parsed.
    #[error(
        "cannot parse gguf file {path}: {source}; the file is damaged or not a gguf, fetch it again"
    )]
    Parse {
        path: PathBuf,
        source: candle_core::Error,
    },
    /// A metadata key the loader needs is absent.
    #[error(
        "gguf metadata key {key} is missing; only llama-architecture gguf files with a gpt2 tokenizer load"
    )]
    MissingMetadata { key: String },
    /// A metadata value has a type the loader cannot use.
    #[error("gguf metadata key {key} holds {found}, expected {expected}")]
    MetadataType {
        key: String,
        expected: &'static str,
        found: String,
    },
    /// `general.architecture` is not `llama`.
    #[error("gguf architecture {0:?} is not supported; only `llama` (e.g. SmolLM2) loads")]
    UnsupportedArchitecture(String),
    /// The tokenizer kind or pre-tokenizer is one this loader does not rebuild.
    #[error(
        "gguf tokenizer model {model:?} with pre-tokenizer {pre:?} is not supported; supported: model \"gpt2\" with pre \"smollm\", \"starcoder\", \"refact\", \"codeshell\" or \"gpt2\""
    )]
    UnsupportedTokenizer { model: String, pre: String },
    /// The hyper-parameters are inconsistent (e.g. width not divisible by the heads).
    #[error("inconsistent gguf hyper-parameters: {0}")]
    InvalidConfig(String),
    /// A tensor whose name the loader does not know how to map.
    #[error(
        "gguf tensor {0} has no Hugging Face llama counterpart; this loader does not know the model"
    )]
    UnexpectedTensor(String),
    /// A tensor the model needs is absent.
    #[error("gguf tensor {0} is missing; the file is incomplete, fetch it again")]
    MissingTensor(String),
    /// A tensor has a shape other than the config implies.
    #[error("tensor {name} has shape {found:?}, the config implies {expected:?}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    /// Reading, dequantizing or re-arranging a tensor failed.
    #[error("cannot load gguf tensor {name}: {source}")]
    Tensor {
        name: String,
        source: candle_core::Error,
    },
    /// Two vocabulary entries share the same text.
    #[error("gguf vocabulary holds {token:?} twice (ids {first} and {second})")]
    DuplicateToken {
        token: String,
        first: u32,
        second: u32,
    },
    /// A merge rule is not two space-separated tokens.
    #[error("gguf merge rule {index} is {merge:?}, expected two tokens separated by one space")]
    InvalidMerge { index: usize, merge: String },
    /// The tokenizers crate rejected the vocabulary, merges or special tokens.
    #[error("cannot build the byte-level BPE tokenizer from the gguf vocabulary: {0}")]
    Tokenizer(#[source] tokenizers::Error),
}
