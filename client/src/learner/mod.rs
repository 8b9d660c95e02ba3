//! The learner's wrapper client: a trajectory stream with credits and acknowledgements,
//! and the learner's status. Callers never see `Request`, `Status` or `Channel`.
//!
//! - [`sender`]: what an actor owes one player's learner (buffer, credits, keys), no socket;
//! - [`link`]: the task that keeps one stream open to a live learner of a player and
//!   re-sends what was not acknowledged.

pub mod link;
pub mod sender;

use std::time::Duration;

use arlas_core::LearnerStatus;
use arlas_core::wire::learner_status_from_wire;
use arlas_proto::limits::MAX_MESSAGE_BYTES;
use arlas_proto::v1;
use arlas_proto::v1::learner_client::LearnerClient as Generated;
use arlas_runtime::auth::{AttachToken, Token};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::{Error, Result};

pub use link::{Link, LinkConfig, LinkStatus};
pub use sender::{Acked, PlayerSender, SenderCounts};

/// How long opening a stream may take before it counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

type Inner = Generated<InterceptedService<Channel, AttachToken>>;

fn rpc_error(rpc: &'static str) -> impl FnOnce(Status) -> Error {
    move |s| Error::Rpc {
        service: "learner",
        rpc,
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// A client of one learner's `arlas.v1.Learner` service.
#[derive(Debug, Clone)]
pub struct LearnerClient {
    url: String,
    inner: Inner,
}

/// An open `SubmitTrajectories` call: requests go out on `out`; acknowledgements come
/// back from [`TrajectoryStream::next_ack`].
#[derive(Debug)]
pub struct TrajectoryStream {
    pub url: String,
    out: mpsc::UnboundedSender<v1::SubmitTrajectoryRequest>,
    acks: tonic::Streaming<v1::TrajectoryAck>,
}

impl TrajectoryStream {
    /// Sends one request; false when the call has ended (its acks say why).
    pub fn send(&self, request: v1::SubmitTrajectoryRequest) -> bool {
        self.out.send(request).is_ok()
    }

    /// The next acknowledgement; `None` when the learner ended the stream.
    pub async fn next_ack(&mut self) -> Result<Option<v1::TrajectoryAck>> {
        self.acks
            .message()
            .await
            .map_err(rpc_error("SubmitTrajectories"))
    }
}

impl LearnerClient {
    /// Connects to the learner at `url` (`http://host:port`), sending `token` with every rpc.
    pub async fn connect(url: &str, token: Option<&Token>) -> Result<Self> {
        let channel = arlas_runtime::client::connect(url).await?;
        let inner = Generated::with_interceptor(channel, AttachToken::new(token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self {
            url: url.to_string(),
            inner,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens a trajectory stream (the first ack grants credits).
    pub async fn open_stream(&mut self) -> Result<TrajectoryStream> {
        let (out, rx) = mpsc::unbounded_channel();
        let call = self
            .inner
            .submit_trajectories(UnboundedReceiverStream::new(rx));
        let acks = tokio::time::timeout(OPEN_TIMEOUT, call)
            .await
            .map_err(|_| Error::Rpc {
                service: "learner",
                rpc: "SubmitTrajectories",
                code: tonic::Code::DeadlineExceeded,
                message: format!("no answer within {OPEN_TIMEOUT:?}"),
            })?
            .map_err(rpc_error("SubmitTrajectories"))?
            .into_inner();
        Ok(TrajectoryStream {
            url: self.url.clone(),
            out,
            acks,
        })
    }

    pub async fn status(&mut self) -> Result<LearnerStatus> {
        let r = self
            .inner
            .get_learner_status(v1::GetLearnerStatusRequest {})
            .await
            .map_err(rpc_error("GetLearnerStatus"))?
            .into_inner();
        Ok(learner_status_from_wire(&r)?)
    }
}
