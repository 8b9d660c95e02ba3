//! The wrapper client that actors, learners and tests use: domain types in and out, the
//! token attached, size limits raised, and checkpoint transfer with per-chunk checksums,
//! resume and retries. Callers never see `Request`, `Status` or `Channel`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arlas_proto::limits::{MAX_CHUNK_BYTES, MAX_MESSAGE_BYTES};
use arlas_proto::v1;
use arlas_proto::v1::coordinator_client::CoordinatorClient as Generated;
use arlas_proto::v1::publish_checkpoint_request::Kind;
use arlas_runtime::auth::{AttachToken, Token};
use arlas_runtime::backoff::Backoff;
use arlas_runtime::metrics as names;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use arlas_core::wire::{
    member_from_wire, publish_header_to_wire, published_from_wire, registration_to_wire,
    results_to_wire, run_view_from_wire,
};
use arlas_core::{
    BlobId, BlobRef, Lease, LeaseId, MatchResult, Member, PublishHeader, Published, Registration,
    RunView, hash_file,
};
use arlas_runtime::blocking;

use crate::download::Download;
use crate::error::{Error, Result, io};

/// Consecutive corrupted chunks at one offset before a fetch gives up.
const MAX_CORRUPT_RETRIES: u32 = 3;
/// Transport failures in a row before a fetch gives up.
const MAX_STREAM_RETRIES: u32 = 5;

type Inner = Generated<InterceptedService<Channel, AttachToken>>;

/// What a download did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Bytes already on disk from an earlier, interrupted download.
    pub resumed_from: u64,
    /// Bytes received over the network this time.
    pub received: u64,
    /// Chunks whose checksum failed and were fetched again.
    pub corrupted_chunks: u32,
}

/// Longest a unary coordinator rpc may take before the client gives up with
/// DEADLINE_EXCEEDED (a transient error: callers retry): a frozen or half-open coordinator
/// must not hang a role. Streams (publish, fetch, watch) have their own limits.
pub const UNARY_DEADLINE: Duration = Duration::from_secs(30);

/// A client of the `arlas.v1.Coordinator` service.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    inner: Inner,
    deadline: Duration,
}

fn rpc_error(rpc: &'static str) -> impl FnOnce(Status) -> Error {
    move |s| Error::Rpc {
        service: "coordinator",
        rpc,
        code: s.code(),
        message: s.message().to_string(),
    }
}

fn missing(rpc: &'static str, field: &str) -> Error {
    Error::Rpc {
        service: "coordinator",
        rpc,
        code: tonic::Code::Internal,
        message: format!("the coordinator's answer has no {field}"),
    }
}

impl CoordinatorClient {
    /// Connects to `url` (`http://host:port`), sending `token` with every rpc.
    pub async fn connect(url: &str, token: Option<&Token>) -> Result<Self> {
        let channel = arlas_runtime::client::connect(url).await?;
        Ok(Self::new(channel, token))
    }

    /// A client over an existing channel.
    pub fn new(channel: Channel, token: Option<&Token>) -> Self {
        let inner = Generated::with_interceptor(channel, AttachToken::new(token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Self {
            inner,
            deadline: UNARY_DEADLINE,
        }
    }

    /// The same client with another deadline for unary rpcs.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// `call` on a clone of the client, bounded by the deadline.
    async fn unary<Req, Resp, F, Fut>(
        &self,
        rpc: &'static str,
        request: Req,
        call: F,
    ) -> Result<Resp>
    where
        F: FnOnce(Inner, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        let request = tonic::Request::new(request);
        match tokio::time::timeout(self.deadline, call(self.inner.clone(), request)).await {
            Ok(answer) => answer
                .map(tonic::Response::into_inner)
                .map_err(rpc_error(rpc)),
            Err(_) => Err(Error::Rpc {
                service: "coordinator",
                rpc,
                code: tonic::Code::DeadlineExceeded,
                message: format!("no answer in {:.1} s", self.deadline.as_secs_f64()),
            }),
        }
    }

    pub async fn register(&mut self, registration: &Registration) -> Result<(Lease, RunView)> {
        let request = registration_to_wire(registration);
        let r = self
            .unary("Register", request, |mut c, r| async move {
                c.register(r).await
            })
            .await?;
        let run = r.run.ok_or_else(|| missing("Register", "run"))?;
        Ok((
            Lease {
                id: LeaseId::parse(&r.lease_id)?,
                ttl: Duration::from_millis(r.ttl_ms),
            },
            run_view_from_wire(&run)?,
        ))
    }

    pub async fn heartbeat(&mut self, lease: &LeaseId) -> Result<(Duration, RunView)> {
        let request = v1::HeartbeatRequest {
            lease_id: lease.to_string(),
        };
        let r = self
            .unary("Heartbeat", request, |mut c, r| async move {
                c.heartbeat(r).await
            })
            .await?;
        let run = r.run.ok_or_else(|| missing("Heartbeat", "run"))?;
        Ok((Duration::from_millis(r.ttl_ms), run_view_from_wire(&run)?))
    }

    pub async fn deregister(&mut self, lease: &LeaseId) -> Result<()> {
        let request = v1::DeregisterRequest {
            lease_id: lease.to_string(),
        };
        self.unary("Deregister", request, |mut c, r| async move {
            c.deregister(r).await
        })
        .await?;
        Ok(())
    }

    pub async fn run_state(&mut self) -> Result<RunView> {
        let r = self
            .unary(
                "GetRunState",
                v1::GetRunStateRequest {},
                |mut c, r| async move { c.get_run_state(r).await },
            )
            .await?;
        Ok(run_view_from_wire(&r)?)
    }

    pub async fn population(&mut self) -> Result<Vec<Member>> {
        let r = self
            .unary(
                "ListPopulation",
                v1::ListPopulationRequest {},
                |mut c, r| async move { c.list_population(r).await },
            )
            .await?;
        Ok(r.members
            .iter()
            .map(member_from_wire)
            .collect::<arlas_core::Result<_>>()?)
    }

    pub async fn assign_opponents(
        &mut self,
        lease: &LeaseId,
        agent_version: u64,
        count: u32,
    ) -> Result<Vec<Member>> {
        let request = v1::AssignOpponentsRequest {
            lease_id: lease.to_string(),
            agent_version,
            count,
        };
        let r = self
            .unary("AssignOpponents", request, |mut c, r| async move {
                c.assign_opponents(r).await
            })
            .await?;
        Ok(r.opponents
            .iter()
            .map(member_from_wire)
            .collect::<arlas_core::Result<_>>()?)
    }

    /// Adds `results` to the payoff matrix. `report_id` (not 0) makes a retry harmless: the
    /// coordinator counts an id once.
    pub async fn report_results(
        &mut self,
        lease: &LeaseId,
        report_id: u64,
        results: &[MatchResult],
    ) -> Result<()> {
        let request = v1::ReportResultsRequest {
            lease_id: lease.to_string(),
            results: results_to_wire(results),
            report_id,
        };
        self.unary("ReportResults", request, |mut c, r| async move {
            c.report_results(r).await
        })
        .await?;
        Ok(())
    }

    /// Publishes the blob file `blob` (see `archive::pack_to_file`) under `header`, in
    /// 1 MiB chunks read off the async runtime.
    pub async fn publish_file(&mut self, header: &PublishHeader, blob: &Path) -> Result<Published> {
        let (tx, rx) = mpsc::channel(4);
        let first = v1::PublishCheckpointRequest {
            kind: Some(Kind::Header(publish_header_to_wire(header))),
        };
        let path = blob.to_path_buf();
        let mut file = std::fs::File::open(&path).map_err(io(&path))?;
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            if tx.blocking_send(first).is_err() {
                return Ok(());
            }
            loop {
                let mut data = vec![0u8; MAX_CHUNK_BYTES];
                let n = read_full(&mut file, &mut data).map_err(io(&path))?;
                if n == 0 {
                    return Ok(());
                }
                data.truncate(n);
                metrics::counter!(names::CHECKPOINT_BYTES_TOTAL, "direction" => "sent")
                    .increment(n as u64);
                let message = v1::PublishCheckpointRequest {
                    kind: Some(Kind::Chunk(data)),
                };
                if tx.blocking_send(message).is_err() {
                    return Ok(()); // the rpc ended (answered early or failed)
                }
            }
        });
        let answer = self
            .inner
            .publish_checkpoint(ReceiverStream::new(rx))
            .await
            .map_err(rpc_error("PublishCheckpoint"));
        reader.await.map_err(|e| arlas_runtime::Error::Task {
            what: "the checkpoint reader".into(),
            reason: e.to_string(),
        })??;
        Ok(published_from_wire(&answer?.into_inner())?)
    }

    /// Downloads `blob` to `dest`: resumes from `dest.partial` if an earlier download left
    /// one, retries broken streams with backoff, verifies the whole file's sha256 (hashed
    /// as the chunks arrive, so nothing is read twice), then renames it to `dest`. When the
    /// hash disagrees, the chunk checksums find the corrupted chunk; the download is cut
    /// back to it and fetched again from there (see [`crate::download`]).
    pub async fn fetch_to_file(&mut self, blob: &BlobRef, dest: &Path) -> Result<FetchReport> {
        let (partial, size) = (partial_path(dest), blob.size);
        let mut download =
            blocking("opening a download", move || Download::open(&partial, size)).await?;
        let mut report = FetchReport {
            resumed_from: download.len(),
            ..FetchReport::default()
        };
        let mut corrupt_in_a_row = 0u32;
        let mut last_bad = None::<u64>;
        let mut failures_in_a_row = 0u32;
        let mut backoff = Backoff::default();
        loop {
            while download.len() < blob.size {
                let before = download.len();
                let (d, outcome) = self.fetch_range(blob, download, &mut report).await?;
                download = d;
                let failure = match outcome {
                    Ok(Progress::Done) => (download.len() < blob.size).then(|| Error::Rpc {
                        service: "coordinator",
                        rpc: "FetchCheckpoint",
                        code: tonic::Code::Unavailable,
                        message: format!(
                            "the stream ended at offset {} of {}",
                            download.len(),
                            blob.size
                        ),
                    }),
                    Ok(Progress::Malformed) => {
                        // An empty or overlong chunk: nothing was written; ask again.
                        report.corrupted_chunks += 1;
                        corrupt_in_a_row += 1;
                        if corrupt_in_a_row >= MAX_CORRUPT_RETRIES {
                            return Err(Error::ChunkCorrupted {
                                id: blob.id.to_string(),
                                offset: download.len(),
                                attempts: corrupt_in_a_row,
                            });
                        }
                        None
                    }
                    Err(e) => Some(e),
                };
                if download.len() > before {
                    failures_in_a_row = 0;
                    backoff.reset();
                }
                if let Some(e) = failure {
                    failures_in_a_row += 1;
                    if !e.is_transient() || failures_in_a_row >= MAX_STREAM_RETRIES {
                        return Err(e);
                    }
                    let offset = download.len();
                    tracing::warn!(blob = %blob.id, offset, error = %e, "checkpoint download interrupted; resuming");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
            if download.sha256() == blob.id.as_str() {
                break;
            }
            // Find the corrupted chunk and fetch again from it.
            let (d, bad) = blocking("checking downloaded chunks", move || {
                let bad = download.first_bad_chunk();
                Ok::<_, Error>((download, bad))
            })
            .await?;
            download = d;
            let bad = bad?;
            report.corrupted_chunks += 1;
            if bad.is_some_and(|b| last_bad.is_none_or(|l| b > l)) {
                corrupt_in_a_row = 0;
            }
            last_bad = bad;
            corrupt_in_a_row += 1;
            let at = bad.unwrap_or(0);
            tracing::warn!(blob = %blob.id, offset = at, "checkpoint chunk failed its checksum; fetching it again");
            if corrupt_in_a_row >= MAX_CORRUPT_RETRIES {
                return Err(match bad {
                    Some(offset) => {
                        // Keep the good bytes for a later resume.
                        blocking("cutting a download", move || download.truncate(offset)).await?;
                        Error::ChunkCorrupted {
                            id: blob.id.to_string(),
                            offset,
                            attempts: corrupt_in_a_row,
                        }
                    }
                    None => {
                        let (found, path) = (download.sha256(), partial_path(dest));
                        download.discard();
                        Error::BlobCorrupted {
                            id: blob.id.to_string(),
                            path,
                            found,
                        }
                    }
                });
            }
            download = blocking("cutting a download", move || {
                download.truncate(at)?;
                Ok::<_, Error>(download)
            })
            .await?;
        }
        let dest = dest.to_path_buf();
        blocking("finishing a download", move || download.finish(&dest)).await?;
        Ok(report)
    }

    /// One FetchCheckpoint stream from the end of `download`, appended to it until the
    /// stream ends or breaks (the error in the outcome) or sends a malformed chunk. The
    /// outer error is fatal (the download could not be written).
    async fn fetch_range(
        &mut self,
        blob: &BlobRef,
        mut download: Download,
        report: &mut FetchReport,
    ) -> Result<(Download, std::result::Result<Progress, Error>)> {
        let request = v1::FetchCheckpointRequest {
            sha256: blob.id.to_string(),
            offset: download.len(),
            max_chunk_bytes: 0,
        };
        let mut stream = match self.inner.fetch_checkpoint(request).await {
            Ok(response) => response.into_inner(),
            Err(s) => return Ok((download, Err(rpc_error("FetchCheckpoint")(s)))),
        };
        loop {
            let offset = download.len();
            let chunk = match stream.message().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok((download, Ok(Progress::Done))),
                Err(s) => return Ok((download, Err(rpc_error("FetchCheckpoint")(s)))),
            };
            if chunk.offset != offset || chunk.total_size != blob.size {
                let message = format!(
                    "chunk at offset {} of a {}-byte blob, expected offset {offset} of {} bytes",
                    chunk.offset, chunk.total_size, blob.size
                );
                let e = Error::Rpc {
                    service: "coordinator",
                    rpc: "FetchCheckpoint",
                    code: tonic::Code::Internal,
                    message,
                };
                return Ok((download, Err(e)));
            }
            let len = chunk.data.len() as u64;
            if len == 0 || offset + len > blob.size {
                return Ok((download, Ok(Progress::Malformed)));
            }
            let (data, sha256) = (chunk.data, chunk.data_sha256);
            download = blocking("writing a download", move || {
                download.append(&data, sha256)?;
                Ok::<_, Error>(download)
            })
            .await?;
            metrics::counter!(names::CHECKPOINT_BYTES_TOTAL, "direction" => "received")
                .increment(len);
            report.received += len;
        }
    }

    /// The run state now and after every change, until the coordinator goes away.
    pub async fn watch(&mut self) -> Result<impl Stream<Item = Result<RunView>> + use<>> {
        let stream = self
            .inner
            .watch(v1::WatchRequest {})
            .await
            .map_err(rpc_error("Watch"))?
            .into_inner();
        Ok(stream.map(|item| {
            item.map_err(rpc_error("Watch"))
                .and_then(|s| Ok(run_view_from_wire(&s)?))
        }))
    }
}

enum Progress {
    /// The stream ended (at the download's end).
    Done,
    /// A chunk was empty or went past the blob's end; nothing of it was written.
    Malformed,
}

/// `dest` with `.partial` appended: where an unfinished download lives.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The id and size of an existing blob file (hashes it; run it off the async runtime).
pub fn blob_ref_of_file(path: &Path) -> Result<BlobRef> {
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    let id = BlobId::parse(&hash_file(path)?)?;
    Ok(BlobRef { id, size })
}
