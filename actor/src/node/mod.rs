//! The distributed actor (`arlas actor`): registers with the coordinator, follows the run
//! view, keeps the current agent and attacker (and its assigned population members)
//! loaded from a checkpoint cache, plays rounds ([`crate::round`], the same rounds as the
//! one-machine pipeline), and streams every trajectory to the learner of the player it
//! trains through `arlas_client`'s links (credits and re-sends). See docs/distributed.md.
//!
//! Plain logic, tested without sockets:
//! - [`cache`]: `CACHE/blobs/<sha256>` and `CACHE/checkpoints/<sha256>/`, unpacked by
//!   temporary directory and rename, blobs re-verified before use;
//! - [`policies`]: what is loaded, by player and member; eviction of unassigned members;
//! - [`pending`]: payoff results not yet accepted by the coordinator;
//! - [`stats`]: rolling reward / TSR / ASR.
//!
//! At the edge: [`session`] (lease and run-view tasks), [`run()`] (the loop).

pub mod cache;
pub mod pending;
pub mod policies;
mod run;
pub mod session;
pub mod stats;

pub use cache::{CacheSource, CheckpointCache};
pub use policies::{Loaded, Policies};
pub use run::{NodeConfig, NodeReport, run};
