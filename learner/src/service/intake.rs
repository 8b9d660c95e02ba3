//! The intake's decisions, without sockets or files: de-duplication, staleness, capacity,
//! credits, the queue of persisted trajectories and the batches taken from it.
//!
//! Credits work like HTTP/2 windows. Each open stream holds a grant (how many
//! unacknowledged trajectories its actor may have in flight); grants never promise more
//! than the free room: `depth + sum(grants) <= capacity` while actors respect them. Every
//! trajectory received uses one unit of its stream's grant (it either joins the queue or
//! is dropped), and the stream is granted again from what is free, up to
//! `stream_credits`. A trajectory that arrives while the queue is full (an actor that
//! ignores its credits) is dropped with OVERFLOW: the queue never holds more than
//! `capacity`; one sent beyond its stream's credits is also dropped when the free room is
//! promised to other streams, so actors that respect their credits never see OVERFLOW. When training frees room, streams whose grant can grow get a credit update.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use arlas_core::Trajectory;

use super::dedupe::{Dedupe, Watermarked};
use crate::Player;

/// An open `SubmitTrajectories` stream.
pub type StreamId = u64;

/// The intake's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeConfig {
    /// The player this learner trains (whose version staleness is measured against).
    pub player: Player,
    /// Trajectories persisted and not yet trained, at most.
    pub capacity: usize,
    /// Largest accepted `learner version - trajectory version`.
    pub max_staleness: u64,
    /// Most credits one stream holds.
    pub stream_credits: u32,
    /// Trajectories per update.
    pub batch_episodes: usize,
    /// Also take the queued members of the batch's groups beyond `batch_episodes` (off
    /// in `--sync` mode, where a batch is exactly one round).
    pub complete_groups: bool,
}

/// What happens to a received, valid trajectory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Queued; acknowledge ACCEPTED once the journal holds it.
    Accepted,
    Duplicate,
    Stale(String),
    Overflow(String),
}

/// A trajectory in the queue, with its journal record index.
#[derive(Debug, Clone)]
pub struct Queued {
    pub index: u64,
    pub trajectory: Trajectory,
}

/// Work for the training thread.
#[derive(Debug, Clone)]
pub struct Batch {
    pub trajectories: Vec<Trajectory>,
    /// Their journal indices.
    pub indices: Vec<u64>,
    /// The consumed journal records once this batch is trained.
    pub consumed_after: Watermarked,
    /// Every key accepted so far (all of them are in the journal).
    pub dedupe: Dedupe,
    /// `trained_total` once this batch is trained.
    pub trained_total_after: u64,
}

/// Counters for `GetLearnerStatus` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeStatus {
    pub version: u64,
    pub queue_depth: u64,
    pub capacity: u64,
    pub max_staleness: u64,
    pub accepted_total: u64,
    pub trained_total: u64,
    pub training: bool,
}

/// The intake state (owned by one thread).
#[derive(Debug)]
pub struct Intake {
    config: IntakeConfig,
    version: u64,
    dedupe: Dedupe,
    consumed: Watermarked,
    queue: VecDeque<Queued>,
    /// Accepted in this group commit, not yet in the journal.
    pending: Vec<Trajectory>,
    /// Taken by the training thread, not yet saved.
    in_training: usize,
    grants: BTreeMap<StreamId, u32>,
    next_stream: StreamId,
    trained_total: u64,
}

impl Intake {
    /// An intake at `version` whose state file recorded `dedupe`, `consumed` and
    /// `trained_total`; feed the journal's unconsumed records with [`Intake::replay`].
    pub fn new(
        config: IntakeConfig,
        version: u64,
        dedupe: Dedupe,
        consumed: Watermarked,
        trained_total: u64,
    ) -> Self {
        Self {
            config,
            version,
            dedupe,
            consumed,
            queue: VecDeque::new(),
            pending: Vec::new(),
            in_training: 0,
            grants: BTreeMap::new(),
            next_stream: 1,
            trained_total,
        }
    }

    pub fn config(&self) -> &IntakeConfig {
        &self.config
    }

    /// Whether journal record `index` was trained into a saved checkpoint.
    pub fn is_consumed(&self, index: u64) -> bool {
        self.consumed.contains(index)
    }

    /// A journal record not yet consumed, at start-up: back into the queue and the keys
    /// (even beyond capacity: it was acknowledged).
    pub fn replay(&mut self, index: u64, lease: &str, sequence: u64, trajectory: Trajectory) {
        self.dedupe.insert(lease, sequence);
        self.queue.push_back(Queued { index, trajectory });
    }

    fn depth(&self) -> usize {
        self.queue.len() + self.pending.len() + self.in_training
    }

    fn free(&self) -> u64 {
        let granted: u64 = self.grants.values().map(|&g| u64::from(g)).sum();
        (self.config.capacity as u64).saturating_sub(self.depth() as u64 + granted)
    }

    /// A new stream and its first grant.
    pub fn open_stream(&mut self) -> (StreamId, u32) {
        let id = self.next_stream;
        self.next_stream += 1;
        self.grants.insert(id, 0);
        (id, self.regrant(id))
    }

    /// The stream ended: its grant returns to the pool and goes to the other streams at
    /// once (not at the next update, which a stalled learner may never make). Returns the
    /// streams whose grant grew, with their new grant.
    pub fn close_stream(&mut self, id: StreamId) -> Vec<(StreamId, u32)> {
        if self.grants.remove(&id).is_none() {
            return Vec::new();
        }
        self.spread_credits()
    }

    fn use_credit(&mut self, stream: StreamId) {
        if let Some(g) = self.grants.get_mut(&stream) {
            *g = g.saturating_sub(1);
        }
    }

    /// The stream's new grant: what it holds plus what is free, up to `stream_credits`.
    pub fn regrant(&mut self, stream: StreamId) -> u32 {
        let free = self.free();
        let Some(g) = self.grants.get_mut(&stream) else {
            return 0;
        };
        let cap = self.config.stream_credits;
        let more = u32::try_from(free).unwrap_or(u32::MAX);
        *g = g.saturating_add(more).min(cap).max(*g);
        *g
    }

    /// A trajectory that failed validation (it used a credit).
    pub fn invalid(&mut self, stream: StreamId) {
        self.use_credit(stream);
    }

    /// The learner version minus the version that played `t` for this learner's player.
    pub fn staleness(&self, t: &Trajectory) -> u64 {
        self.version.saturating_sub(t.version(self.config.player))
    }

    /// Decides a valid trajectory. Accepted ones wait in the pending group until
    /// [`Intake::commit_pending`] (after the journal's fsync).
    pub fn submit(
        &mut self,
        stream: StreamId,
        lease: &str,
        sequence: u64,
        trajectory: Trajectory,
    ) -> Verdict {
        let had_credit = self.grants.get(&stream).is_some_and(|&g| g > 0);
        self.use_credit(stream);
        if self.dedupe.contains(lease, sequence) {
            return Verdict::Duplicate;
        }
        let played = trajectory.version(self.config.player);
        if played > self.version {
            return Verdict::Stale(format!(
                "played by {} version {played}, which this learner (at version {}) never \
                 published",
                self.config.player, self.version
            ));
        }
        let lag = self.staleness(&trajectory);
        if lag > self.config.max_staleness {
            return Verdict::Stale(format!(
                "played by {} version {}, {lag} versions behind the learner's {} (max staleness {})",
                self.config.player,
                trajectory.version(self.config.player),
                self.version,
                self.config.max_staleness
            ));
        }
        if self.depth() >= self.config.capacity {
            return Verdict::Overflow(format!(
                "queue full ({} of {}): wait for credits",
                self.depth(),
                self.config.capacity
            ));
        }
        if !had_credit && self.free() == 0 {
            return Verdict::Overflow(format!(
                "sent without credits and the free room ({} of {}) is promised to other streams: wait for credits",
                self.config.capacity - self.depth(),
                self.config.capacity
            ));
        }
        self.dedupe.insert(lease, sequence);
        self.pending.push(trajectory);
        Verdict::Accepted
    }

    /// How many accepted trajectories wait for the journal.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The pending group is in the journal from record `first_index` on.
    pub fn commit_pending(&mut self, first_index: u64) {
        for (k, trajectory) in self.pending.drain(..).enumerate() {
            self.queue.push_back(Queued {
                index: first_index + k as u64,
                trajectory,
            });
        }
    }

    /// The next batch, if the trainer is idle and enough is queued: the oldest
    /// `batch_episodes`, plus the queued members of their groups.
    pub fn take_batch(&mut self) -> Option<Batch> {
        let n = self.config.batch_episodes;
        if self.in_training > 0 || self.queue.len() < n || n == 0 {
            return None;
        }
        let mut taken: Vec<Queued> = self.queue.drain(..n).collect();
        if self.config.complete_groups {
            let groups: BTreeSet<u64> = taken.iter().map(|q| q.trajectory.group).collect();
            let (same, rest): (VecDeque<Queued>, VecDeque<Queued>) = self
                .queue
                .drain(..)
                .partition(|q| groups.contains(&q.trajectory.group));
            self.queue = rest;
            taken.extend(same);
        }
        self.in_training = taken.len();
        let mut consumed_after = self.consumed.clone();
        let indices: Vec<u64> = taken.iter().map(|q| q.index).collect();
        for &i in &indices {
            consumed_after.insert(i);
        }
        Some(Batch {
            trained_total_after: self.trained_total + indices.len() as u64,
            trajectories: taken.into_iter().map(|q| q.trajectory).collect(),
            indices,
            consumed_after,
            dedupe: self.dedupe.clone(),
        })
    }

    /// The batch taken last is saved at `version`: it leaves the queue. Returns the
    /// streams whose grant grew, with their new grant (to send credit updates).
    pub fn trained(&mut self, batch: &Batch, version: u64) -> Vec<(StreamId, u32)> {
        self.in_training = 0;
        self.consumed = batch.consumed_after.clone();
        self.trained_total = batch.trained_total_after;
        self.version = self.version.max(version);
        self.spread_credits()
    }

    /// The batch could not be trained: it goes back to the front of the queue.
    pub fn untake(&mut self, batch: Batch) {
        self.in_training = 0;
        for (index, trajectory) in batch.indices.into_iter().zip(batch.trajectories).rev() {
            self.queue.push_front(Queued { index, trajectory });
        }
    }

    /// Grants free room to streams, smallest grant first.
    fn spread_credits(&mut self) -> Vec<(StreamId, u32)> {
        let mut order: Vec<(u32, StreamId)> = self.grants.iter().map(|(&s, &g)| (g, s)).collect();
        order.sort_unstable();
        let mut changed = Vec::new();
        for (before, stream) in order {
            let after = self.regrant(stream);
            if after > before {
                changed.push((stream, after));
            }
        }
        changed
    }

    /// The oldest consumed-prefix bound: journal records below it are all trained.
    pub fn consumed_below(&self) -> u64 {
        self.consumed.below
    }

    pub fn status(&self) -> IntakeStatus {
        let depth = self.depth() as u64;
        IntakeStatus {
            version: self.version,
            queue_depth: depth,
            capacity: self.config.capacity as u64,
            max_staleness: self.config.max_staleness,
            accepted_total: self.trained_total + depth,
            trained_total: self.trained_total,
            training: self.in_training > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::service::testing::trajectory;

    fn config(capacity: usize, credits: u32) -> IntakeConfig {
        IntakeConfig {
            player: Player::Agent,
            capacity,
            max_staleness: 2,
            stream_credits: credits,
            batch_episodes: 4,
            complete_groups: true,
        }
    }

    fn intake(capacity: usize, credits: u32) -> Intake {
        Intake::new(
            config(capacity, credits),
            5,
            Dedupe::default(),
            Watermarked::default(),
            0,
        )
    }

    #[test]
    fn duplicates_stale_and_overflow_are_told_apart() {
        let mut i = intake(3, 10);
        let (s, credits) = i.open_stream();
        assert_eq!(credits, 3, "the grant never exceeds free room");
        assert_eq!(i.submit(s, "a", 1, trajectory(1, 5)), Verdict::Accepted);
        assert_eq!(i.submit(s, "a", 1, trajectory(1, 5)), Verdict::Duplicate);
        assert!(matches!(
            i.submit(s, "a", 2, trajectory(1, 2)),
            Verdict::Stale(r) if r.contains("3 versions behind")
        ));
        assert!(matches!(
            i.submit(s, "a", 4, trajectory(1, 6)),
            Verdict::Stale(r) if r.contains("never published")
        ));
        assert_eq!(i.submit(s, "a", 3, trajectory(1, 3)), Verdict::Accepted);
        assert_eq!(i.submit(s, "b", 1, trajectory(2, 4)), Verdict::Accepted);
        assert!(matches!(
            i.submit(s, "b", 2, trajectory(2, 5)),
            Verdict::Overflow(_)
        ));
        i.commit_pending(0);
        assert_eq!(i.status().queue_depth, 3);
        assert_eq!(i.status().accepted_total, 3);
        // A dropped one may come again later: it is not a duplicate.
        assert!(!matches!(
            i.submit(s, "b", 2, trajectory(2, 5)),
            Verdict::Duplicate
        ));
    }

    #[test]
    fn grants_never_promise_more_than_the_free_room() {
        let mut i = intake(10, 4);
        let (a, ca) = i.open_stream();
        let (b, cb) = i.open_stream();
        let (c, cc) = i.open_stream();
        assert_eq!((ca, cb, cc), (4, 4, 2));
        for seq in 1..=4 {
            assert_eq!(i.submit(a, "a", seq, trajectory(seq, 5)), Verdict::Accepted);
            i.regrant(a);
        }
        i.commit_pending(0);
        // 4 queued, b holds 4, c holds 2: a gets nothing more.
        assert_eq!(i.regrant(a), 0);
        // b's 4 credits go to the others when b closes, the smallest grant first.
        assert_eq!(i.close_stream(b), vec![(a, 4)]);
        assert!(i.close_stream(b).is_empty(), "closing twice frees nothing");
        assert_eq!(i.regrant(a), 4);
        let st = i.status();
        let granted: u64 = i.grants.values().map(|&g| u64::from(g)).sum();
        assert!(st.queue_depth + granted <= st.capacity);
        let _ = c;
    }

    #[test]
    fn a_stream_without_credits_cannot_take_room_promised_to_others() {
        let mut i = intake(4, 4);
        let (honest, granted) = i.open_stream();
        assert_eq!(granted, 4);
        let (greedy, none) = i.open_stream();
        assert_eq!(none, 0);
        assert!(matches!(
            i.submit(greedy, "g", 1, trajectory(1, 5)),
            Verdict::Overflow(r) if r.contains("promised")
        ));
        for seq in 1..=4 {
            assert_eq!(
                i.submit(honest, "h", seq, trajectory(1, 5)),
                Verdict::Accepted
            );
        }
    }

    #[test]
    fn batches_complete_groups_and_training_frees_credits() {
        let mut i = intake(8, 8);
        let (s, _) = i.open_stream();
        // Groups: 1 1 2 2 3 1 — the first four are groups 1 and 2; the sixth joins group 1.
        for (seq, group) in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 1)] {
            assert_eq!(
                i.submit(s, "a", seq, trajectory(group, 5)),
                Verdict::Accepted
            );
        }
        i.commit_pending(0);
        let granted = i.regrant(s);
        assert_eq!(granted, 2);
        let batch = i.take_batch().unwrap();
        assert_eq!(batch.indices, vec![0, 1, 2, 3, 5]);
        assert!(i.take_batch().is_none(), "one batch at a time");
        assert_eq!(i.status().queue_depth, 6, "in training still counts");
        let updates = i.trained(&batch, 6);
        assert_eq!(updates, vec![(s, 7)]);
        let st = i.status();
        assert_eq!((st.version, st.queue_depth, st.trained_total), (6, 1, 5));
        assert_eq!(st.accepted_total, 6);
        assert!(i.is_consumed(5) && !i.is_consumed(4));
        assert_eq!(i.consumed_below(), 4);
    }

    #[test]
    fn an_untaken_batch_goes_back_in_order() {
        let mut i = intake(8, 8);
        let (s, _) = i.open_stream();
        for seq in 1..=5 {
            i.submit(s, "a", seq, trajectory(seq, 5));
        }
        i.commit_pending(0);
        let batch = i.take_batch().unwrap();
        i.untake(batch);
        let again = i.take_batch().unwrap();
        assert_eq!(again.indices, vec![0, 1, 2, 3]);
    }
}
