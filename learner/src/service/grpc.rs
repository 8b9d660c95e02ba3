//! The thin tonic adapter of `arlas.v1.Learner`: validate each request at the edge
//! (`arlas_core::Trajectory::try_from`), hand it to the intake owner, stream its
//! acknowledgements back.

use arlas_core::Trajectory;
use arlas_core::wire::learner_status_to_wire;
use arlas_core::{LearnerStatus, PolicyVersion};
use arlas_proto::v1;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::fit::ModelFit;
use super::journal::encode_record;
use super::owner::{Command, OwnerHandle, Submission};
use crate::Player;

/// Acknowledgements buffered per stream; a client that lets more pile up is cut off.
const ACK_BUFFER: usize = 4096;
/// Longest actor lease id accepted.
const MAX_LEASE_ID: usize = 128;

/// The `arlas.v1.Learner` service.
#[derive(Debug, Clone)]
pub struct LearnerService {
    owner: OwnerHandle,
    player: Player,
    fit: ModelFit,
    published: watch::Receiver<Option<PolicyVersion>>,
    stopping: watch::Receiver<bool>,
}

impl LearnerService {
    pub fn new(
        owner: OwnerHandle,
        fit: ModelFit,
        published: watch::Receiver<Option<PolicyVersion>>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            owner,
            player: fit.player,
            fit,
            published,
            stopping,
        }
    }
}

/// Validates one request: the lease id, the sequence and the trajectory.
fn validate(fit: &ModelFit, request: v1::SubmitTrajectoryRequest) -> (String, u64, Submission) {
    let sequence = request.sequence;
    let lease = request.actor_lease_id.clone();
    let invalid = |reason: String| (lease.clone(), sequence, Submission::Invalid { reason });
    if lease.is_empty() || lease.len() > MAX_LEASE_ID {
        return invalid(format!(
            "actor_lease_id must be 1 to {MAX_LEASE_ID} bytes, got {}",
            lease.len()
        ));
    }
    if sequence == 0 {
        return invalid("sequence must start at 1".into());
    }
    let record = encode_record(&request);
    let Some(wire) = request.trajectory else {
        return invalid("trajectory is missing".into());
    };
    let checked = Trajectory::try_from(wire)
        .map_err(|e| e.to_string())
        .and_then(|t| fit.check(&t).map(|()| t));
    match checked {
        Ok(trajectory) => (
            lease.clone(),
            sequence,
            Submission::Valid {
                lease,
                trajectory: Box::new(trajectory),
                record,
            },
        ),
        Err(reason) => invalid(reason),
    }
}

fn unavailable() -> Status {
    Status::unavailable("the learner is shutting down; send to it again after it restarts")
}

#[tonic::async_trait]
impl v1::learner_server::Learner for LearnerService {
    async fn submit_trajectories(
        &self,
        request: Request<Streaming<v1::SubmitTrajectoryRequest>>,
    ) -> Result<Response<BoxStream<v1::TrajectoryAck>>, Status> {
        let mut inbound = request.into_inner();
        let (acks, rx) = mpsc::channel(ACK_BUFFER);
        let stream = self
            .owner
            .open(acks.clone())
            .await
            .map_err(|_| unavailable())?;
        let owner = self.owner.clone();
        let fit = self.fit;
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = inbound.next() => Some(next),
                    _ = stopping.wait_for(|s| *s) => None,
                };
                let Some(next) = next else {
                    let _ = acks.send(Err(unavailable())).await;
                    break;
                };
                match next {
                    None => break,
                    Some(Err(status)) => {
                        // Over-size and undecodable messages are the sender's fault.
                        let status = if status.code() == Code::OutOfRange {
                            Status::invalid_argument(status.message().to_string())
                        } else {
                            status
                        };
                        let _ = acks.send(Err(status)).await;
                        break;
                    }
                    Some(Ok(request)) => {
                        let (_, sequence, submission) = validate(&fit, request);
                        let command = Command::Submit {
                            stream,
                            sequence,
                            submission,
                        };
                        if owner.send(command).await.is_err() {
                            let _ = acks.send(Err(unavailable())).await;
                            break;
                        }
                    }
                }
            }
            drop(acks);
            let _ = owner.send(Command::Close { stream }).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_learner_status(
        &self,
        _request: Request<v1::GetLearnerStatusRequest>,
    ) -> Result<Response<v1::LearnerStatus>, Status> {
        let status = self.owner.status().await.map_err(|_| unavailable())?;
        let published = self.published.borrow().clone();
        let checkpoint = published
            .filter(|p| p.version == status.version)
            .and_then(|p| p.checkpoint);
        Ok(Response::new(learner_status_to_wire(&LearnerStatus {
            versions: vec![PolicyVersion {
                player: self.player,
                version: status.version,
                checkpoint,
            }],
            queue_depth: status.queue_depth,
            queue_capacity: status.capacity,
            max_staleness: status.max_staleness,
            accepted_total: status.accepted_total,
            trained_total: status.trained_total,
        })))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::service::testing::trajectory;

    const FIT: ModelFit = ModelFit {
        player: Player::Agent,
        vocab_size: 256,
        max_tokens: 4096,
    };

    fn validate(r: v1::SubmitTrajectoryRequest) -> (String, u64, Submission) {
        super::validate(&FIT, r)
    }

    #[test]
    fn requests_are_validated_at_the_edge() {
        let good = v1::SubmitTrajectoryRequest {
            actor_lease_id: "lease".into(),
            sequence: 3,
            trajectory: Some((&trajectory(1, 1)).into()),
        };
        assert!(matches!(validate(good.clone()).2, Submission::Valid { .. }));
        let reason = |r: v1::SubmitTrajectoryRequest| match validate(r).2 {
            Submission::Invalid { reason } => reason,
            Submission::Valid { .. } => panic!("accepted"),
        };
        let mut r = good.clone();
        r.sequence = 0;
        assert!(reason(r).contains("sequence"));
        let mut r = good.clone();
        r.actor_lease_id.clear();
        assert!(reason(r).contains("actor_lease_id"));
        let mut r = good.clone();
        r.trajectory = None;
        assert!(reason(r).contains("missing"));
        let mut r = good.clone();
        r.trajectory.as_mut().unwrap().agent[0].logprobs[0] = 0.5;
        assert!(reason(r).contains("log"), "a positive log-prob is refused");
        let mut r = good;
        r.trajectory.as_mut().unwrap().agent[0].prompt[0] = 256;
        assert!(
            reason(r).contains("vocabulary"),
            "the model's bounds are checked"
        );
    }
}
