//! The learner process: `run(listeners, config, shutdown)` opens the data directory
//! (resuming if it holds a state), starts the intake owner, the training thread and the
//! coordinator link, and serves `arlas.v1.Learner`, gRPC health and reflection plus
//! `/metrics` + `/healthz` until `shutdown` completes or a thread fails.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use arlas_proto::limits::MAX_MESSAGE_BYTES;
use arlas_proto::v1::learner_server::LearnerServer;
use arlas_runtime::auth::RequireToken;
use arlas_runtime::serve::{RoleEndpoints, grpc_server, serve_with_grace};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;

use super::config::ServiceConfig;
use super::fit::ModelFit;
use super::grpc::LearnerService;
use super::link::{self, LinkConfig};
use super::open::open;
use super::owner::{self, Command};
use super::trainer::TrainingThread;
use crate::error::{Error, Result};

/// The sockets the learner serves on, bound by the caller (port 0 works).
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    /// `/metrics` and `/healthz`; `None` serves no HTTP endpoint.
    pub metrics: Option<TcpListener>,
}

fn serve_error(what: &str) -> impl FnOnce(String) -> Error {
    let what = what.to_string();
    move |reason| Error::Serve { what, reason }
}

/// Waits for a thread to end, at most `limit`; `None` leaves it running (detached). It
/// polls rather than blocking a pool thread on `join`, so an abandoned update never holds
/// up the async runtime's shutdown.
async fn join_thread(
    thread: std::thread::JoinHandle<Result<()>>,
    limit: Duration,
) -> Option<Result<()>> {
    let deadline = tokio::time::Instant::now() + limit;
    while !thread.is_finished() {
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(thread.join().unwrap_or_else(|_| {
        Err(Error::Serve {
            what: "a learner thread".into(),
            reason: "it panicked".into(),
        })
    }))
}

/// Runs the learner until `shutdown` completes (then exits cleanly: an update in progress
/// gets the shutdown grace to finish, else it is abandoned — `state.json` still names the
/// last saved checkpoint), or until the intake or the training thread fails (an error).
pub async fn run(
    listeners: Listeners,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let grpc_addr: SocketAddr = listeners
        .grpc
        .local_addr()
        .map_err(|e| serve_error("the gRPC listener")(e.to_string()))?;
    let endpoints = RoleEndpoints::start(
        "learner",
        grpc_addr,
        config.token.as_ref(),
        listeners.metrics,
    )?;
    let stopping = endpoints.stopping.subscribe();

    tokio::pin!(shutdown);
    let opening = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open(&config))
    };
    let opened = tokio::select! {
        opened = opening => opened.map_err(|e| serve_error("the data directory")(e.to_string()))??,
        () = &mut shutdown => {
            tracing::info!("shutdown requested while opening the data directory");
            let _ = endpoints.stopping.send(true);
            return Ok(());
        }
    };
    tracing::info!(
        version = opened.learner.version(),
        replayed = opened.replayed,
        "data directory open"
    );

    let fit = ModelFit::of(config.player, opened.learner.policy().config());
    let (batches_tx, batches_rx) = std_mpsc::channel();
    let (owner, owner_thread) = owner::spawn(opened.intake, opened.journal, batches_tx)?;
    let (exports_tx, exports_rx) = watch::channel(Some(opened.export));
    let trainer_thread = TrainingThread {
        learner: opened.learner,
        data: opened.data,
        owner: owner.clone(),
        exports: exports_tx,
        seed: config.seed,
        keep_checkpoints: config.keep_checkpoints,
        sync: config.sync,
    }
    .spawn(batches_rx)?;
    if config.advertise.is_none() && grpc_addr.ip().is_unspecified() {
        tracing::warn!(%grpc_addr, "listening on all interfaces without --advertise: actors are told http://{grpc_addr}, which they cannot reach; pass --advertise http://HOST:PORT");
    }
    let (published_tx, published_rx) = watch::channel(None);
    let link_task = tokio::spawn(link::run(
        LinkConfig {
            coordinator: config.coordinator.clone(),
            token: config.token.clone(),
            name: config.name.clone(),
            url: config
                .advertise
                .clone()
                .unwrap_or_else(|| format!("http://{grpc_addr}")),
            player: config.player,
        },
        exports_rx,
        published_tx,
        stopping.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LearnerServer<LearnerService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(arlas_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| serve_error("gRPC reflection")(e.to_string()))?;
    let service = LearnerServer::new(LearnerService::new(
        owner.clone(),
        fit,
        published_rx,
        stopping.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let auth = RequireToken::new(config.token.clone());
    let _ = endpoints.ready.send(true);
    tracing::info!(%grpc_addr, data = %config.data_dir.display(), player = %config.player, "learner ready");

    // The intake and training threads end only on Stop or on a failure: either one ending
    // stops the server like a shutdown signal does.
    let (failed_tx, mut failed) = watch::channel(false);
    let watchdog = tokio::spawn(async move {
        let mut threads = [Some(owner_thread), Some(trainer_thread)];
        let mut failure = None;
        while threads
            .iter()
            .all(|t| t.as_ref().is_some_and(|t| !t.is_finished()))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for slot in &mut threads {
            if slot
                .as_ref()
                .is_some_and(std::thread::JoinHandle::is_finished)
                && let Some(thread) = slot.take()
            {
                match join_thread(thread, Duration::from_secs(1)).await {
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "a learner thread failed");
                        failure = Some(e);
                    }
                    _ => tracing::info!("a learner thread ended"),
                }
            }
        }
        let _ = failed_tx.send(true);
        let [owner_thread, trainer_thread] = threads;
        (failure, owner_thread, trainer_thread)
    });
    let (signalled_tx, signalled) = oneshot::channel::<()>();
    let serve = grpc_server()
        .add_service(health_service)
        .add_service(InterceptedService::new(service, auth.clone()))
        .add_service(InterceptedService::new(reflection, auth))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.grpc), async {
            tokio::select! {
                () = &mut shutdown => {}
                _ = failed.wait_for(|f| *f) => {
                    tracing::error!("a learner thread stopped: shutting down");
                }
            }
            let _ = endpoints.ready.send(false);
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health
                .set_not_serving::<LearnerServer<LearnerService>>()
                .await;
            let _ = endpoints.stopping.send(true);
            let _ = signalled_tx.send(());
        });
    let grace = config.shutdown_grace;
    let served = serve_with_grace(serve, signalled, grace).await;
    // Stop the intake; its thread drops the batch channel, which ends the trainer after
    // the update in progress (or the grace runs out and the update is abandoned).
    let _ = owner.send(Command::Stop).await;
    drop(owner);
    let mut failure = None;
    match tokio::time::timeout(grace, watchdog).await {
        Ok(Ok((failed, owner_thread, trainer_thread))) => {
            failure = failed;
            for thread in [owner_thread, trainer_thread].into_iter().flatten() {
                match join_thread(thread, grace).await {
                    Some(Err(e)) => failure = failure.or(Some(e)),
                    Some(Ok(())) => {}
                    None => tracing::warn!(
                        ?grace,
                        "an update outlived the shutdown grace; abandoning it (the last saved checkpoint stands)"
                    ),
                }
            }
        }
        _ => tracing::warn!(?grace, "the learner threads outlived the shutdown grace"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), link_task).await;
    endpoints.finish().await;
    served.map_err(|e| serve_error(&grpc_addr.to_string())(e.to_string()))?;
    if let Some(e) = failure {
        tracing::error!(error = %e, "learner stopped on a failure");
        return Err(e);
    }
    tracing::info!("learner stopped");
    Ok(())
}
