use std::path::PathBuf;

/// Errors of the learner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Policy(#[from] arlas_policy::Error),
    #[error("invalid learner settings: {0}")]
    Config(String),

    // --- the learner service (see `service`) ---
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "journal {path} is corrupt at byte offset {offset}: {reason}; the record is not at the end of the journal, so it is not a torn write — restore the data directory from a backup or start a new one"
    )]
    JournalCorrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "learner state {path} is unusable ({reason}); restore the data directory from a backup or start a new one"
    )]
    State { path: PathBuf, reason: String },
    /// A coordinator rpc failed.
    #[error(transparent)]
    Client(#[from] arlas_client::Error),
    /// A checkpoint could not be packed.
    #[error(transparent)]
    Core(#[from] arlas_core::Error),
    #[error(transparent)]
    Runtime(#[from] arlas_runtime::Error),
    #[error("cannot bind or serve {what}: {reason}")]
    Serve { what: String, reason: String },
    #[error("the learner is shutting down")]
    ShuttingDown,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
