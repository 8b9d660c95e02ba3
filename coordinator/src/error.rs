use std::path::PathBuf;

/// Errors of the coordinator's state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "population registry {path} is not valid JSON ({source}); restore it from a backup or start a new run directory"
    )]
    Registry {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "population member {id} at {path} failed verification: expected content hash {expected}, found {found}; the checkpoint was altered or truncated — delete the run's population entry or restore the directory"
    )]
    HashMismatch {
        id: String,
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "population member id {0:?} is invalid: use letters, digits, '-', '_' and '.' only (no path separators, not starting with '.')"
    )]
    InvalidId(String),
    #[error("population member {0} already exists; members are immutable")]
    DuplicateMember(String),
    #[error("population member {0} not found")]
    UnknownMember(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
