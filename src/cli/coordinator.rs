//! `arlas coordinator`: the run's coordinator process (registry, versions, population,
//! checkpoints) over gRPC. Its settings are `arlas::roles::coordinator`'s.

use anyhow::Context as _;
pub use arlas::roles::coordinator::CoordinatorArgs;
use arlas::roles::coordinator::{Settings, resolve};
use arlas_coordinator::service::Listeners;

/// Runs the coordinator until SIGTERM or Ctrl-C.
pub fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    let settings = resolve(args)?;
    super::role::runtime("coordinator")?.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let (grpc, metrics) = super::role::bind_and_announce(
        settings.listen,
        settings.metrics_listen,
        settings.server.token.as_ref(),
    )
    .await?;
    arlas_coordinator::service::run(
        Listeners {
            grpc,
            metrics: Some(metrics),
        },
        settings.server,
        arlas_runtime::shutdown::signal(),
    )
    .await
    .context("coordinator failed")
}
