//! The coordinator's state for an ARLAS run: the **population** of frozen attacker
//! checkpoints, the **payoff matrix** of agent versions against population members, and
//! **opponent sampling** for the agent's training episodes.
//!
//! The population is a registry of immutable checkpoints: a member is added once, its
//! directory is never written again, and its content hash is checked whenever the
//! population is opened, so a truncated or altered checkpoint is found at start-up.
//!
//! Layout:
//! - [`content`]: content hashes of checkpoint directories;
//! - [`population`]: the on-disk registry (`population.json` + one directory per member);
//! - [`payoff`]: win-rate bookkeeping, agent version × attacker member;
//! - [`opponents`]: which past attackers the agent trains against (`all|latest`,
//!   `uniform|recent|pfsp`);
//! - [`service`]: the coordinator as a gRPC service for the distributed runtime — leases,
//!   versions, content-addressed checkpoint blobs, watch — with its wrapper client
//!   (`arlas coordinator` runs [`service::run`]; protocol in `docs/distributed.md`).
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

pub mod content;
mod error;
pub mod opponents;
pub mod payoff;
pub mod population;
pub mod service;

pub use content::{ContentHash, hash_dir};
pub use error::{Error, Result};
pub use opponents::{OpponentPool, OpponentSampling, sample_opponents};
pub use payoff::{PayoffMatrix, Tally};
pub use population::{Population, PopulationMember};
