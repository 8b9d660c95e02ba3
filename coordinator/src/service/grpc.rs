//! The thin tonic adapter: decode and validate at the edge (`arlas_core::wire`), ask the
//! owner ([`CoordinatorHandle`]), map errors in one place ([`super::status`]). Byte work
//! (hashing, disk) runs on the blocking pool.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use arlas_proto::limits::{MAX_CHUNK_BYTES, chunk_bytes};
use arlas_proto::v1;
use arlas_proto::v1::publish_checkpoint_request::Kind;
use arlas_runtime::blocking;
use arlas_runtime::metrics as names;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::blobs::BlobWriter;
use super::chunk_digests::{ChunkDigests, Digests};
use super::owner::CoordinatorHandle;
use super::state::PublishCheck;
use super::status::to_status;
use crate::error::Error;
use arlas_core::wire::{
    blob_id_from_wire, lease_from_wire, member_to_wire, opponent_count_from_wire,
    publish_header_from_wire, published_to_wire, registration_from_wire, results_from_wire,
    run_view_to_wire,
};
use arlas_core::{BlobRef, PublishHeader};

/// Chunks buffered per download before the sender waits for the client.
const FETCH_BUFFER: usize = 4;

/// The `arlas.v1.Coordinator` service over a [`CoordinatorHandle`].
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    handle: CoordinatorHandle,
    /// Turns true when the server stops: long-lived streams (watch) end then.
    stopping: watch::Receiver<bool>,
    /// Chunk checksums of downloads, computed once per blob for every actor.
    digests: ChunkDigests,
}

impl CoordinatorService {
    pub fn new(handle: CoordinatorHandle, stopping: watch::Receiver<bool>) -> Self {
        Self {
            handle,
            stopping,
            digests: ChunkDigests::default(),
        }
    }
}

type RpcResult<T> = Result<Response<T>, Status>;

fn invalid(reason: impl Into<String>) -> Status {
    Status::invalid_argument(reason.into())
}

/// Errors surfacing from a request stream: oversize messages are the caller's fault.
fn stream_status(status: Status) -> Status {
    if status.code() == Code::OutOfRange {
        Status::invalid_argument(status.message().to_string())
    } else {
        status
    }
}

#[tonic::async_trait]
impl v1::coordinator_server::Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> RpcResult<v1::RegisterResponse> {
        let registration = registration_from_wire(request.into_inner()).map_err(to_status)?;
        let (lease, view) = self
            .handle
            .register(registration)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::RegisterResponse {
            lease_id: lease.id.to_string(),
            ttl_ms: duration_ms(lease.ttl),
            run: Some(run_view_to_wire(&view)),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> RpcResult<v1::HeartbeatResponse> {
        let lease = lease_from_wire(&request.into_inner().lease_id).map_err(to_status)?;
        let (ttl, view) = self.handle.heartbeat(lease).await.map_err(to_status)?;
        Ok(Response::new(v1::HeartbeatResponse {
            ttl_ms: duration_ms(ttl),
            run: Some(run_view_to_wire(&view)),
        }))
    }

    async fn deregister(
        &self,
        request: Request<v1::DeregisterRequest>,
    ) -> RpcResult<v1::DeregisterResponse> {
        let lease = lease_from_wire(&request.into_inner().lease_id).map_err(to_status)?;
        self.handle.deregister(lease).await.map_err(to_status)?;
        Ok(Response::new(v1::DeregisterResponse {}))
    }

    async fn get_run_state(
        &self,
        _request: Request<v1::GetRunStateRequest>,
    ) -> RpcResult<v1::RunState> {
        let view = self.handle.view().await.map_err(to_status)?;
        Ok(Response::new(run_view_to_wire(&view)))
    }

    async fn list_population(
        &self,
        _request: Request<v1::ListPopulationRequest>,
    ) -> RpcResult<v1::ListPopulationResponse> {
        let members = self.handle.population().await.map_err(to_status)?;
        Ok(Response::new(v1::ListPopulationResponse {
            members: members.iter().map(member_to_wire).collect(),
        }))
    }

    async fn assign_opponents(
        &self,
        request: Request<v1::AssignOpponentsRequest>,
    ) -> RpcResult<v1::AssignOpponentsResponse> {
        let req = request.into_inner();
        let lease = lease_from_wire(&req.lease_id).map_err(to_status)?;
        let count = opponent_count_from_wire(req.count).map_err(to_status)?;
        let opponents = self
            .handle
            .assign_opponents(lease, req.agent_version, count)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::AssignOpponentsResponse {
            opponents: opponents.iter().map(member_to_wire).collect(),
        }))
    }

    async fn report_results(
        &self,
        request: Request<v1::ReportResultsRequest>,
    ) -> RpcResult<v1::ReportResultsResponse> {
        let req = request.into_inner();
        let lease = lease_from_wire(&req.lease_id).map_err(to_status)?;
        let results = results_from_wire(req.results).map_err(to_status)?;
        self.handle
            .report_results(lease, req.report_id, results)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ReportResultsResponse {}))
    }

    async fn publish_checkpoint(
        &self,
        request: Request<Streaming<v1::PublishCheckpointRequest>>,
    ) -> RpcResult<v1::PublishCheckpointResponse> {
        let mut stream = request.into_inner();
        let header = match stream.message().await.map_err(stream_status)? {
            Some(v1::PublishCheckpointRequest {
                kind: Some(Kind::Header(h)),
            }) => publish_header_from_wire(h).map_err(to_status)?,
            Some(_) => return Err(invalid("the first message of a publish must be the header")),
            None => {
                return Err(invalid(
                    "empty publish stream: send the header, then the chunks",
                ));
            }
        };
        if let PublishCheck::Done(done) = self
            .handle
            .check_publish(header.clone())
            .await
            .map_err(to_status)?
        {
            return Ok(Response::new(published_to_wire(&done)));
        }
        let writer = self.receive_chunks(&header, &mut stream).await?;
        let mut staged = match writer {
            Some(writer) => Some(
                blocking("finishing an upload", move || writer.finish())
                    .await
                    .map_err(to_status)?,
            ),
            None => None,
        };
        // Before the version is announced, so that the actors' first downloads find them.
        // Keyed by content: right for these bytes whether or not the publish commits.
        if let Some(s) = staged.as_mut() {
            let digests = s.take_chunk_digests();
            self.digests.insert(s.blob(), MAX_CHUNK_BYTES, digests);
        }
        let published = self
            .handle
            .publish(header, staged)
            .await
            .map_err(to_status)?;
        Ok(Response::new(published_to_wire(&published)))
    }

    async fn fetch_checkpoint(
        &self,
        request: Request<v1::FetchCheckpointRequest>,
    ) -> RpcResult<BoxStream<v1::CheckpointChunk>> {
        let req = request.into_inner();
        let id = blob_id_from_wire(&req.sha256).map_err(to_status)?;
        let (blob, path) = self.handle.blob(id).await.map_err(to_status)?;
        if req.offset > blob.size {
            return Err(invalid(format!(
                "offset {} is past the end of checkpoint {} ({} bytes)",
                req.offset, blob.id, blob.size
            )));
        }
        let chunk = chunk_bytes(req.max_chunk_bytes);
        let digests = self
            .digests
            .get(&blob, &path, chunk)
            .await
            .map_err(to_status)?;
        let (tx, rx) = mpsc::channel(FETCH_BUFFER);
        tokio::spawn(send_blob(path, blob, req.offset, chunk, digests, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch(
        &self,
        _request: Request<v1::WatchRequest>,
    ) -> RpcResult<BoxStream<v1::RunState>> {
        let mut views = self.handle.watch();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let view = run_view_to_wire(&views.borrow_and_update());
                if tx.send(Ok(view)).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = views.changed() => if changed.is_err() { return },
                    _ = stopping.wait_for(|s| *s) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl CoordinatorService {
    /// Writes the upload's chunks as they arrive; `None` when no chunk was sent.
    async fn receive_chunks(
        &self,
        header: &PublishHeader,
        stream: &mut Streaming<v1::PublishCheckpointRequest>,
    ) -> Result<Option<BlobWriter>, Status> {
        let mut writer: Option<BlobWriter> = None;
        while let Some(message) = stream.message().await.map_err(stream_status)? {
            let bytes = match message.kind {
                Some(Kind::Chunk(bytes)) => bytes,
                Some(Kind::Header(_)) => return Err(invalid("a publish has exactly one header")),
                None => return Err(invalid("a publish message holds a header or a chunk")),
            };
            if bytes.len() > MAX_CHUNK_BYTES {
                return Err(invalid(format!(
                    "chunk of {} bytes exceeds the limit of {MAX_CHUNK_BYTES} bytes",
                    bytes.len()
                )));
            }
            let mut w = match writer.take() {
                Some(w) => w,
                None => self.handle.upload_writer().await.map_err(to_status)?,
            };
            let received = w.written() + bytes.len() as u64;
            if received > header.checkpoint.size {
                return Err(invalid(format!(
                    "received {received} bytes, more than the header's size_bytes {}",
                    header.checkpoint.size
                )));
            }
            metrics::counter!(names::CHECKPOINT_BYTES_TOTAL, "direction" => "received")
                .increment(bytes.len() as u64);
            writer = Some(
                blocking("writing an upload", move || {
                    w.write(&bytes)?;
                    Ok::<_, Error>(w)
                })
                .await
                .map_err(to_status)?,
            );
        }
        Ok(writer)
    }
}

/// Streams `blob` from `offset` in chunks of at most `chunk` bytes, each with its sha256:
/// from `digests` (chunk `i` covers `i * chunk ..`) where the offset is on that layout,
/// computed here where it is not (a resume from an unusual offset).
async fn send_blob(
    path: PathBuf,
    blob: BlobRef,
    mut offset: u64,
    chunk: usize,
    digests: Digests,
    tx: mpsc::Sender<Result<v1::CheckpointChunk, Status>>,
) {
    let opened = blocking("opening a checkpoint blob", {
        let path = path.clone();
        move || {
            let mut file = File::open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::UnknownBlob(blob.id.to_string()),
                _ => Error::Io {
                    path: path.clone(),
                    source: e,
                },
            })?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|source| Error::Io { path, source })?;
            Ok::<_, Error>(file)
        }
    })
    .await
    .map_err(to_status);
    let mut file = match opened {
        Ok(file) => file,
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    while offset < blob.size {
        let want = usize::try_from(blob.size - offset)
            .unwrap_or(usize::MAX)
            .min(chunk);
        let path = path.clone();
        let known = offset
            .is_multiple_of(chunk as u64)
            .then(|| usize::try_from(offset / chunk as u64).ok())
            .flatten()
            .and_then(|i| digests.get(i))
            .map(|d| d.to_vec());
        let read = blocking("reading a checkpoint blob", move || {
            let mut data = vec![0u8; want];
            file.read_exact(&mut data)
                .map_err(|source| Error::Io { path, source })?;
            let digest = known.unwrap_or_else(|| Sha256::digest(&data).to_vec());
            Ok::<_, Error>((file, data, digest))
        })
        .await
        .map_err(to_status);
        let (f, data, digest) = match read {
            Ok(read) => read,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        file = f;
        let len = data.len() as u64;
        let message = v1::CheckpointChunk {
            offset,
            data,
            data_sha256: digest,
            total_size: blob.size,
        };
        if tx.send(Ok(message)).await.is_err() {
            return; // the client went away
        }
        metrics::counter!(names::CHECKPOINT_BYTES_TOTAL, "direction" => "sent").increment(len);
        offset += len;
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
