//! The learner process: `run(listeners, config, shutdown)` opens the data directory
//! (resuming if it holds a state), starts the intake owner, the training thread and the
//! coordinator link, and serves `arlas.v1.Learner`, gRPC health and reflection plus
//! `/metrics` + `/healthz` until `shutdown` completes or a thread fails.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use arlas_core::PolicyVersion;
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
use super::open::{Opened, open};
use super::owner::{self, Command, OwnerHandle};
use super::thread::Watched;
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
    tokio::pin!(shutdown);
    let Some(opened) = open_data(&config, &mut shutdown).await? else {
        tracing::info!("shutdown requested while opening the data directory");
        let _ = endpoints.stopping.send(true);
        return Ok(());
    };
    let fit = ModelFit::of(config.player, opened.learner.policy().config());
    let mut roles = Roles::start(opened, &config, grpc_addr, &endpoints)?;
    let learner = LearnerServer::new(LearnerService::new(
        roles.owner.clone(),
        fit,
        roles.published.clone(),
        endpoints.stopping.subscribe(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(arlas_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| serve_error("gRPC reflection")(e.to_string()))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LearnerServer<LearnerService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    let auth = RequireToken::new(config.token.clone());
    let router = grpc_server()
        .add_service(health_service)
        .add_service(InterceptedService::new(learner, auth.clone()))
        .add_service(InterceptedService::new(reflection, auth));
    let served = serve(
        listeners.grpc,
        router,
        health,
        &config,
        &endpoints,
        &mut roles,
        &mut shutdown,
    )
    .await;
    let failure = roles.stop(config.shutdown_grace).await;
    endpoints.finish().await;
    served.map_err(|e| serve_error(&grpc_addr.to_string())(e.to_string()))?;
    if let Some(e) = failure {
        tracing::error!(error = %e, "learner stopped on a failure");
        return Err(e);
    }
    tracing::info!("learner stopped");
    Ok(())
}

/// Opens (or recovers) the data directory off the async runtime; `None` if `shutdown`
/// came first.
async fn open_data(
    config: &ServiceConfig,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Option<Opened>> {
    let opening = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open(&config))
    };
    tokio::select! {
        opened = opening => {
            let opened = opened.map_err(|e| serve_error("the data directory")(e.to_string()))??;
            tracing::info!(
                version = opened.learner.version(),
                replayed = opened.replayed,
                "data directory open"
            );
            Ok(Some(opened))
        }
        () = shutdown => Ok(None),
    }
}

/// What runs beside the gRPC server: the intake owner and the trainer (threads) and the
/// coordinator link (a task).
struct Roles {
    owner: OwnerHandle,
    owner_thread: Option<Watched>,
    trainer_thread: Option<Watched>,
    link: tokio::task::JoinHandle<Result<()>>,
    published: watch::Receiver<Option<PolicyVersion>>,
}

impl Roles {
    fn start(
        opened: Opened,
        config: &ServiceConfig,
        grpc_addr: SocketAddr,
        endpoints: &RoleEndpoints,
    ) -> Result<Self> {
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
        let (published_tx, published) = watch::channel(None);
        let link = tokio::spawn(link::run(
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
            endpoints.stopping.subscribe(),
        ));
        Ok(Self {
            owner,
            owner_thread: Some(owner_thread),
            trainer_thread: Some(trainer_thread),
            link,
            published,
        })
    }

    /// Resolves when either thread ends: they end only on Stop or on a failure.
    async fn a_thread_ended(&mut self) {
        if let (Some(owner), Some(trainer)) =
            (self.owner_thread.as_mut(), self.trainer_thread.as_mut())
        {
            tokio::select! {
                () = owner.ended() => {}
                () = trainer.ended() => {}
            }
        }
    }

    /// Stops the intake (its thread drops the batch channel, which ends the trainer after
    /// the update in progress), waits `grace` for both threads, and returns the first
    /// failure of either.
    async fn stop(&mut self, grace: Duration) -> Option<Error> {
        let _ = self.owner.send(Command::Stop).await;
        let mut failure = None;
        for thread in [self.owner_thread.take(), self.trainer_thread.take()]
            .into_iter()
            .flatten()
        {
            match thread.join_within(grace).await {
                Some(Err(e)) => {
                    tracing::error!(error = %e, "a learner thread failed");
                    failure = failure.or(Some(e));
                }
                Some(Ok(())) => {}
                None => tracing::warn!(
                    ?grace,
                    "an update outlived the shutdown grace; abandoning it (the last saved checkpoint stands)"
                ),
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.link).await;
        failure
    }
}

/// Serves `router` until `shutdown` or a thread's end, then turns `health` to
/// NOT_SERVING and gives in-flight rpcs the grace.
async fn serve(
    listener: TcpListener,
    router: tonic::transport::server::Router,
    health: tonic_health::server::HealthReporter,
    config: &ServiceConfig,
    endpoints: &RoleEndpoints,
    roles: &mut Roles,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> std::result::Result<(), tonic::transport::Error> {
    let _ = endpoints.ready.send(true);
    tracing::info!(data = %config.data_dir.display(), player = %config.player, "learner ready");
    let (signalled_tx, signalled) = oneshot::channel::<()>();
    let serve = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
        tokio::select! {
            () = shutdown => {}
            () = roles.a_thread_ended() => {
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
    serve_with_grace(serve, signalled, config.shutdown_grace).await
}
