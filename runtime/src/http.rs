//! The read-only HTTP endpoint every role serves on `--metrics-listen`:
//!
//! - `GET /metrics`: Prometheus text exposition (version 0.0.4);
//! - `GET /healthz`: `200 ok` once the role is ready, `503 not ready` before (for
//!   Kubernetes probes, which cannot send the gRPC token);
//! - any other path is 404, any other method 405. Nothing here changes state.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const UPKEEP_EVERY: Duration = Duration::from_secs(5);
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoint serves: the metrics handle and the role's readiness.
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    pub handle: PrometheusHandle,
    pub ready: watch::Receiver<bool>,
}

/// How long one connection may live (a scrape takes milliseconds), and how many may be
/// open at once: a client that connects and sends nothing cannot hold the endpoint.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connection_deadline: Duration,
    max_connections: usize,
}

const LIMITS: Limits = Limits {
    connection_deadline: Duration::from_secs(10),
    max_connections: 64,
};

/// Serves until `shutdown` completes. Connection errors are logged and never stop the loop.
pub async fn serve(
    listener: TcpListener,
    endpoint: MetricsEndpoint,
    shutdown: impl Future<Output = ()>,
) {
    serve_within(listener, endpoint, shutdown, LIMITS).await;
}

async fn serve_within(
    listener: TcpListener,
    endpoint: MetricsEndpoint,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = upkeep.tick() => endpoint.handle.run_upkeep(),
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        continue;
                    }
                };
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    tracing::debug!("metrics endpoint: too many open connections; closing a new one");
                    continue;
                };
                let endpoint = endpoint.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let service = service_fn(move |req| {
                        let endpoint = endpoint.clone();
                        async move { Ok::<_, Infallible>(respond(&req, &endpoint)) }
                    });
                    let connection =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    match tokio::time::timeout(limits.connection_deadline, connection).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "metrics endpoint: connection ended with an error"),
                        Err(_) => tracing::debug!("metrics endpoint: connection outlived its deadline; closed"),
                    }
                });
            }
        }
    }
}

/// A minimal HTTP/1.0 `GET` of `path` on `addr`: the status code and the body. For probes
/// and tests (`/healthz`, scraping `/metrics`), not a general client.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_string()))
}

fn respond(req: &Request<Incoming>, endpoint: &MetricsEndpoint) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(ALLOW, "GET, HEAD")
            .body(Full::new(Bytes::from_static(
                b"read-only endpoint: use GET\n",
            )))
            .unwrap_or_default();
    }
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            PROMETHEUS_TEXT,
            Bytes::from(endpoint.handle.render()),
        ),
        "/healthz" if *endpoint.ready.borrow() => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))
        }
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"not ready\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: try /metrics or /healthz\n"),
        ),
    };
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_client_is_cut_off_and_cannot_hold_the_endpoint() {
        let handle = crate::metrics::install("test").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_ready_tx, ready) = watch::channel(true);
        let limits = Limits {
            connection_deadline: Duration::from_millis(300),
            max_connections: 2,
        };
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_within(
            listener,
            MetricsEndpoint { handle, ready },
            async {
                let _ = stop.await;
            },
            limits,
        ));
        // Two clients connect and say nothing: the endpoint is full...
        let mut silent = [
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "a connection beyond the limit is closed at once"
        );
        // ...until their deadline closes them, and a scrape gets through again.
        for s in &mut silent {
            let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            assert!(ended.is_ok(), "a silent connection outlived its deadline");
        }
        assert_eq!(get(addr, "/healthz").await.unwrap().0, 200);
        stop_tx.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn serves_metrics_and_readiness_read_only() {
        let handle = crate::metrics::install("test").unwrap();
        metrics::counter!(crate::metrics::CHECKPOINT_BYTES_TOTAL, "direction" => "sent")
            .increment(3);
        metrics::histogram!(crate::metrics::CHECKPOINT_BROADCAST_SECONDS).record(0.2);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ready_tx, ready) = watch::channel(false);
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, MetricsEndpoint { handle, ready }, async {
            let _ = stop.await;
        }));

        let (status, body) = get(addr, "/metrics").await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("arlas_build_info{version=\""), "{body}");
        assert!(
            body.contains("# TYPE arlas_checkpoint_bytes_total counter"),
            "{body}"
        );
        assert!(
            body.contains("arlas_checkpoint_bytes_total{direction=\"sent\"} 3"),
            "{body}"
        );
        // Histograms have buckets, not quantiles.
        assert!(
            body.contains("arlas_checkpoint_broadcast_seconds_bucket{le=\"0.25\"} 1"),
            "{body}"
        );
        assert_eq!(get(addr, "/healthz").await.unwrap().0, 503);
        ready_tx.send(true).unwrap();
        assert_eq!(
            get(addr, "/healthz").await.unwrap(),
            (200, "ok\n".to_string())
        );
        assert_eq!(get(addr, "/nope").await.unwrap().0, 404);

        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /metrics HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with("HTTP/1.0 405"), "{raw}");

        stop_tx.send(()).unwrap();
        server.await.unwrap();
    }
}
