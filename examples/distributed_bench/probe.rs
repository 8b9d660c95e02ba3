//! What the benchmarks read off the running roles: `/metrics` counters, `GetLearnerStatus`,
//! and the machine's load average.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Context as _;
use arlas::cluster::RoleProcess;
use arlas_client::LearnerClient;
use arlas_core::LearnerStatus;
use arlas_runtime::auth::Token;

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`).
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| it.next().unwrap_or(f64::NAN))
}

/// The sum of every sample of `metric` (all label sets) on a role's `/metrics`.
pub fn scrape(addr: SocketAddr, metric: &str) -> anyhow::Result<f64> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// `metric` summed over `roles` (their announced metrics addresses).
pub fn scrape_all<'a>(
    roles: impl IntoIterator<Item = &'a RoleProcess>,
    metric: &str,
) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for role in roles {
        let addr = role
            .announced()
            .metrics
            .with_context(|| format!("{} announced no metrics address", role.name()))?;
        total += scrape(addr, metric)?;
    }
    Ok(total)
}

/// A learner's `GetLearnerStatus`.
pub async fn learner_status(addr: SocketAddr, token: &Token) -> anyhow::Result<LearnerStatus> {
    let mut client = LearnerClient::connect(&format!("http://{addr}"), Some(token)).await?;
    Ok(client.status().await?)
}
