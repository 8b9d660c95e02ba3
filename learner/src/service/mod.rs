//! The learner as a gRPC service (`arlas.v1.Learner`, see `proto/arlas/v1/learner.proto`):
//! trajectories stream in from actors, are persisted before they are acknowledged, and are
//! trained in batches on a dedicated thread; each new version is published to the
//! coordinator.
//!
//! Plain logic first, tonic at the edge:
//! - [`dedupe`]: the `(actor lease, sequence)` keys held; [`fit`]: token ids and lengths
//!   the model can train; [`intake`]: de-duplication,
//!   staleness, capacity, credits, the queue and its batches — no sockets, no files;
//! - [`journal`]: the append-only, fsynced, checksummed journal of accepted trajectories
//!   (torn tails recovered, corruption reported with file and offset);
//! - [`state`]: the data directory and its commit point `state.json`; [`open`]: start-up
//!   and recovery;
//! - [`owner`]: the one thread owning intake and journal (group commit);
//!   [`trainer`]: the thread owning the [`crate::Learner`] ([`thread`]: threads whose end
//!   the async side awaits); [`link`]: register, heartbeat,
//!   publish with the coordinator;
//! - [`grpc`] (the thin tonic adapter), [`server`] (`run`: health, reflection, auth,
//!   metrics); [`synthetic`]: valid random trajectories for tests and load tests.

pub mod config;
pub mod dedupe;
pub mod fit;
pub mod grpc;
pub mod intake;
pub mod journal;
pub mod link;
pub mod open;
pub mod owner;
pub mod server;
pub mod state;
pub mod synthetic;
pub mod thread;
pub mod trainer;

pub use config::ServiceConfig;
pub use intake::{Intake, IntakeConfig, IntakeStatus, Verdict};
pub use journal::{Journal, JournalRecord};
pub use server::{Listeners, run};

#[cfg(test)]
pub(crate) mod testing {
    use arlas_core::Trajectory;
    use rand::SeedableRng;

    /// A valid trajectory of `group` played by agent and attacker `version`.
    pub fn trajectory(group: u64, version: u64) -> Trajectory {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(group ^ (version << 32));
        super::synthetic::trajectory(
            &mut rng,
            &super::synthetic::Shape::default(),
            group,
            version,
            version,
        )
    }
}
