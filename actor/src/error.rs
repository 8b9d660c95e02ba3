use std::path::PathBuf;

/// Errors of the actor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Game(#[from] arlas_game::Error),
    #[error(transparent)]
    Policy(#[from] arlas_policy::Error),
    #[error("episode job names opponent {index} but only {count} opponents were given")]
    UnknownOpponent { index: usize, count: usize },
    #[error(
        "the two evaluations cannot be paired ({0}): play both agents on the same tasks, seed and opponents"
    )]
    Unpaired(String),
    #[error(
        "environment {environment} does not play the scripted agent {agent}: expert, naive:P and random play the built-in suites; oracle and obey are written by an environment that has them (agentdojo)"
    )]
    ScriptedAgent { agent: String, environment: String },

    // --- the distributed actor (see `node`) ---
    /// A coordinator rpc or a checkpoint download failed.
    #[error(transparent)]
    Client(#[from] arlas_client::Error),
    /// A checkpoint archive could not be unpacked or hashed.
    #[error(transparent)]
    Core(#[from] arlas_core::Error),
    #[error(transparent)]
    Runtime(#[from] arlas_runtime::Error),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cached checkpoint {id} at {path} hashes to {found}; it was removed and will be fetched again"
    )]
    CacheCorrupted {
        id: String,
        path: PathBuf,
        found: String,
    },
    #[error("round plan names {what} {name:?}, which is not loaded")]
    NotLoaded { what: &'static str, name: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
