//! The distributed actor (`arlas actor`): registers with the coordinator, follows the run
//! state, keeps the current agent and attacker (and its assigned population members)
//! loaded from a checkpoint cache, plays rounds, and streams every trajectory to the
//! learner of the player it trains, with credits and re-sends. See docs/distributed.md.
//!
//! Plain logic, tested without sockets:
//! - [`cache`]: `CACHE/blobs/<sha256>` and `CACHE/checkpoints/<sha256>/`, unpacked by
//!   temporary directory and rename, blobs re-verified before use;
//! - [`policies`]: what is loaded, by player and member; eviction of unassigned members;
//! - [`planner`]: round plans (tasks, groups with ids unique across actors, opponents, seeds);
//! - [`sender`]: per-player credits, unacknowledged set, bounded buffer;
//! - [`round`]: plays a plan (blocking) and tallies payoff results;
//! - [`stats`]: rolling reward / TSR / ASR.
//!
//! At the edge: [`session`] (lease and run-state tasks), [`link`] (one
//! `SubmitTrajectories` stream per player), [`run()`] (the loop).

pub mod cache;
pub mod link;
pub mod planner;
pub mod policies;
pub mod round;
mod run;
pub mod sender;
pub mod session;
pub mod stats;

pub use cache::{CacheSource, CheckpointCache};
pub use planner::{RoundPlan, RoundPlanner, RoundShape};
pub use policies::{Loaded, Policies};
pub use run::{NodeConfig, NodeReport, run};
pub use sender::PlayerSender;
