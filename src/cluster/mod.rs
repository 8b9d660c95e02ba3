//! Running the distributed roles as local processes: [`process`] supervises one role (start
//! line, readiness, SIGTERM/SIGKILL, restart on the same ports), [`local`] starts a whole
//! cluster on loopback. `arlas train --processes N` and the multi-process tests use both.

pub mod local;
pub mod process;

pub use local::{ClusterConfig, LocalCluster};
pub use process::{Announced, RoleProcess};
