use std::path::PathBuf;

/// Errors of the clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An rpc failed: the server's status, or a transport failure.
    #[error("{service} rpc {rpc} failed with {code:?}: {message}")]
    Rpc {
        service: &'static str,
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// The server's answer (or a blob) is not a valid value.
    #[error(transparent)]
    Core(#[from] arlas_core::Error),
    #[error(transparent)]
    Runtime(#[from] arlas_runtime::Error),
    /// An environment service answered something the client cannot use.
    #[error("environment service: {0}")]
    Environment(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoint {id} chunk at offset {offset} failed its checksum {attempts} times in a row; the network or the coordinator's disk corrupts data"
    )]
    ChunkCorrupted {
        id: String,
        offset: u64,
        attempts: u32,
    },
    #[error(
        "checkpoint blob {id} downloaded to {path} is corrupted: its bytes hash to {found}; fetch it again"
    )]
    BlobCorrupted {
        id: String,
        path: PathBuf,
        found: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC code of a failed rpc (`None` for other errors).
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again later can help: the server was unreachable, restarting or
    /// overloaded, or the transport broke.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            Some(
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
            )
        )
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
