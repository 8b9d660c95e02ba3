//! `arlas-client`: the wrapper clients of the arlas services, for actors, learners, the
//! binary and tests. Domain types (`arlas-core`) go in and come out; requests, statuses and
//! channels stay inside.
//!
//! - [`coordinator`]: [`CoordinatorClient`] — register, heartbeat, watch the run, assign
//!   opponents, report results, publish and fetch checkpoints (chunked, resumable, verified
//!   by hash; [`download`] keeps a partial download on disk);
//! - [`learner`]: [`LearnerClient`] — trajectory streams with credits and acknowledgements,
//!   the learner's status; [`learner::link`] keeps one player's stream alive and re-sends
//!   what was not acknowledged;
//! - [`environment`]: [`RemoteEnvironment`] — an `Environment` served over
//!   `arlas.v1.Environment` (AgentDojo's suites from `envs/agentdojo/server.py`).
//!
//! ```no_run
//! # async fn demo() -> arlas_client::Result<()> {
//! use arlas_client::{CoordinatorClient, LearnerClient};
//! let mut coordinator = CoordinatorClient::connect("http://127.0.0.1:50051", None).await?;
//! let view = coordinator.run_state().await?;
//! for learner in &view.learners {
//!     let status = LearnerClient::connect(&learner.url, None).await?.status().await?;
//!     println!("{}: {} trained", learner.name, status.trained_total);
//! }
//! # Ok(()) }
//! ```

pub mod coordinator;
pub mod download;
pub mod environment;
mod error;
pub mod learner;

pub use coordinator::{CoordinatorClient, FetchReport, blob_ref_of_file, partial_path};
pub use environment::{Description, RemoteEnvironment};
pub use error::{Error, Result};
pub use learner::{LearnerClient, TrajectoryStream};
