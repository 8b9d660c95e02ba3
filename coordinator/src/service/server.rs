//! The coordinator process: `run(listeners, config, shutdown)` opens and verifies the data
//! directory, then serves `arlas.v1.Coordinator`, gRPC health and reflection on the gRPC
//! listener and `/metrics` + `/healthz` on the metrics listener, until `shutdown` completes.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use arlas_proto::limits::MAX_MESSAGE_BYTES;
use arlas_proto::v1::coordinator_server::CoordinatorServer;
use arlas_runtime::auth::{RequireToken, Token};
use arlas_runtime::serve::{RoleEndpoints, grpc_server, serve_with_grace};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::config::CoordinatorConfig;
use super::grpc::CoordinatorService;
use super::owner::CoordinatorHandle;
use super::state::CoordinatorState;
use crate::error::{Error, Result};

/// How long the state thread may take to end after the server stopped.
const STATE_THREAD_JOIN: Duration = Duration::from_secs(5);

/// Everything `run` needs besides its listeners.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory (created if absent): run state, blobs, population.
    pub data_dir: PathBuf,
    pub coordinator: CoordinatorConfig,
    /// The shared token; required when the gRPC listener is not on loopback.
    pub token: Option<Token>,
    /// After the shutdown signal, how long in-flight rpcs may take before the remaining
    /// connections are closed (a client that stopped reading a download would otherwise
    /// hold the shutdown forever).
    pub shutdown_grace: Duration,
}

/// Default of [`ServerConfig::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The sockets the coordinator serves on, bound by the caller (port 0 works).
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    /// `/metrics` and `/healthz`; `None` serves no HTTP endpoint.
    pub metrics: Option<TcpListener>,
}

/// Runs the coordinator until `shutdown` completes, then stops gracefully: health turns
/// NOT_SERVING, watch streams end, in-flight rpcs finish and the state thread stops.
pub async fn run(
    listeners: Listeners,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let grpc_addr = listeners.grpc.local_addr().map_err(|e| Error::Serve {
        what: "the gRPC listener".into(),
        reason: e.to_string(),
    })?;
    let endpoints = RoleEndpoints::start(
        "coordinator",
        grpc_addr,
        config.token.as_ref(),
        listeners.metrics,
    )?;
    let stopping = endpoints.stopping.subscribe();

    tokio::pin!(shutdown);
    let (data_dir, coordinator) = (config.data_dir.clone(), config.coordinator.clone());
    let opening =
        tokio::task::spawn_blocking(move || CoordinatorState::open(data_dir, coordinator));
    let state = tokio::select! {
        opened = opening => opened.map_err(|e| Error::Serve {
            what: "the data directory".into(),
            reason: e.to_string(),
        })??,
        () = &mut shutdown => {
            tracing::info!("shutdown requested while verifying the data directory");
            let _ = endpoints.stopping.send(true);
            return Ok(());
        }
    };
    let (handle, state_thread, state_ended) = CoordinatorHandle::spawn(state)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<CoordinatorServer<CoordinatorService>>()
        .await;
    health.set_service_status("", ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(arlas_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Serve {
            what: "gRPC reflection".into(),
            reason: e.to_string(),
        })?;
    let coordinator = CoordinatorServer::new(CoordinatorService::new(handle, stopping.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let auth = RequireToken::new(config.token.clone());
    let _ = endpoints.ready.send(true);
    tracing::info!(%grpc_addr, data = %config.data_dir.display(), "coordinator ready");
    // A panic on the state thread leaves every command unanswerable: say so to probes.
    let (watch_health, watch_ready) = (health.clone(), endpoints.ready.clone());
    tokio::spawn(async move {
        if state_ended.await == Ok(true) {
            tracing::error!(
                "the coordinator's state thread panicked: health is NOT_SERVING; restart the coordinator (its data directory is consistent)"
            );
            not_serving(&watch_health, &watch_ready).await;
        }
    });

    // Health answers without the token: kubelet gRPC probes cannot send metadata.
    let (signalled_tx, signalled) = oneshot::channel::<()>();
    let serve = grpc_server()
        .add_service(health_service)
        .add_service(InterceptedService::new(coordinator, auth.clone()))
        .add_service(InterceptedService::new(reflection, auth))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.grpc), async {
            shutdown.await;
            not_serving(&health, &endpoints.ready).await;
            let _ = endpoints.stopping.send(true);
            let _ = signalled_tx.send(());
        });
    let served = serve_with_grace(serve, signalled, config.shutdown_grace).await;
    // The server dropped its services (and their handles): the state thread ends. Not if a
    // connection dropped only after the grace still holds a handle in a task of its own:
    // then the thread is left to the process's exit (every write it makes is atomic).
    let joined = tokio::time::timeout(
        STATE_THREAD_JOIN,
        tokio::task::spawn_blocking(move || state_thread.join()),
    )
    .await;
    if joined.is_err() {
        tracing::warn!(timeout = ?STATE_THREAD_JOIN, "the state thread still has users after the shutdown grace; exiting without it");
    }
    endpoints.finish().await;
    served.map_err(|e| Error::Serve {
        what: grpc_addr.to_string(),
        reason: e.to_string(),
    })?;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Not ready and NOT_SERVING, for the whole server and the coordinator service.
async fn not_serving(health: &HealthReporter, ready: &watch::Sender<bool>) {
    let _ = ready.send(false);
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<CoordinatorServer<CoordinatorService>>()
        .await;
}
