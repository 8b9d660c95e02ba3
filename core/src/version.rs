//! Policy versions and the checkpoints behind them: what a learner publishes, what the
//! coordinator announces and what actors load.

use arlas_game::Player;
use serde::{Deserialize, Serialize};

use crate::ids::{BlobId, LeaseId};

/// A checkpoint blob in the coordinator's store (see [`crate::archive`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    pub id: BlobId,
    pub size: u64,
}

/// One version of one player's policy; `checkpoint` is `None` only for version 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub player: Player,
    pub version: u64,
    pub checkpoint: Option<BlobRef>,
}

impl PolicyVersion {
    /// Version 0: nothing published yet.
    pub fn initial(player: Player) -> Self {
        Self {
            player,
            version: 0,
            checkpoint: None,
        }
    }
}

/// A population member as participants see it: its checkpoint is a blob they can fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub iteration: u32,
    pub attacker_version: u64,
    pub checkpoint: BlobRef,
}

/// A validated `PublishHeader`: a learner offers `checkpoint` as `player`'s `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishHeader {
    pub lease: LeaseId,
    pub player: Player,
    pub version: u64,
    pub checkpoint: BlobRef,
    /// Only ever true for the attacker.
    pub join_population: bool,
    pub iteration: u32,
}

/// What a successful publish made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: PolicyVersion,
    pub member: Option<Member>,
}
