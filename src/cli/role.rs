//! What the server roles (`arlas coordinator`, `arlas learner`) do the same way at start:
//! their async runtime, and binding both listeners and announcing the bound addresses as
//! one JSON line on stdout (`--listen 127.0.0.1:0` picks a free port; the line says which).

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use arlas_runtime::auth::Token;
use tokio::net::TcpListener;

/// A multi-threaded runtime whose threads are named after the role.
pub fn runtime(role: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("arlas-{role}"))
        .build()
        .context("cannot start the async runtime")
}

/// Refuses an open listener without a token (before binding anything), binds the gRPC and
/// metrics listeners and prints `{"event":"listening","grpc":…,"metrics":…}`.
pub async fn bind_and_announce(
    listen: SocketAddr,
    metrics_listen: SocketAddr,
    token: Option<&Token>,
) -> anyhow::Result<(TcpListener, TcpListener)> {
    arlas_runtime::auth::check_listen(listen, token)?;
    let grpc = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
    let metrics = TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {metrics_listen} (--metrics-listen)"))?;
    let announce = serde_json::json!({
        "event": "listening",
        "grpc": grpc.local_addr()?.to_string(),
        "metrics": metrics.local_addr()?.to_string(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{announce}")?;
    stdout.flush()?;
    Ok((grpc, metrics))
}
