//! `arlas-core`: the nouns the roles exchange, defined once. Actors, learners and the
//! coordinator are peers that depend on this crate and never on each other.
//!
//! Layout:
//! - [`trajectory`]: a finished episode, token-exact ([`Trajectory`], [`Segment`]);
//! - [`version`]: policy versions, checkpoint blobs, population members, publishing;
//! - [`registry`]: roles, registrations, leases and the [`RunView`] every participant sees;
//! - [`results`]: match results, the payoff matrix's input;
//! - [`stats`]: rates with their intervals, paired differences of two agents;
//! - [`ids`]: blob and lease ids that can never name a path;
//! - [`archive`]: a checkpoint directory as one blob; [`content`]: content hashes;
//! - [`wire`]: the one conversion between `arlas.v1` messages and these values, where all
//!   data received from another process is validated.
//!
//! The players and per-player values ([`Player`], [`PerPlayer`]) come from `arlas-game`
//! and are re-exported here.
//!
//! ```
//! use arlas_core::{Player, PerPlayer, PolicyVersion, RunView};
//! let view = RunView {
//!     revision: 1,
//!     versions: PerPlayer::from_fn(PolicyVersion::initial),
//!     population_size: 0,
//!     latest_member: None,
//!     learners: Vec::new(),
//!     connected_actors: 0,
//! };
//! assert_eq!(view.version(Player::Attacker).version, 0);
//! let wire = arlas_core::wire::run_view_to_wire(&view);
//! assert_eq!(arlas_core::wire::run_view_from_wire(&wire)?, view);
//! # Ok::<(), arlas_core::Error>(())
//! ```

pub mod archive;
pub mod content;
mod error;
pub mod ids;
pub mod registry;
pub mod results;
pub mod stats;
pub mod trajectory;
pub mod version;
pub mod wire;

pub use arlas_game::{PerPlayer, Player};
pub use content::{ContentHash, hash_dir, hash_file, hash_weights};
pub use error::{Error, Result};
pub use ids::{BlobId, LeaseId};
pub use registry::{LearnerInfo, LearnerStatus, Lease, Registration, Role, RunView};
pub use results::{MatchResult, match_results};
pub use trajectory::{Segment, Sequence, Trajectory, concat};
pub use version::{BlobRef, Member, PolicyVersion, PublishHeader, Published};
