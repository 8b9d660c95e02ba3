//! The learner: turns finished trajectories into policy updates for one player.
//!
//! Where a trajectory goes:
//! - [`groups`]: trajectories of the same group (same task, same opponent) are compared:
//!   each gets its player's group-relative [`advantage`]; every turn of an episode shares
//!   it; the agent contributes one multi-turn sequence per episode, the attacker one
//!   sequence per turn;
//! - [`learner`]: the [`Learner`] of one player — imitation warm-up (SFT), GRPO updates in
//!   mini-batches against a frozen reference model, versions and checkpoints.
//!
//! - [`service`]: the distributed learner role — the `arlas.v1.Learner` gRPC service with
//!   a persisted, de-duplicated, credit-controlled intake, a training thread, checkpoints
//!   and publishing to the coordinator (`arlas learner`).
//!
//! Both players are first-class: an ARLAS run has two learners, one per [`Player`].

pub mod advantage;
mod error;
pub mod groups;
pub mod learner;
pub mod service;

pub use advantage::group_advantages;
pub use arlas_core::Player;
pub use error::{Error, Result};
pub use groups::{GroupStats, agent_item, attacker_items, grpo_items};
pub use learner::{Learner, LearnerConfig, StepMeans, UpdateReport};
