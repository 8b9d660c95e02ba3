//! The crate's one error type.

use crate::judge::Outcome;

/// Everything that can go wrong when setting up or driving the game.
///
/// Text written by a model never produces an error: unparsable or invalid actions become
/// observations and format errors inside the episode. Errors are for callers: an unknown
/// suite name, a malformed attack file, acting on a finished episode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown suite {0:?}; choose one of web, email, banking, travel")]
    UnknownSuite(String),
    #[error("unknown split {0:?}; choose train or eval")]
    UnknownSplit(String),
    #[error(
        "unknown task template {template:?} in suite {suite}; see docs/game.md for the template ids"
    )]
    UnknownTemplate { suite: String, template: String },
    #[error(
        "task template {template:?} belongs to the {actual} split, not {requested}; pick a template of the requested split"
    )]
    TemplateSplit {
        template: String,
        actual: String,
        requested: String,
    },
    #[error("invalid agent {spec:?}: {reason}; use expert, naive:P (P between 0 and 1) or random")]
    InvalidAgent { spec: String, reason: String },
    #[error("invalid attacker {spec:?}: {reason}; use none, templates or file:PATH")]
    InvalidAttacker { spec: String, reason: String },
    #[error(
        "attack file {source_name} line {line}: {reason}; each line must be {{\"id\": \"...\", \"family\": \"...\", \"template\": \"...\"}}"
    )]
    AttackLine {
        source_name: String,
        line: usize,
        reason: String,
    },
    #[error("attack file {source_name} holds no attacks; write one JSON object per line")]
    NoAttacks { source_name: String },
    #[error("cannot read attack file {path}; check the path after file:")]
    ReadAttacks {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid game config: {0}")]
    Config(String),
    #[error("the episode is over ({0}); start a new episode")]
    EpisodeOver(Outcome),
    /// An environment could not serve a request (a foreign task, a lost episode, a remote
    /// environment that failed).
    #[error("environment {name}: {reason}")]
    Environment { name: String, reason: String },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
