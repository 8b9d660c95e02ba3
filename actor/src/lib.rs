//! The actor: plays attacker-vs-agent episodes of the game with LLM or scripted players
//! and records each one as a token-exact [`Trajectory`].
//!
//! Where a trajectory comes from:
//! - [`conversation`]: turns the game's text into token ids **once**, segment by segment —
//!   the ids the policy was fed and sampled are the ids the learner scores;
//! - [`rollout`]: plays a batch of episodes turn by turn, batching every policy's
//!   generations across episodes (attacker first, then agent, as the game's turn order);
//! - [`prefill`]: each episode's KV caches kept between turns, so a turn prefills only its
//!   new tokens, and the count of what was prefilled;
//! - [`demos`]: imitation data from scripted players for the warm-up;
//! - [`eval`]: task and attack success rates against named opponents;
//! - [`diversity`]: how varied a set of injections is;
//! - [`round`]: round plans and playing them — the same rounds in the actor node and in
//!   the one-machine pipeline;
//! - [`node`]: the distributed actor of `arlas actor` (checkpoint cache, loaded policies,
//!   the loop that plays rounds and streams trajectories to learners).
//!
//! What an episode leaves behind, [`arlas_core::Trajectory`], is a shared noun of
//! `arlas-core`.
//!
//! ```no_run
//! use arlas_actor::{AgentPlayer, Opponent, RolloutConfig, play};
//! use arlas_game::{BuiltinEnvironment, Environment, GameConfig, Split};
//! use arlas_policy::{LoadOptions, ModelSpec, Policy};
//! let agent = Policy::load(&ModelSpec::parse("tiny")?, &candle_core::Device::Cpu, &LoadOptions::default())?;
//! let mut env = BuiltinEnvironment::new(GameConfig::default());
//! let mut opponents = vec![Opponent::templates()?];
//! let jobs = arlas_actor::jobs(&[env.sample(Split::Train, 1)?], 4, 0);
//! let mut agent = AgentPlayer::Policy { policy: &agent, version: 0 };
//! let trajectories = play(&mut env, &mut agent, &mut opponents, &jobs, &RolloutConfig::default())?;
//! assert_eq!(trajectories.len(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod conversation;
pub mod demos;
pub mod diversity;
mod error;
pub mod eval;
pub mod node;
pub mod prefill;
pub mod rollout;
pub mod round;

pub use conversation::Conversation;
pub use diversity::{Diversity, diversity};
pub use error::{Error, Result};
pub use eval::{EvalRates, rates};
pub use prefill::PrefillCount;
pub use rollout::{
    AgentPlayer, AttackerPlayer, EpisodeJob, Opponent, Played, RolloutConfig, jobs, play,
    play_counted,
};
