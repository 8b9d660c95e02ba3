//! Server plumbing every role's `run` shares: the `/metrics` + `/healthz` task that stops
//! with the role, and a gRPC server future driven with a shutdown grace.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::Result;
use crate::auth::{Token, check_listen};
use crate::http::{MetricsEndpoint, serve};

/// Serves `/metrics` and `/healthz` on `listener` (healthy while `ready` is true) until
/// `stopping` turns true.
pub fn spawn_metrics_endpoint(
    listener: TcpListener,
    handle: PrometheusHandle,
    ready: watch::Receiver<bool>,
    mut stopping: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(serve(
        listener,
        MetricsEndpoint { handle, ready },
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        },
    ))
}

/// What every serving role starts with and stops with: the token rule for its gRPC address
/// (refused off loopback without a token, a warning on loopback), the process's metrics
/// recorder, and `/metrics` + `/healthz` on `metrics` — unhealthy until [`Self::ready`] is
/// set, stopped once [`Self::stopping`] is.
#[derive(Debug)]
pub struct RoleEndpoints {
    /// Set true once the role serves (and false when it begins to stop).
    pub ready: watch::Sender<bool>,
    /// Set true when the role begins to stop; services subscribe to end their streams.
    pub stopping: watch::Sender<bool>,
    metrics_task: Option<JoinHandle<()>>,
}

impl RoleEndpoints {
    /// Checks the token rule for `grpc_addr`, installs the recorder for `role` and starts
    /// the metrics endpoint (if a listener is given).
    pub fn start(
        role: &'static str,
        grpc_addr: SocketAddr,
        token: Option<&Token>,
        metrics: Option<TcpListener>,
    ) -> Result<Self> {
        check_listen(grpc_addr, token)?;
        if token.is_none() {
            tracing::warn!(%grpc_addr, "no token: rpcs are not authenticated (allowed on loopback only)");
        }
        let handle = crate::metrics::install(role)?;
        let (ready, ready_rx) = watch::channel(false);
        let (stopping, stopping_rx) = watch::channel(false);
        let metrics_task =
            metrics.map(|listener| spawn_metrics_endpoint(listener, handle, ready_rx, stopping_rx));
        Ok(Self {
            ready,
            stopping,
            metrics_task,
        })
    }

    /// Waits for the metrics endpoint to end (after `stopping` was set).
    pub async fn finish(self) {
        if let Some(task) = self.metrics_task {
            let _ = task.await;
        }
    }
}

/// Drives `server` (a tonic `serve_with_incoming_shutdown` future) to its end. Once
/// `signalled` fires — the server's shutdown future completed — in-flight rpcs get `grace`;
/// after that the remaining connections are dropped (a client that stopped reading a
/// stream would otherwise hold the shutdown forever) and this returns `Ok`.
pub async fn serve_with_grace<E>(
    server: impl Future<Output = Result<(), E>>,
    signalled: oneshot::Receiver<()>,
    grace: Duration,
) -> Result<(), E> {
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served,
        () = async {
            if signalled.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "in-flight rpcs outlived the shutdown grace; closing their connections");
            Ok(())
        }
    }
}

/// A gRPC server builder with the HTTP/2 settings every role shares (the flow-control
/// windows and frame size of [`crate::client`], the same as the roles' clients use).
pub fn grpc_server() -> tonic::transport::Server {
    use crate::client::{CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, STREAM_WINDOW_BYTES};
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // A peer that vanished (a killed pod, a half-open connection) is found within
        // ~40 s and its connection closed, so its streams end and give back what they held
        // (a learner's credits); clients ping too (client.rs).
        .http2_keepalive_interval(Some(SERVER_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(SERVER_KEEPALIVE_TIMEOUT))
        // A role's clients open a handful of streams each; one connection may not open
        // thousands to hold a server's memory.
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
}

/// How often a server pings an idle connection, and how long it waits for the answer.
const SERVER_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const SERVER_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent HTTP/2 streams one connection may open on a role's server.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_server_that_outlives_the_grace_is_dropped() {
        let (tx, rx) = oneshot::channel();
        tx.send(()).unwrap();
        let stuck = std::future::pending::<Result<(), ()>>();
        let started = tokio::time::Instant::now();
        assert_eq!(
            serve_with_grace(stuck, rx, Duration::from_millis(50)).await,
            Ok(())
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        let (_tx, rx) = oneshot::channel::<()>();
        let done = async { Err::<(), _>("failed") };
        assert_eq!(
            serve_with_grace(done, rx, Duration::from_secs(3)).await,
            Err("failed")
        );
    }
}
