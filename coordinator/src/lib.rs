//! The coordinator of an ARLAS run: the **league** (the population of frozen attacker
//! checkpoints, the payoff matrix of agent versions against them, opponent sampling) and
//! the **service** that keeps the run's versions, leases and checkpoint blobs for the
//! distributed roles.
//!
//! The population is a registry of immutable checkpoints: a member is added once, its
//! directory is never written again, and its content hash is checked whenever the
//! population is opened, so a truncated or altered checkpoint is found at start-up.
//!
//! Layout:
//! - [`league`]: [`League`] (population + payoff + opponents) — the one code path that adds
//!   members and records results, in a cluster and in `arlas train` alike;
//! - [`service`]: the coordinator as a gRPC service — leases, versions, content-addressed
//!   checkpoint blobs, watch (`arlas coordinator` runs [`service::run`]; protocol in
//!   `docs/distributed.md`). Its clients live in `arlas-client`.
//!
//! ```
//! use arlas_coordinator::{OpponentPool, OpponentSampling, PayoffMatrix, sample_opponents};
//! use rand::SeedableRng;
//! let members = vec!["attacker-0000".to_string(), "attacker-0001".to_string()];
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let picks = sample_opponents(&members, &PayoffMatrix::default(), 3,
//!     OpponentPool::All, OpponentSampling::Uniform, 4, &mut rng);
//! assert_eq!(picks.len(), 4);
//! ```

mod error;
pub mod league;
pub mod service;

pub use error::{Error, Result};
pub use league::{
    Joined, League, OpponentPool, OpponentRule, OpponentSampling, PayoffMatrix, Population,
    PopulationMember, Tally, sample_opponents,
};
