/// Errors of the learner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Policy(#[from] arlas_policy::Error),
    #[error("invalid learner settings: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
