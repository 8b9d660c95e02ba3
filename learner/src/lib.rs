//! The learner: turns finished trajectories into policy updates.
//!
//! - [`advantage`]: group-relative advantages (GRPO).

pub mod advantage;

pub use advantage::group_advantages;
