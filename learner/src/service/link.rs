//! The learner's link to the coordinator: register (with backoff while the coordinator is
//! unreachable), heartbeat every TTL/3, register again on NOT_FOUND (the lease expired or
//! the coordinator restarted), and publish each new version exactly once — skipped when the
//! coordinator already has it, so a restarted learner re-publishes safely.

use std::time::{Duration, Instant};

use arlas_client::{CoordinatorClient, Error as ClientError};
use arlas_core::{LeaseId, PolicyVersion, PublishHeader, Registration};
use arlas_runtime::auth::Token;
use arlas_runtime::backoff::Backoff;
use tokio::sync::watch;

use super::trainer::Export;
use crate::Player;
use crate::error::Result;

/// Who the learner is to the coordinator.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub coordinator: String,
    pub token: Option<Token>,
    pub name: String,
    /// This learner's `Learner` service URL.
    pub url: String,
    pub player: Player,
}

fn not_found(e: &ClientError) -> bool {
    e.code() == Some(tonic::Code::NotFound)
}

/// Runs until `stop` turns true, then deregisters.
pub async fn run(
    config: LinkConfig,
    mut exports: watch::Receiver<Option<Export>>,
    published: watch::Sender<Option<PolicyVersion>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let channel = arlas_runtime::client::connect_lazy(&config.coordinator)?;
    let mut client = CoordinatorClient::new(channel, config.token.as_ref());
    let player = config.player;
    let registration = Registration::Learner {
        name: config.name.clone(),
        url: config.url.clone(),
        players: vec![player],
    };
    let mut backoff = Backoff::default();
    let mut lease: Option<(LeaseId, Duration)> = None;
    let mut published_version = 0u64;
    let mut next_heartbeat = Instant::now();
    let mut exports_closed = false;
    loop {
        if *stop.borrow() {
            break;
        }
        let mut wait = None;
        if lease.is_none() {
            match client.register(&registration).await {
                Ok((l, _)) => {
                    tracing::info!(lease = %l.id, "registered with the coordinator");
                    next_heartbeat = Instant::now() + l.ttl / 3;
                    lease = Some((l.id, l.ttl));
                    backoff.reset();
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "cannot register with the coordinator; retrying");
                    wait = Some(delay);
                }
            }
        }
        let export = exports.borrow_and_update().clone();
        if let (Some((id, _)), Some(export)) = (&lease, export)
            && export.version > published_version
        {
            match publish(&mut client, id, player, &export).await {
                Ok(version) => {
                    published_version = export.version;
                    let _ = std::fs::remove_file(&export.blob);
                    let _ = published.send(Some(version));
                    backoff.reset();
                }
                Err(e) if not_found(&e) => {
                    tracing::warn!("lease unknown to the coordinator: registering again");
                    lease = None;
                    continue;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, version = export.version, ?delay, "publish failed; retrying");
                    wait = Some(delay);
                }
            }
        }
        if let Some((id, ttl)) = &lease
            && Instant::now() >= next_heartbeat
        {
            next_heartbeat = Instant::now() + *ttl / 3;
            match client.heartbeat(id).await {
                Ok(_) => {}
                Err(e) if not_found(&e) => {
                    tracing::warn!(
                        "lease unknown to the coordinator (it restarted?): registering again"
                    );
                    lease = None;
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        let until_heartbeat = next_heartbeat.saturating_duration_since(Instant::now());
        let interval = wait.unwrap_or(until_heartbeat);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            changed = exports.changed(), if !exports_closed => {
                // The trainer ended: nothing more to publish; keep the lease until stop.
                exports_closed = changed.is_err();
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    if let Some((id, _)) = lease {
        let _ = tokio::time::timeout(Duration::from_secs(2), client.deregister(&id)).await;
    }
    Ok(())
}

/// Publishes `export` unless the coordinator already holds this version (or a newer one).
async fn publish(
    client: &mut CoordinatorClient,
    lease: &LeaseId,
    player: Player,
    export: &Export,
) -> std::result::Result<PolicyVersion, ClientError> {
    let run = client.run_state().await?;
    let current = run.version(player);
    if current.version >= export.version {
        if current.version > export.version {
            tracing::error!(
                coordinator = current.version,
                learner = export.version,
                "the coordinator holds a newer version of this player than the learner's data directory: another learner trains it, or the data directory is older"
            );
        }
        return Ok(current.clone());
    }
    let header = PublishHeader {
        lease: lease.clone(),
        player,
        version: export.version,
        checkpoint: export.checkpoint.clone(),
        join_population: player == Player::Attacker,
        iteration: u32::try_from(export.version).unwrap_or(u32::MAX),
    };
    let published = client.publish_file(&header, &export.blob).await?;
    tracing::info!(version = export.version, sha256 = %export.checkpoint.id, "published");
    Ok(published.version)
}
