/// Errors of the actor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Game(#[from] arlas_game::Error),
    #[error(transparent)]
    Policy(#[from] arlas_policy::Error),
    #[error("episode job names opponent {index} but only {count} opponents were given")]
    UnknownOpponent { index: usize, count: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
