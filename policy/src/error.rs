//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, running, training or saving a policy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, device error, out of memory...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file could not be parsed or written.
    #[error("invalid json in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A safetensors buffer could not be parsed or written.
    #[error("invalid safetensors data: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),

    /// The tokenizer failed to load, train, encode or decode.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// A model configuration is inconsistent or unsupported.
    #[error("invalid model config: {0}")]
    Config(String),

    /// The `--model` value names nothing this crate can load.
    #[error(
        "unknown model {0:?}: use tiny, tiny-2m, tiny-20m, smollm2, or a path to a Hugging Face model or arlas checkpoint directory"
    )]
    UnknownModel(String),

    /// A model directory or file is missing.
    #[error("model not found at {path}: {hint}")]
    ModelNotFound { path: PathBuf, hint: String },

    /// The corpus for a `tiny` tokenizer could not be produced.
    #[error("cannot produce the tiny tokenizer corpus: {0}")]
    Corpus(String),

    /// A caller passed prompts, items or parameters that cannot be used.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The SmolLM2 GGUF could not be read.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),

    /// Fetching SmolLM2 failed.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),

    /// A checkpoint is incomplete, corrupted or does not match the model.
    #[error("bad checkpoint at {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
}

/// The crate's result alias.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Self::Json {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tokenizer(err: impl std::fmt::Display) -> Self {
        Self::Tokenizer(err.to_string())
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
