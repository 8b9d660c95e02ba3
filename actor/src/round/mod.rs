//! Rounds: what the actor node and the one-machine pipeline both play. [`plan`] decides
//! the tasks, groups, opponents and seeds of a round; [`play`](mod@play) plays it with any
//! holder of policies ([`RoundPolicies`]).

pub mod plan;
pub mod play;

pub use plan::{CURRENT, Phase, RoundPlan, RoundPlanner, RoundShape, label};
pub use play::{RoundOutput, RoundPolicies, play_phase, play_phase_counted, play_round};
