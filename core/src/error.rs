use std::path::PathBuf;

/// Errors of the shared nouns: wire data that makes no valid value, archives, files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wire (or on-disk) data that does not make a valid value: the caller's mistake.
    #[error(transparent)]
    Wire(#[from] arlas_proto::Error),
    #[error("checkpoint blob is not a valid checkpoint archive: {0}")]
    Archive(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A field present with an unacceptable value, and why.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Wire(arlas_proto::Error::invalid(field, reason))
    }

    /// Whether the fault is the caller's (bad data) rather than this machine's (i/o).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Wire(_) | Self::Archive(_))
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
