//! The coordinator as a gRPC service (`arlas.v1.Coordinator`, see `proto/arlas/v1/`).
//!
//! Domain first, tonic at the edge:
//! - [`state`]: the state machine — [`state::open`] (verification and recovery of the data
//!   directory), [`state::publish`] (checks and commits of new versions), leases and the
//!   league; [`record`]: `run.json`, the commit point; [`leases`]: the registry;
//!   [`blobs`]: the content-addressed blob store; [`chunk_digests`]: per-chunk checksums
//!   served with downloads;
//! - [`owner`]: the one thread that owns the state, and its async [`CoordinatorHandle`];
//! - [`status`] (errors → gRPC codes), [`grpc`] (the tonic adapter; wire values are
//!   validated by `arlas_core::wire`), [`server`] (`run`: health, reflection, auth, metrics).

pub mod blobs;
pub mod chunk_digests;
pub mod config;
pub mod grpc;
pub mod leases;
pub mod owner;
pub mod record;
pub mod server;
pub mod state;
pub mod status;

pub use config::CoordinatorConfig;
pub use owner::CoordinatorHandle;
pub use server::{DEFAULT_SHUTDOWN_GRACE, Listeners, ServerConfig, run};
pub use state::{CoordinatorState, PublishCheck};
