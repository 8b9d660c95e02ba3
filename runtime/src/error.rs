use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the shared runtime plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "token in {path} is unusable: {reason}; write one line of at least 16 printable characters, e.g. `openssl rand -hex 32 > {path}`"
    )]
    TokenInvalid { path: PathBuf, reason: String },
    #[error(
        "refusing to listen on {addr} without a token: every rpc would be open to the network; pass --token-file PATH (or listen on a loopback address such as 127.0.0.1)"
    )]
    TokenRequired { addr: SocketAddr },
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    #[error("invalid url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{what} stopped unexpectedly: {reason}")]
    Task { what: String, reason: String },
    #[error("i/o error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
