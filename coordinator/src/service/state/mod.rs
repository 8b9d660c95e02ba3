//! The coordinator's state machine: registry with leases, the run's versions, the league
//! and the checkpoint blobs. Plain synchronous code with time passed in; one owner
//! ([`super::owner`]) runs it, so nothing here is shared or locked.
//!
//! Split by concern: [`open`] verifies and recovers the data directory; `participants`
//! holds the leases; `league` the population, opponents and results; [`publish`] checks
//! and commits new versions.
//!
//! Data directory:
//!
//! ```text
//! DATA/
//!   run.json       versions, held versions, member -> blob map (the commit point)
//!   payoff.json    the payoff matrix
//!   blobs/         content-addressed checkpoint blobs (see `blobs`)
//!   population/    the attacker population, unpacked (see `crate::league`)
//! ```

mod league;
pub mod open;
mod participants;
pub mod publish;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use arlas_core::{BlobId, BlobRef, Player, PolicyVersion, Role, RunView};
use rand_chacha::ChaCha8Rng;

use super::blobs::BlobStore;
use super::config::CoordinatorConfig;
use super::leases::Leases;
use super::record::RunRecord;
use crate::error::Result;
use crate::league::League;

pub use publish::PublishCheck;

pub(crate) const RUN_FILE: &str = "run.json";

/// Report ids remembered (8 bytes each, twice): far more reports than actors retry.
const REMEMBERED_REPORTS: usize = 65_536;

/// The latest `capacity` ids, the oldest forgotten first.
#[derive(Debug)]
struct RecentIds {
    order: std::collections::VecDeque<u64>,
    set: std::collections::HashSet<u64>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            order: std::collections::VecDeque::new(),
            set: std::collections::HashSet::new(),
            capacity,
        }
    }

    fn contains(&self, id: &u64) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: u64) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The coordinator's whole state.
#[derive(Debug)]
pub struct CoordinatorState {
    config: CoordinatorConfig,
    dir: PathBuf,
    blobs: BlobStore,
    league: League,
    record: RunRecord,
    leases: Leases,
    /// Ids of the latest match-result reports counted (a retried report is not counted
    /// twice); in memory only: a restart forgets them.
    reports: RecentIds,
    rng: ChaCha8Rng,
    /// Changes since this start (the low 32 bits of the revision).
    changes: u32,
}

impl CoordinatorState {
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Increases with every visible change, also across restarts.
    pub fn revision(&self) -> u64 {
        (u64::from(self.record.epoch) << 32) | u64::from(self.changes)
    }

    fn changed(&mut self) {
        self.changes = self.changes.wrapping_add(1);
    }

    /// The run as participants see it.
    pub fn view(&self) -> RunView {
        RunView {
            revision: self.revision(),
            versions: self.record.versions(),
            population_size: self.league.population().len() as u64,
            latest_member: self
                .league
                .population()
                .latest()
                .and_then(|m| self.member_view(&m.id)),
            learners: self.leases.learners(),
            connected_actors: self.leases.count(Role::Actor) as u64,
        }
    }

    /// Blob `id` and where it lives (immutable while named by the run).
    pub fn blob(&self, id: &BlobId) -> Result<(BlobRef, PathBuf)> {
        let blob = self.blobs.get(id)?;
        Ok((blob, self.blobs.path(id)))
    }

    /// The current version of `player`.
    pub fn current(&self, player: Player) -> &PolicyVersion {
        self.record.current(player)
    }
}
