//! `arlas actor`: plays episodes for a distributed run and streams the trajectories to the
//! learners. Its settings are `arlas::roles::actor`'s.

use std::io::Write as _;

use anyhow::Context as _;
pub use arlas::roles::actor::ActorArgs;
use arlas::roles::actor::{Settings, resolve};

/// Runs the actor until SIGTERM, Ctrl-C or `--episodes`.
pub fn run(args: ActorArgs) -> anyhow::Result<()> {
    let settings = resolve(args)?;
    // The environment (and a local service) before the runtime: connecting blocks.
    let service = settings.environment.start()?;
    let env = service.open(&settings.environment.suites, &settings.node.rollout.game)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arlas-actor")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(settings, env));
    // A round abandoned at SIGTERM may still be sampling on the blocking pool: do not wait
    // for it (dropping the runtime would).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(settings: Settings, env: Box<dyn arlas_game::Environment>) -> anyhow::Result<()> {
    let metrics = tokio::net::TcpListener::bind(settings.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--metrics-listen)",
                settings.metrics_listen
            )
        })?;
    let announce = serde_json::json!({
        "event": "started",
        "role": "actor",
        "name": settings.node.name,
        "coordinator": settings.node.coordinator,
        "metrics": metrics.local_addr()?.to_string(),
    });
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{announce}")?;
        stdout.flush()?;
    }
    let report = arlas_actor::node::run(
        settings.node,
        env,
        Some(metrics),
        arlas_runtime::shutdown::signal(),
    )
    .await
    .context("actor failed")?;
    tracing::info!(
        rounds = report.rounds,
        episodes = report.episodes,
        fetched = report.fetched.len(),
        bases = report.bases,
        "actor stopped"
    );
    Ok(())
}
