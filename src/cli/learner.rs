//! `arlas learner`: trains one player from the trajectories actors stream to it (gRPC
//! `arlas.v1.Learner`). Its settings are `arlas::roles::learner`'s.

use anyhow::Context as _;
pub use arlas::roles::learner::LearnerArgs;
use arlas::roles::learner::{Settings, resolve};
use arlas_learner::service::Listeners;

/// Runs the learner until SIGTERM or Ctrl-C.
pub fn run(args: LearnerArgs) -> anyhow::Result<()> {
    let settings = resolve(args)?;
    super::role::runtime("learner")?.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let (grpc, metrics) = super::role::bind_and_announce(
        settings.listen,
        settings.metrics_listen,
        settings.service.token.as_ref(),
    )
    .await?;
    arlas_learner::service::run(
        Listeners {
            grpc,
            metrics: Some(metrics),
        },
        settings.service,
        arlas_runtime::shutdown::signal(),
    )
    .await
    .context("learner failed")
}
