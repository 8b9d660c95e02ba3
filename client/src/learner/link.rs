//! One player's link to its learner: a task that owns the [`PlayerSender`], keeps one
//! `SubmitTrajectories` stream open to a live learner of that player (from the run
//! state's learners), sends as the credits allow, applies the acks, and after a broken
//! stream reconnects with backoff and re-sends what was not acknowledged.

use arlas_core::{LearnerInfo, LeaseId, Player};
use arlas_proto::v1;
use arlas_runtime::auth::Token;
use arlas_runtime::backoff::Backoff;
use arlas_runtime::metrics as names;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::sender::{Acked, PlayerSender, SenderCounts};
use super::{LearnerClient, TrajectoryStream};
use crate::error::Result;

/// What a link reports after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub pending: usize,
    pub unacked: usize,
    pub counts: SenderCounts,
    /// The learner URL the stream is open to.
    pub connected: Option<String>,
}

impl LinkStatus {
    /// Nothing waiting and nothing in flight.
    pub fn idle(&self) -> bool {
        self.pending == 0 && self.unacked == 0
    }
}

/// The node's side of a link.
#[derive(Debug)]
pub struct Link {
    pub player: Player,
    trajectories: mpsc::UnboundedSender<v1::Trajectory>,
    pub status: watch::Receiver<LinkStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Hands a trajectory to the link (never blocks; the buffer bound applies there).
    pub fn send(&self, trajectory: v1::Trajectory) {
        // The task only ends when this handle closes the channel.
        let _ = self.trajectories.send(trajectory);
    }

    /// Stops the link (unsent and unacknowledged trajectories are abandoned).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Where a link connects and with what.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub player: Player,
    pub max_pending: usize,
    pub token: Option<Token>,
}

/// Starts the link task of `config.player`.
pub fn spawn(
    config: LinkConfig,
    learners: watch::Receiver<Vec<LearnerInfo>>,
    lease: watch::Receiver<Option<LeaseId>>,
) -> Link {
    let (tx, rx) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(LinkStatus::default());
    let player = config.player;
    let task = tokio::spawn(run(config, rx, learners, lease, status_tx));
    Link {
        player,
        trajectories: tx,
        status,
        task,
    }
}

fn pick(learners: &[LearnerInfo], player: Player, current: Option<&str>) -> Option<String> {
    let mine: Vec<&LearnerInfo> = learners
        .iter()
        .filter(|l| l.players.contains(&player))
        .collect();
    if let Some(url) = current.filter(|u| mine.iter().any(|l| l.url == *u)) {
        return Some(url.to_string());
    }
    mine.first().map(|l| l.url.clone())
}

async fn open(url: &str, token: Option<&Token>) -> Result<TrajectoryStream> {
    LearnerClient::connect(url, token)
        .await?
        .open_stream()
        .await
}

async fn next_ack(stream: &mut Option<TrajectoryStream>) -> Result<Option<v1::TrajectoryAck>> {
    match stream {
        Some(s) => s.next_ack().await,
        None => std::future::pending().await,
    }
}

async fn run(
    config: LinkConfig,
    mut trajectories: mpsc::UnboundedReceiver<v1::Trajectory>,
    mut learners: watch::Receiver<Vec<LearnerInfo>>,
    mut lease: watch::Receiver<Option<LeaseId>>,
    status: watch::Sender<LinkStatus>,
) {
    let player = config.player.name();
    let mut sender = PlayerSender::new(config.max_pending);
    let mut stream: Option<TrajectoryStream> = None;
    let mut backoff = Backoff::default();
    let mut retry_at = Instant::now();
    let mut last_lease: Option<String> = None;
    let (mut learners_open, mut lease_open) = (true, true);
    loop {
        if let Some(l) = lease.borrow_and_update().as_ref() {
            last_lease = Some(l.to_string());
        }
        let target = pick(
            &learners.borrow_and_update(),
            config.player,
            stream.as_ref().map(|s| s.url.as_str()),
        );
        // No learner listed (e.g. the coordinator restarted and they have not registered
        // again yet): keep the stream that works.
        let moved = matches!((&stream, &target), (Some(s), Some(t)) if &s.url != t);
        if moved {
            tracing::info!(player, to = ?target, "learner changed; moving the stream");
            stream = None;
            sender.on_disconnect();
        }
        if stream.is_none()
            && Instant::now() >= retry_at
            && let (Some(url), Some(_)) = (&target, &last_lease)
        {
            match open(url, config.token.as_ref()).await {
                Ok(s) => {
                    tracing::info!(player, url = %url, "trajectory stream open");
                    stream = Some(s);
                }
                Err(reason) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(player, url = %url, %reason, ?delay, "cannot open the trajectory stream; retrying");
                    retry_at = Instant::now() + delay;
                }
            }
        }
        if let (Some(s), Some(l)) = (&stream, &last_lease) {
            while let Some(request) = sender.next_request(l) {
                if !s.send(request) {
                    break; // the call ended; its ack stream reports why
                }
            }
        }
        publish(&status, &sender, stream.as_ref(), player);

        let waiting = stream.is_none() && target.is_some();
        tokio::select! {
            t = trajectories.recv() => match t {
                Some(t) => {
                    let dropped = sender.push(t);
                    if dropped > 0 {
                        metrics::counter!(names::ACTOR_TRAJECTORIES_DROPPED_TOTAL, "player" => player, "reason" => "buffer_full").increment(dropped);
                        tracing::warn!(player, dropped, "trajectory buffer full: dropped the oldest unsent");
                    }
                }
                None => return,
            },
            ack = next_ack(&mut stream) => match ack {
                Ok(Some(ack)) => {
                    let acked = sender.on_ack(&ack);
                    if acked != Acked::Grant {
                        metrics::counter!(names::ACTOR_TRAJECTORIES_ACKED_TOTAL, "player" => player, "status" => acked.name()).increment(1);
                    }
                    if matches!(acked, Acked::Stale | Acked::Invalid) {
                        tracing::warn!(player, sequence = ack.sequence, status = acked.name(), reason = %ack.reason, "learner dropped a trajectory");
                    }
                    if acked == Acked::Grant {
                        backoff.reset();
                    }
                }
                Ok(None) | Err(_) => {
                    let reason = match &ack {
                        Err(e) => e.to_string(),
                        _ => "the learner ended the stream".to_string(),
                    };
                    let delay = backoff.next_delay();
                    tracing::warn!(player, %reason, unacked = sender.unacked(), ?delay, "trajectory stream broke; unacknowledged trajectories will be sent again");
                    stream = None;
                    sender.on_disconnect();
                    retry_at = Instant::now() + delay;
                }
            },
            changed = learners.changed(), if learners_open => learners_open = changed.is_ok(),
            changed = lease.changed(), if lease_open => lease_open = changed.is_ok(),
            () = tokio::time::sleep_until(retry_at), if waiting => {},
        }
    }
}

fn publish(
    status: &watch::Sender<LinkStatus>,
    sender: &PlayerSender,
    stream: Option<&TrajectoryStream>,
    player: &'static str,
) {
    let now = LinkStatus {
        pending: sender.pending(),
        unacked: sender.unacked(),
        counts: sender.counts(),
        connected: stream.map(|s| s.url.clone()),
    };
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!(names::ACTOR_PENDING_TRAJECTORIES, "player" => player)
            .set(now.pending as f64);
        metrics::gauge!(names::ACTOR_UNACKED_TRAJECTORIES, "player" => player)
            .set(now.unacked as f64);
    }
    status.send_if_modified(|old| {
        if *old == now {
            return false;
        }
        let sent = now.counts.sent.saturating_sub(old.counts.sent);
        if sent > 0 {
            metrics::counter!(names::ACTOR_TRAJECTORIES_SENT_TOTAL, "player" => player)
                .increment(sent);
        }
        *old = now;
        true
    });
}
