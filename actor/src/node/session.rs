//! The actor's standing with the coordinator: two tasks that keep a lease (register, then
//! heartbeat every TTL/3; NOT_FOUND or a coordinator that is down → register again with
//! backoff) and follow the run state (`Watch`, re-opened with backoff). Both publish into
//! watch channels the rest of the node reads.

use std::sync::Arc;
use std::time::Duration;

use arlas_client::{CoordinatorClient, Error as ClientError};
use arlas_core::{LearnerInfo, LeaseId, PerPlayer, Player, Registration, RunView};
use arlas_runtime::backoff::Backoff;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::StreamExt;

/// The run view and when its current versions were first announced to this actor.
#[derive(Debug, Clone)]
pub struct Announced {
    pub view: RunView,
    /// When each player's current version was first seen.
    pub seen: PerPlayer<Instant>,
}

impl Announced {
    /// When `player`'s current version was first seen.
    pub fn seen(&self, player: Player) -> Instant {
        self.seen[player]
    }
}

/// Publishes newer run views (by revision) from the heartbeat and watch tasks.
#[derive(Debug, Clone)]
pub struct ViewFeed {
    tx: Arc<watch::Sender<Option<Announced>>>,
    learners: Arc<watch::Sender<Vec<LearnerInfo>>>,
}

impl ViewFeed {
    pub fn new() -> (
        Self,
        watch::Receiver<Option<Announced>>,
        watch::Receiver<Vec<LearnerInfo>>,
    ) {
        let (tx, rx) = watch::channel(None);
        let (learners, learners_rx) = watch::channel(Vec::new());
        (
            Self {
                tx: Arc::new(tx),
                learners: Arc::new(learners),
            },
            rx,
            learners_rx,
        )
    }

    /// Takes `view` if it is newer than the one held.
    pub fn offer(&self, view: RunView) {
        let now = Instant::now();
        let mut learners = None;
        self.tx.send_if_modified(|held| match held {
            Some(old) if old.view.revision >= view.revision => false,
            Some(old) => {
                for player in Player::ALL {
                    if old.view.version(player).version != view.version(player).version {
                        old.seen[player] = now;
                    }
                }
                if old.view.learners != view.learners {
                    learners = Some(view.learners.clone());
                }
                old.view = view;
                true
            }
            None => {
                learners = Some(view.learners.clone());
                *held = Some(Announced {
                    view,
                    seen: PerPlayer::new(now, now),
                });
                true
            }
        });
        if let Some(l) = learners {
            self.learners.send_replace(l);
        }
    }
}

fn not_found(e: &ClientError) -> bool {
    e.code() == Some(tonic::Code::NotFound)
}

/// Keeps a lease for `name` and publishes it (None while registering).
pub async fn keep_lease(
    mut client: CoordinatorClient,
    name: String,
    lease_tx: watch::Sender<Option<LeaseId>>,
    states: ViewFeed,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let registration = Registration::Actor { name: name.clone() };
        let (lease, view) = match client.register(&registration).await {
            Ok(ok) => ok,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "cannot register with the coordinator; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        tracing::info!(lease = %lease.id, ttl = ?lease.ttl, "registered with the coordinator");
        lease_tx.send_replace(Some(lease.id.clone()));
        states.offer(view);
        let mut ttl = lease.ttl;
        loop {
            tokio::time::sleep(ttl / 3).await;
            match client.heartbeat(&lease.id).await {
                Ok((renewed, view)) => {
                    ttl = renewed;
                    backoff.reset();
                    states.offer(view);
                }
                Err(e) if not_found(&e) => {
                    tracing::warn!(lease = %lease.id, "lease unknown to the coordinator (expired or it restarted); registering again");
                    lease_tx.send_replace(None);
                    break;
                }
                Err(e) => {
                    // Down or unreachable: keep trying; its answer decides what comes next.
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "heartbeat failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Follows `Watch`, re-opening it with backoff whenever it ends.
pub async fn follow_run(mut client: CoordinatorClient, states: ViewFeed) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match client.watch().await {
            Ok(stream) => {
                tokio::pin!(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(view) => {
                            backoff.reset();
                            states.offer(view);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "run-state watch broke");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the run state"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
