//! The coordinator as a gRPC service (`arlas.v1.Coordinator`, see `proto/arlas/v1/`).
//!
//! Domain first, tonic at the edge:
//! - [`types`], [`ids`]: what validated requests mean; blob and lease ids that can never
//!   name a path;
//! - [`archive`]: a checkpoint directory as one blob (format in its docs);
//! - [`blobs`]: the content-addressed blob store; [`run_state`]: `run.json`;
//!   [`leases`]: the registry; [`state`]: the state machine over all of them;
//! - [`owner`]: the one thread that owns the state, and its async [`CoordinatorHandle`];
//! - [`convert`] (wire ↔ domain, validated once), [`status`] (errors → gRPC codes),
//!   [`grpc`] (the tonic adapter), [`server`] (`run`: health, reflection, auth, metrics);
//! - [`client`]: the wrapper client for actors, learners and tests.

pub mod archive;
pub mod blobs;
pub mod chunk_digests;
pub mod client;
pub mod config;
pub mod convert;
pub mod download;
pub mod grpc;
pub mod ids;
pub mod leases;
pub mod owner;
pub mod run_state;
pub mod server;
pub mod state;
pub mod status;
pub mod types;

pub use client::{CoordinatorClient, FetchReport, blob_ref_of_file};
pub use config::CoordinatorConfig;
pub use ids::{BlobId, LeaseId};
pub use owner::{CoordinatorHandle, Lease};
pub use server::{DEFAULT_SHUTDOWN_GRACE, Listeners, ServerConfig, run};
pub use state::{CoordinatorState, PublishCheck};
pub use types::{
    BlobRef, LearnerInfo, MatchResult, Member, Player, PolicyVersion, PublishHeader, Published,
    Registration, Role, RunView,
};
