//! The one thread that owns the intake and the journal. Streams send it commands; it
//! decides a group of them, appends the accepted ones to the journal with one fsync (group
//! commit), then answers every stream, and hands batches to the training thread.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;

use arlas_core::Trajectory;
use arlas_proto::v1;
use arlas_runtime::metrics as names;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::intake::{Batch, Intake, IntakeStatus, StreamId, Verdict};
use super::journal::Journal;
use super::thread::{self, Watched};
use crate::error::{Error, Result};

/// Commands waiting for the owner, at most (senders wait beyond: back-pressure).
const COMMAND_BUFFER: usize = 1024;
/// Commands decided per group commit, at most.
const GROUP_MAX: usize = 512;

/// Where a stream's acknowledgements go.
pub type AckSender = mpsc::Sender<Result<v1::TrajectoryAck, Status>>;

/// A received trajectory, validated at the edge.
#[derive(Debug)]
pub enum Submission {
    Valid {
        lease: String,
        trajectory: Box<Trajectory>,
        /// Its journal record (`journal::encode_record`).
        record: Vec<u8>,
    },
    Invalid {
        reason: String,
    },
}

/// What the owner is asked.
#[derive(Debug)]
pub enum Command {
    Open {
        acks: AckSender,
        reply: oneshot::Sender<StreamId>,
    },
    Submit {
        stream: StreamId,
        sequence: u64,
        submission: Submission,
    },
    Close {
        stream: StreamId,
    },
    /// From the training thread: `batch` is saved at `version`.
    Trained {
        batch: Batch,
        version: u64,
    },
    Status {
        reply: oneshot::Sender<IntakeStatus>,
    },
    /// Stop now (shutdown).
    Stop,
}

/// The async side's handle on the owner.
#[derive(Debug, Clone)]
pub struct OwnerHandle {
    tx: mpsc::Sender<Command>,
}

impl OwnerHandle {
    /// Opens a stream whose acks (the first one grants credits) go to `acks`.
    pub async fn open(&self, acks: AckSender) -> Result<StreamId> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Open { acks, reply }).await?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    pub async fn send(&self, command: Command) -> Result<()> {
        self.tx.send(command).await.map_err(|_| Error::ShuttingDown)
    }

    /// From a plain thread.
    pub fn blocking_send(&self, command: Command) -> Result<()> {
        self.tx
            .blocking_send(command)
            .map_err(|_| Error::ShuttingDown)
    }

    pub async fn status(&self) -> Result<IntakeStatus> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Status { reply }).await?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }
}

fn ack(sequence: u64, status: v1::AckStatus, reason: String) -> v1::TrajectoryAck {
    v1::TrajectoryAck {
        sequence,
        status: status.into(),
        reason,
        credits: 0,
    }
}

struct Owner {
    intake: Intake,
    journal: Journal,
    batches: std_mpsc::Sender<Batch>,
    streams: BTreeMap<StreamId, AckSender>,
    player: &'static str,
}

/// Starts the owner thread; it ends on [`Command::Stop`], when every handle is dropped,
/// or with the error that makes the learner unable to vouch for acks (a failed fsync).
pub fn spawn(
    intake: Intake,
    journal: Journal,
    batches: std_mpsc::Sender<Batch>,
) -> Result<(OwnerHandle, Watched)> {
    let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
    let player = intake.config().player.name();
    let mut owner = Owner {
        intake,
        journal,
        batches,
        streams: BTreeMap::new(),
        player,
    };
    let thread = thread::spawn("arlas-intake", "the intake thread", move || owner.run(rx))?;
    Ok((OwnerHandle { tx }, thread))
}

impl Owner {
    fn run(&mut self, mut rx: mpsc::Receiver<Command>) -> Result<()> {
        // Every series exists from the start (dashboards and alerts see 0, not nothing).
        metrics::counter!(names::TRAJECTORIES_RECEIVED_TOTAL).increment(0);
        metrics::counter!(names::TRAJECTORIES_ACKNOWLEDGED_TOTAL).increment(0);
        for reason in ["stale", "invalid", "overflow"] {
            metrics::counter!(names::TRAJECTORIES_DROPPED_TOTAL, "reason" => reason).increment(0);
        }
        self.publish_gauges();
        self.maybe_train()?;
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(c) => group.push(c),
                    Err(_) => break,
                }
            }
            if !self.decide(group)? {
                break;
            }
            self.publish_gauges();
            self.maybe_train()?;
        }
        Ok(())
    }

    /// One group commit; false on Stop.
    fn decide(&mut self, group: Vec<Command>) -> Result<bool> {
        let mut answers: Vec<(StreamId, v1::TrajectoryAck)> = Vec::new();
        let mut records = Vec::new();
        let mut closes = Vec::new();
        let mut credit_updates = Vec::new();
        let mut keep_going = true;
        for command in group {
            match command {
                Command::Open { acks, reply } => {
                    let (id, credits) = self.intake.open_stream();
                    let first = v1::TrajectoryAck {
                        credits,
                        ..ack(0, v1::AckStatus::Unspecified, String::new())
                    };
                    if acks.try_send(Ok(first)).is_ok() && reply.send(id).is_ok() {
                        self.streams.insert(id, acks);
                    } else {
                        credit_updates.extend(self.intake.close_stream(id));
                    }
                }
                Command::Submit {
                    stream,
                    sequence,
                    submission,
                } => {
                    metrics::counter!(names::TRAJECTORIES_RECEIVED_TOTAL).increment(1);
                    let answer = match submission {
                        Submission::Invalid { reason } => {
                            self.intake.invalid(stream);
                            self.dropped("invalid");
                            ack(sequence, v1::AckStatus::DroppedInvalid, reason)
                        }
                        Submission::Valid {
                            lease,
                            trajectory,
                            record,
                        } => {
                            let lag = self.intake.staleness(&trajectory);
                            let verdict = self.intake.submit(stream, &lease, sequence, *trajectory);
                            if verdict != Verdict::Duplicate {
                                #[allow(clippy::cast_precision_loss)]
                                metrics::histogram!(names::TRAJECTORY_STALENESS_VERSIONS, "player" => self.player)
                                    .record(lag as f64);
                            }
                            match verdict {
                                Verdict::Accepted => {
                                    records.push(record);
                                    ack(sequence, v1::AckStatus::Accepted, String::new())
                                }
                                Verdict::Duplicate => {
                                    ack(sequence, v1::AckStatus::Duplicate, String::new())
                                }
                                Verdict::Stale(reason) => {
                                    self.dropped("stale");
                                    ack(sequence, v1::AckStatus::DroppedStale, reason)
                                }
                                Verdict::Overflow(reason) => {
                                    self.dropped("overflow");
                                    ack(sequence, v1::AckStatus::DroppedOverflow, reason)
                                }
                            }
                        }
                    };
                    answers.push((stream, answer));
                }
                Command::Close { stream } => closes.push(stream),
                Command::Trained { batch, version } => {
                    credit_updates.extend(self.intake.trained(&batch, version));
                    self.journal.release_before(self.intake.consumed_below())?;
                }
                Command::Status { reply } => {
                    let _ = reply.send(self.intake.status());
                }
                Command::Stop => keep_going = false,
            }
        }
        if !records.is_empty() {
            let first = self.journal.append(&records)?;
            self.intake.commit_pending(first);
            metrics::counter!(names::TRAJECTORIES_ACKNOWLEDGED_TOTAL)
                .increment(records.len() as u64);
        }
        for (stream, mut answer) in answers {
            answer.credits = self.intake.regrant(stream);
            self.answer(stream, answer);
        }
        for stream in closes {
            self.streams.remove(&stream);
            credit_updates.extend(self.intake.close_stream(stream));
        }
        for (stream, credits) in credit_updates {
            let update = v1::TrajectoryAck {
                credits,
                ..ack(0, v1::AckStatus::Unspecified, String::new())
            };
            self.answer(stream, update);
        }
        Ok(keep_going)
    }

    /// Sends to a stream; a stream that does not read its acks (buffer full) is closed.
    fn answer(&mut self, stream: StreamId, answer: v1::TrajectoryAck) {
        let Some(tx) = self.streams.get(&stream) else {
            return;
        };
        if let Err(e) = tx.try_send(Ok(answer)) {
            if let mpsc::error::TrySendError::Full(_) = e {
                tracing::warn!(
                    stream,
                    "a client does not read its acknowledgements: closing its stream"
                );
                let _ = tx.try_send(Err(Status::resource_exhausted(
                    "acknowledgements not read; reconnect and read them",
                )));
            }
            self.streams.remove(&stream);
            // Its credits go to the others with the next update.
            let _ = self.intake.close_stream(stream);
        }
    }

    fn dropped(&self, reason: &'static str) {
        metrics::counter!(names::TRAJECTORIES_DROPPED_TOTAL, "reason" => reason).increment(1);
    }

    fn publish_gauges(&self) {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(names::LEARNER_QUEUE_DEPTH).set(self.intake.status().queue_depth as f64);
    }

    fn maybe_train(&mut self) -> Result<()> {
        if let Some(batch) = self.intake.take_batch() {
            tracing::debug!(trajectories = batch.indices.len(), "batch to the trainer");
            self.batches.send(batch).map_err(|_| Error::ShuttingDown)?;
        }
        Ok(())
    }
}
