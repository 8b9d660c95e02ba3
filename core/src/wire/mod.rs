//! The wire edge: `arlas.v1` messages to validated domain values and back, in one place.
//! Every check of data received from another process happens here, once; code inside the
//! roles trusts the values it gets.
//!
//! - [`run`]: the coordinator's messages (registrations, versions, members, results, the
//!   run view); [`learner`]: the learner's status;
//! - [`trajectory`]: `v1::Trajectory` ⇄ [`crate::Trajectory`] (`From` / `TryFrom`).

pub mod learner;
pub mod run;
pub mod trajectory;

pub use learner::*;
pub use run::*;

/// Longest registration name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest learner URL, in bytes.
pub const MAX_URL_BYTES: usize = 512;
/// Most opponents per `AssignOpponents` call.
pub const MAX_OPPONENTS: u32 = 1024;
/// Most results per `ReportResults` call.
pub const MAX_RESULTS: usize = 1024;
