//! Shared plumbing of the ARLAS distributed roles (coordinator, learner, actor): nothing
//! here knows the game or the models.
//!
//! Layout:
//! - [`auth`]: the shared token: loading it, the server interceptor that answers
//!   UNAUTHENTICATED, the client interceptor that attaches it, and the rule that a role
//!   listening beyond loopback must have one;
//! - [`metrics`]: the process-wide Prometheus recorder with histogram buckets, and the
//!   metric names of `docs/metrics.md`;
//! - [`http`]: the read-only `/metrics` + `/healthz` endpoint on `--metrics-listen`;
//! - [`client`]: gRPC channels with timeouts and keep-alive;
//! - [`backoff`]: jittered exponential backoff for reconnecting;
//! - [`blocking`](mod@blocking): blocking work on tokio's blocking pool;
//! - [`serve`]: the metrics task and the gRPC shutdown grace every role's `run` shares;
//! - [`shutdown`]: Ctrl-C or SIGTERM.
//!
//! ```
//! use arlas_runtime::auth::{Token, check_listen};
//! let token = Token::parse("0123456789abcdef0123").unwrap();
//! assert!(check_listen("0.0.0.0:50051".parse().unwrap(), None).is_err());
//! assert!(check_listen("0.0.0.0:50051".parse().unwrap(), Some(&token)).is_ok());
//! ```

pub mod auth;
pub mod backoff;
pub mod blocking;
pub mod client;
mod error;
pub mod http;
pub mod metrics;
pub mod serve;
pub mod shutdown;

pub use blocking::blocking;
pub use error::{Error, Result};
