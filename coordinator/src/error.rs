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

    // --- the coordinator service (see `service`) ---
    /// Data that makes no valid value (a request field, an archive) or a shared file failed.
    #[error(transparent)]
    Core(#[from] arlas_core::Error),
    #[error("no checkpoint blob {0} in the store; fetch a current version from GetRunState")]
    UnknownBlob(String),
    #[error(
        "checkpoint blob {id} at {path} is truncated: {found} of {expected} bytes; restore it from a backup or remove the run's data directory"
    )]
    BlobTruncated {
        id: String,
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error(
        "checkpoint blob {id} at {path} is corrupted: its bytes hash to {found}; restore it from a backup or remove the run's data directory"
    )]
    BlobCorrupted {
        id: String,
        path: PathBuf,
        found: String,
    },
    #[error(
        "uploaded checkpoint does not match its header: expected sha256 {expected} and {expected_size} bytes, received sha256 {found} and {found_size} bytes; upload again"
    )]
    UploadMismatch {
        expected: String,
        expected_size: u64,
        found: String,
        found_size: u64,
    },
    #[error("no lease {0}: it expired or the coordinator restarted; register again")]
    UnknownLease(String),
    #[error(
        "{max} {role} leases are live, the most this coordinator holds; deregister or let leases expire before registering more"
    )]
    TooManyLeases { role: &'static str, max: usize },
    #[error("lease {lease} belongs to {role}; this rpc is for {needed}s only")]
    WrongRole {
        lease: String,
        role: &'static str,
        needed: &'static str,
    },
    #[error(
        "{player} version {version} is not newer than the current version {current}; versions only increase"
    )]
    StaleVersion {
        player: &'static str,
        version: u64,
        current: u64,
    },
    #[error(
        "{player} version {version} was already published with checkpoint {existing}, not {offered}"
    )]
    VersionConflict {
        player: &'static str,
        version: u64,
        existing: String,
        offered: String,
    },
    #[error(
        "run state {path} is not valid JSON ({source}); restore it from a backup or start a new data directory"
    )]
    RunState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "data directory is inconsistent: {0}; restore it from a backup or start a new data directory"
    )]
    Inconsistent(String),
    #[error("the coordinator is shutting down; retry against the restarted coordinator")]
    ShuttingDown,
    #[error("cannot bind or serve {what}: {reason}")]
    Serve { what: String, reason: String },
    #[error(transparent)]
    Runtime(#[from] arlas_runtime::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A request that breaks a rule (the caller's mistake: INVALID_ARGUMENT).
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Core(arlas_core::Error::invalid(field, reason))
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
