//! Settings of the coordinator service (the CLI fills them from flags and a TOML file).

use std::time::Duration;

use crate::league::{OpponentPool, OpponentSampling};

/// How the coordinator's state behaves.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// A lease ends this long after its last heartbeat.
    pub lease_ttl: Duration,
    /// Which population members are eligible opponents.
    pub opponent_pool: OpponentPool,
    /// How eligible members are weighted.
    pub opponent_sampling: OpponentSampling,
    /// Largest checkpoint blob accepted, in bytes.
    pub max_checkpoint_bytes: u64,
    /// Published versions whose blobs are kept per player (population members are always
    /// kept); older blobs are deleted after a newer version is published.
    pub keep_versions: usize,
    /// Seed of opponent sampling; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            opponent_pool: OpponentPool::All,
            opponent_sampling: OpponentSampling::Uniform,
            max_checkpoint_bytes: 64 << 30,
            keep_versions: 4,
            seed: None,
        }
    }
}
