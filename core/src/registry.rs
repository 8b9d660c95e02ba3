//! Who takes part in a run and what every participant knows about it.

use std::time::Duration;

use arlas_game::{PerPlayer, Player};

use crate::ids::LeaseId;
use crate::version::{Member, PolicyVersion};

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

/// A lease granted by `Register`: renew it within `ttl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl: Duration,
}

/// A learner with a live lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerInfo {
    pub lease: LeaseId,
    pub name: String,
    pub url: String,
    pub players: Vec<Player>,
}

/// What every participant knows about the run: the domain value of the wire's
/// `RunState` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunView {
    /// Increases with every change of the fields below.
    pub revision: u64,
    /// The current version of each player.
    pub versions: PerPlayer<PolicyVersion>,
    pub population_size: u64,
    pub latest_member: Option<Member>,
    pub learners: Vec<LearnerInfo>,
    pub connected_actors: u64,
}

impl RunView {
    /// The current version of `player`.
    pub fn version(&self, player: Player) -> &PolicyVersion {
        &self.versions[player]
    }
}

/// What a learner reports about itself (`GetLearnerStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LearnerStatus {
    /// The version of each player it trains (with its checkpoint once published).
    pub versions: Vec<PolicyVersion>,
    /// Trajectories persisted and not yet trained.
    pub queue_depth: u64,
    pub queue_capacity: u64,
    pub max_staleness: u64,
    /// Trajectories acknowledged ACCEPTED since the data directory was created.
    pub accepted_total: u64,
    /// Trajectories trained since the data directory was created.
    pub trained_total: u64,
}
