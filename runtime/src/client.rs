//! gRPC channels to other roles, with the contract's size limits' companion settings:
//! connect timeout, TCP no-delay and HTTP/2 keep-alive so a dead peer is noticed.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 flow-control window of one stream, both directions, every role. h2's default
/// (64 KiB) makes a 1 MiB checkpoint chunk wait for ~16 window updates; this lets a few
/// whole chunks be in flight. It also bounds what a peer may send on a stream unread.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// HTTP/2 flow-control window of one connection (all its streams together).
pub const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;
/// Largest HTTP/2 frame a role accepts (h2's default is 16 KiB: 64 frames per chunk).
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// An endpoint for `url` (`http://host:port`; https needs tonic's TLS, not built in).
pub fn endpoint(url: &str) -> Result<Endpoint> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::Url {
            url: url.to_string(),
            reason: "use http://HOST:PORT".into(),
        });
    }
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| Error::Url {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(MAX_FRAME_BYTES))
}

/// Connects now; fails if the peer is not reachable.
pub async fn connect(url: &str) -> Result<Channel> {
    endpoint(url)?
        .connect()
        .await
        .map_err(|source| Error::Connect {
            url: url.to_string(),
            source,
        })
}

/// A channel that connects on first use and reconnects after failures by itself.
pub fn connect_lazy(url: &str) -> Result<Channel> {
    Ok(endpoint(url)?.connect_lazy())
}
