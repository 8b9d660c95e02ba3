//! What an actor owes one player's learner, without a socket: the bounded buffer of unsent
//! trajectories, the unacknowledged ones, and the credits the learner granted.
//!
//! - A trajectory gets its dedupe key `(actor lease, sequence)` when it is first sent;
//!   sequences count from 1 per player for the life of the process (so an ack's sequence
//!   alone names the trajectory, whatever lease it was first sent under), and a re-sent
//!   trajectory keeps its key.
//! - Credits: the first message of a stream (sequence 0) grants them, every ack carries the
//!   credits now available, and at most that many trajectories are unacknowledged.
//! - Play never waits: `push` always succeeds; when `max_pending` unsent trajectories are
//!   waiting, the oldest is dropped (and counted).
//! - When the stream breaks, every unacknowledged trajectory goes back to the front of the
//!   buffer (oldest first) with its key, to be re-sent on the next stream.

use std::collections::{BTreeMap, VecDeque};

use arlas_proto::v1;

/// A trajectory's dedupe key on the learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub lease: String,
    pub sequence: u64,
}

#[derive(Debug, Clone)]
struct Queued {
    key: Option<Key>,
    trajectory: v1::Trajectory,
}

/// What an acknowledgement meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// The stream's credit grant (sequence 0).
    Grant,
    /// Persisted by the learner.
    Accepted,
    /// The learner already had it (a resend).
    Duplicate,
    /// Dropped by the learner as too old; not sent again.
    Stale,
    /// Dropped by the learner as malformed; not sent again.
    Invalid,
    /// The learner's queue was full; it goes back to the buffer to be sent again.
    Overflow,
    /// An ack for nothing this sender has in flight (ignored).
    Unknown,
}

impl Acked {
    /// The metric label of a settled ack.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Invalid => "invalid",
            Self::Overflow => "overflow",
            Self::Unknown => "unknown",
        }
    }
}

/// Totals since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderCounts {
    /// Trajectories handed to `push`.
    pub queued: u64,
    /// Sends, resends included.
    pub sent: u64,
    /// Sends of a trajectory that already had a key.
    pub resent: u64,
    /// Acknowledged ACCEPTED or DUPLICATE.
    pub accepted: u64,
    /// Dropped by the learner (stale or invalid).
    pub rejected: u64,
    /// Dropped here because the buffer was full.
    pub dropped_full: u64,
}

/// One player's outgoing trajectories (see the module docs).
#[derive(Debug)]
pub struct PlayerSender {
    max_pending: usize,
    pending: VecDeque<Queued>,
    unacked: BTreeMap<u64, Queued>,
    granted: bool,
    credits: u32,
    next_sequence: u64,
    counts: SenderCounts,
}

impl PlayerSender {
    /// A sender whose buffer holds at most `max_pending` unsent trajectories (at least 1).
    pub fn new(max_pending: usize) -> Self {
        Self {
            max_pending: max_pending.max(1),
            pending: VecDeque::new(),
            unacked: BTreeMap::new(),
            granted: false,
            credits: 0,
            next_sequence: 1,
            counts: SenderCounts::default(),
        }
    }

    /// Queues a finished trajectory; returns how many were dropped to make room (0 or 1).
    pub fn push(&mut self, trajectory: v1::Trajectory) -> u64 {
        self.counts.queued += 1;
        self.pending.push_back(Queued {
            key: None,
            trajectory,
        });
        self.enforce_bound()
    }

    fn enforce_bound(&mut self) -> u64 {
        let mut dropped = 0;
        while self.pending.len() > self.max_pending {
            self.pending.pop_front();
            dropped += 1;
        }
        self.counts.dropped_full += dropped;
        dropped
    }

    /// The next request to send on the stream, if the credits allow one. New trajectories
    /// get the key `(lease, next sequence)`; re-sent ones keep theirs.
    pub fn next_request(&mut self, lease: &str) -> Option<v1::SubmitTrajectoryRequest> {
        if !self.granted || self.unacked.len() >= self.credits as usize {
            return None;
        }
        let mut item = self.pending.pop_front()?;
        let key = match &item.key {
            Some(key) => {
                self.counts.resent += 1;
                key.clone()
            }
            None => {
                let key = Key {
                    lease: lease.to_string(),
                    sequence: self.next_sequence,
                };
                self.next_sequence += 1;
                item.key = Some(key.clone());
                key
            }
        };
        self.counts.sent += 1;
        let request = v1::SubmitTrajectoryRequest {
            actor_lease_id: key.lease,
            sequence: key.sequence,
            trajectory: Some(item.trajectory.clone()),
        };
        self.unacked.insert(key.sequence, item);
        Some(request)
    }

    /// Applies an acknowledgement from the learner.
    pub fn on_ack(&mut self, ack: &v1::TrajectoryAck) -> Acked {
        self.credits = ack.credits;
        if ack.sequence == 0 {
            self.granted = true;
            return Acked::Grant;
        }
        let Some(item) = self.unacked.remove(&ack.sequence) else {
            return Acked::Unknown;
        };
        let status = v1::AckStatus::try_from(ack.status).unwrap_or(v1::AckStatus::Unspecified);
        match status {
            v1::AckStatus::Accepted => {
                self.counts.accepted += 1;
                Acked::Accepted
            }
            v1::AckStatus::Duplicate => {
                self.counts.accepted += 1;
                Acked::Duplicate
            }
            v1::AckStatus::DroppedStale => {
                self.counts.rejected += 1;
                Acked::Stale
            }
            v1::AckStatus::DroppedInvalid => {
                self.counts.rejected += 1;
                Acked::Invalid
            }
            v1::AckStatus::DroppedOverflow | v1::AckStatus::Unspecified => {
                // Not taken: send it again later, with its key.
                self.pending.push_front(item);
                self.enforce_bound();
                Acked::Overflow
            }
        }
    }

    /// The stream broke: nothing is in flight any more; every unacknowledged trajectory
    /// goes back to the front of the buffer, oldest first, keeping its key.
    pub fn on_disconnect(&mut self) {
        self.granted = false;
        self.credits = 0;
        let unacked = std::mem::take(&mut self.unacked);
        for (_, item) in unacked.into_iter().rev() {
            self.pending.push_front(item);
        }
        self.enforce_bound();
    }

    /// Unsent trajectories waiting in the buffer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Trajectories sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Nothing waiting and nothing in flight.
    pub fn idle(&self) -> bool {
        self.pending.is_empty() && self.unacked.is_empty()
    }

    pub fn counts(&self) -> SenderCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trajectory(group: u64) -> v1::Trajectory {
        v1::Trajectory {
            group,
            ..Default::default()
        }
    }

    fn ack(sequence: u64, status: v1::AckStatus, credits: u32) -> v1::TrajectoryAck {
        v1::TrajectoryAck {
            sequence,
            status: status.into(),
            reason: String::new(),
            credits,
        }
    }

    fn grant(credits: u32) -> v1::TrajectoryAck {
        ack(0, v1::AckStatus::Unspecified, credits)
    }

    fn drain(s: &mut PlayerSender, lease: &str) -> Vec<v1::SubmitTrajectoryRequest> {
        std::iter::from_fn(|| s.next_request(lease)).collect()
    }

    #[test]
    fn nothing_is_sent_before_the_grant_and_credits_bound_the_unacked() {
        let mut s = PlayerSender::new(16);
        for g in 0..5 {
            s.push(trajectory(g));
        }
        assert!(s.next_request("L").is_none(), "no credits before the grant");
        assert_eq!(s.on_ack(&grant(2)), Acked::Grant);
        let sent = drain(&mut s, "L");
        assert_eq!(
            sent.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            [1, 2],
            "two credits, two in flight"
        );
        assert_eq!((s.pending(), s.unacked()), (3, 2));
        // An ack that keeps the window at 2 frees exactly one slot.
        assert_eq!(
            s.on_ack(&ack(1, v1::AckStatus::Accepted, 2)),
            Acked::Accepted
        );
        assert_eq!(drain(&mut s, "L").len(), 1);
        // A learner that fills up grants 0: nothing more goes out until it grants again.
        assert_eq!(
            s.on_ack(&ack(2, v1::AckStatus::Accepted, 0)),
            Acked::Accepted
        );
        assert!(drain(&mut s, "L").is_empty());
        assert_eq!(s.unacked(), 1);
        s.on_ack(&ack(3, v1::AckStatus::Accepted, 8));
        let rest = drain(&mut s, "L");
        assert_eq!(rest.iter().map(|r| r.sequence).collect::<Vec<_>>(), [4, 5]);
        assert!(rest.iter().all(|r| r.actor_lease_id == "L"));
        s.on_ack(&ack(4, v1::AckStatus::Duplicate, 8));
        s.on_ack(&ack(5, v1::AckStatus::DroppedStale, 8));
        assert!(s.idle());
        let c = s.counts();
        assert_eq!((c.sent, c.accepted, c.rejected, c.resent), (5, 4, 1, 0));
        assert_eq!(
            s.on_ack(&ack(9, v1::AckStatus::Accepted, 8)),
            Acked::Unknown
        );
    }

    #[test]
    fn a_resend_after_a_broken_stream_keeps_its_key() {
        let mut s = PlayerSender::new(16);
        for g in 0..4 {
            s.push(trajectory(g));
        }
        s.on_ack(&grant(3));
        let first = drain(&mut s, "old-lease");
        assert_eq!(first.len(), 3);
        s.on_ack(&ack(2, v1::AckStatus::Accepted, 3));
        s.on_disconnect();
        assert_eq!((s.pending(), s.unacked()), (3, 0));
        assert!(
            s.next_request("new-lease").is_none(),
            "a new stream waits for its grant"
        );
        s.on_ack(&grant(10));
        let again = drain(&mut s, "new-lease");
        let keys: Vec<(&str, u64, u64)> = again
            .iter()
            .map(|r| {
                (
                    r.actor_lease_id.as_str(),
                    r.sequence,
                    r.trajectory.as_ref().unwrap().group,
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("old-lease", 1, 0),
                ("old-lease", 3, 2),
                ("new-lease", 4, 3)
            ],
            "unacked first, oldest first, with their original keys; new ones get new keys"
        );
        assert_eq!(s.counts().resent, 2);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_never_blocks() {
        let mut s = PlayerSender::new(3);
        let dropped: u64 = (0..5).map(|g| s.push(trajectory(g))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(s.counts().dropped_full, 2);
        s.on_ack(&grant(10));
        let groups: Vec<u64> = drain(&mut s, "L")
            .iter()
            .map(|r| r.trajectory.as_ref().unwrap().group)
            .collect();
        assert_eq!(groups, [2, 3, 4], "the two oldest were dropped");
    }

    #[test]
    fn an_overflow_goes_back_to_the_buffer_with_its_key() {
        let mut s = PlayerSender::new(8);
        s.push(trajectory(0));
        s.push(trajectory(1));
        s.on_ack(&grant(1));
        let first = s.next_request("L").unwrap();
        assert_eq!(
            s.on_ack(&ack(first.sequence, v1::AckStatus::DroppedOverflow, 1)),
            Acked::Overflow
        );
        let again = s.next_request("L").unwrap();
        assert_eq!((again.sequence, again.actor_lease_id.as_str()), (1, "L"));
        assert_eq!(
            again.trajectory.unwrap().group,
            0,
            "the overflowed one goes first"
        );
    }
}
