//! The coordinator's domain values: what the wire messages mean once validated.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{BlobId, LeaseId};

/// The two policies of the game.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Player {
    Agent,
    Attacker,
}

impl Player {
    pub const ALL: [Player; 2] = [Player::Agent, Player::Attacker];

    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Attacker => "attacker",
        }
    }
}

impl fmt::Display for Player {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Player {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Self::Agent),
            "attacker" => Ok(Self::Attacker),
            other => Err(format!("unknown player {other:?}: use agent or attacker")),
        }
    }
}

/// The roles that hold leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Actor,
    Learner,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Actor => "actor",
            Self::Learner => "learner",
        }
    }
}

/// A checkpoint blob in the store.
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

/// A learner with a live lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerInfo {
    pub lease: LeaseId,
    pub name: String,
    pub url: String,
    pub players: Vec<Player>,
}

/// What every participant needs to know about the run (the `RunState` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    /// Increases with every change of the fields below.
    pub revision: u64,
    pub agent: PolicyVersion,
    pub attacker: PolicyVersion,
    pub population_size: u64,
    pub latest_member: Option<Member>,
    pub learners: Vec<LearnerInfo>,
    pub connected_actors: u64,
}

impl RunView {
    /// The current version of `player`.
    pub fn version(&self, player: Player) -> &PolicyVersion {
        match player {
            Player::Agent => &self.agent,
            Player::Attacker => &self.attacker,
        }
    }
}

/// A validated `RegisterRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Actor {
        name: String,
    },
    Learner {
        name: String,
        url: String,
        players: Vec<Player>,
    },
}

impl Registration {
    pub fn role(&self) -> Role {
        match self {
            Self::Actor { .. } => Role::Actor,
            Self::Learner { .. } => Role::Learner,
        }
    }
}

/// A validated `PublishHeader`.
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

/// Games of one agent version against one population member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchResult {
    pub agent_version: u64,
    pub attacker_id: String,
    pub games: u64,
    pub attacker_wins: u64,
}
