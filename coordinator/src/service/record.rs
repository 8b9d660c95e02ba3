//! The run's persisted state (`run.json`): current versions, the versions still held,
//! which blob holds each population member, and the revision counter.
//!
//! `run.json` is written atomically (temporary file, fsync, rename) after every change it
//! records and after the blobs and population directories it names are on disk, so it is
//! the commit point of a publish.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use arlas_core::{BlobRef, PerPlayer, Player, PolicyVersion};

use crate::error::{Error, Result, io};
use crate::league::write_atomic;

/// What `run.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Starts of the coordinator on this data directory; the high 32 bits of revisions,
    /// so revisions keep increasing across restarts.
    pub epoch: u32,
    pub agent: PolicyVersion,
    pub attacker: PolicyVersion,
    /// Published versions whose blobs are still held, oldest first (retention drops the
    /// oldest ones).
    pub history: Vec<PolicyVersion>,
    /// The blob of each population member, by member id.
    pub members: BTreeMap<String, BlobRef>,
}

impl Default for RunRecord {
    fn default() -> Self {
        Self {
            epoch: 0,
            agent: PolicyVersion::initial(Player::Agent),
            attacker: PolicyVersion::initial(Player::Attacker),
            history: Vec::new(),
            members: BTreeMap::new(),
        }
    }
}

impl RunRecord {
    /// Reads `path`; a missing file is a new run.
    pub fn load(path: &Path) -> Result<Self> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::RunState {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Writes `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::RunState {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &bytes)
    }

    /// The current version of each player.
    pub fn versions(&self) -> PerPlayer<PolicyVersion> {
        PerPlayer::new(self.agent.clone(), self.attacker.clone())
    }

    pub fn current(&self, player: Player) -> &PolicyVersion {
        match player {
            Player::Agent => &self.agent,
            Player::Attacker => &self.attacker,
        }
    }

    pub fn current_mut(&mut self, player: Player) -> &mut PolicyVersion {
        match player {
            Player::Agent => &mut self.agent,
            Player::Attacker => &mut self.attacker,
        }
    }

    /// The held version `version` of `player`, if any.
    pub fn find(&self, player: Player, version: u64) -> Option<&PolicyVersion> {
        self.history
            .iter()
            .find(|v| v.player == player && v.version == version)
    }

    /// Every blob the record names.
    pub fn referenced_blobs(&self) -> impl Iterator<Item = &BlobRef> {
        [&self.agent, &self.attacker]
            .into_iter()
            .chain(&self.history)
            .filter_map(|v| v.checkpoint.as_ref())
            .chain(self.members.values())
    }

    /// Drops all but the newest `keep` held versions of each player (the current version
    /// is always the newest) and returns the dropped ones.
    pub fn retain_newest(&mut self, keep: usize) -> Vec<PolicyVersion> {
        let mut dropped = Vec::new();
        for player in Player::ALL {
            let held = self.history.iter().filter(|v| v.player == player).count();
            let mut excess = held.saturating_sub(keep.max(1));
            self.history.retain(|v| {
                if v.player == player && excess > 0 {
                    excess -= 1;
                    dropped.push(v.clone());
                    false
                } else {
                    true
                }
            });
        }
        dropped
    }
}
