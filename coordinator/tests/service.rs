//! The coordinator service over real loopback sockets (ports from the OS): auth, input
//! validation and size limits, publish → fetch with resume, chunk corruption, leases,
//! watch, health, reflection and metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arlas_client::{CoordinatorClient, Error, blob_ref_of_file, partial_path};
use arlas_coordinator::service::{
    CoordinatorConfig, DEFAULT_SHUTDOWN_GRACE, Listeners, ServerConfig,
};
use arlas_core::archive::pack_to_file;
use arlas_core::{LeaseId, Player, PublishHeader, Registration};
use arlas_proto::v1;
use arlas_proto::v1::coordinator_client::CoordinatorClient as RawClient;
use arlas_runtime::auth::Token;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "test-token-0123456789abcdef";

struct Server {
    grpc: SocketAddr,
    metrics: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<arlas_coordinator::Result<()>>,
}

impl Server {
    async fn start(dir: &Path, token: Option<&str>, config: CoordinatorConfig) -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let config = ServerConfig {
            data_dir: dir.to_path_buf(),
            coordinator: config,
            token: token.map(|t| Token::parse(t).unwrap()),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        };
        let task = tokio::spawn(arlas_coordinator::service::run(
            Listeners {
                grpc,
                metrics: Some(metrics),
            },
            config,
            async {
                let _ = stopped.await;
            },
        ));
        let server = Self {
            grpc: grpc_addr,
            metrics: metrics_addr,
            stop: Some(stop),
            task,
        };
        server.wait_serving().await;
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Polls gRPC health (no token needed) until SERVING, with a deadline.
    async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(channel) = Channel::from_shared(self.url()).unwrap().connect().await {
                let answer = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if answer.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "coordinator not serving within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn client(&self) -> CoordinatorClient {
        CoordinatorClient::connect(&self.url(), Some(&Token::parse(TOKEN).unwrap()))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("coordinator stops within 20 s")
            .unwrap()
            .unwrap();
    }
}

fn bearer<T>(mut request: tonic::Request<T>, token: &str) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn call<T>(message: T) -> tonic::Request<T> {
    bearer(tonic::Request::new(message), TOKEN)
}

async fn raw(server: &Server) -> RawClient<Channel> {
    RawClient::connect(server.url())
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20)
}

/// A checkpoint directory with `size` bytes of pseudo-random weights, packed to a blob file.
fn checkpoint_blob(dir: &Path, name: &str, size: usize) -> PathBuf {
    let ckpt = dir.join(name);
    std::fs::create_dir_all(&ckpt).unwrap();
    let mut weights = Vec::with_capacity(size + 4);
    let mut x: u32 = 0x9e37_79b9 ^ u32::try_from(name.len()).unwrap();
    while weights.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        weights.extend_from_slice(&x.to_le_bytes());
    }
    weights.truncate(size);
    std::fs::write(ckpt.join("model.safetensors"), &weights).unwrap();
    std::fs::write(
        ckpt.join("config.json"),
        format!("{{\"name\": \"{name}\"}}"),
    )
    .unwrap();
    let blob = dir.join(format!("{name}.blob"));
    pack_to_file(&ckpt, &blob).unwrap();
    blob
}

async fn learner(client: &mut CoordinatorClient) -> LeaseId {
    let (lease, _) = client
        .register(&Registration::Learner {
            name: "learner-0".into(),
            url: "http://127.0.0.1:50052".into(),
            players: vec![Player::Agent, Player::Attacker],
        })
        .await
        .unwrap();
    lease.id
}

#[tokio::test]
async fn missing_or_wrong_token_is_unauthenticated_and_health_needs_none() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), Some(TOKEN), CoordinatorConfig::default()).await;
    let mut client = raw(&server).await;
    let missing = client
        .get_run_state(v1::GetRunStateRequest {})
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    let wrong = client
        .get_run_state(bearer(
            tonic::Request::new(v1::GetRunStateRequest {}),
            "wrong-token-0123456789abcdef",
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let ok = client
        .get_run_state(call(v1::GetRunStateRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.agent.unwrap().version, 0);

    // Reflection is on, behind the token like every arlas rpc.
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let list = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let denied = match reflection
        .server_reflection_info(tokio_stream::iter(vec![list()]))
        .await
    {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(denied.code(), Code::Unauthenticated);
    let mut answers = reflection
        .server_reflection_info(call(tokio_stream::iter(vec![list()])))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(services)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("reflection did not list services");
    };
    let names: Vec<_> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"arlas.v1.Coordinator"), "{names:?}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_rejected_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), Some(TOKEN), CoordinatorConfig::default()).await;
    let mut client = raw(&server).await;

    let register = |role: i32, name: &str, url: &str, players: Vec<i32>| v1::RegisterRequest {
        role,
        name: name.into(),
        url: url.into(),
        players,
    };
    for (what, req) in [
        ("no role", register(0, "a", "", vec![])),
        ("unknown role", register(9, "a", "", vec![])),
        ("no name", register(1, "", "", vec![])),
        (
            "learner without players",
            register(2, "l", "http://x:1", vec![]),
        ),
        (
            "learner with a file url",
            register(2, "l", "file:///etc", vec![1]),
        ),
    ] {
        let err = client.register(call(req)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(!err.message().is_empty());
    }
    for bad in ["../../../etc/passwd", "ABCDEF", &"a".repeat(65)] {
        let err = client
            .fetch_checkpoint(call(v1::FetchCheckpointRequest {
                sha256: bad.to_string(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
    }
    let err = client
        .fetch_checkpoint(call(v1::FetchCheckpointRequest {
            sha256: "a".repeat(64),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .heartbeat(call(v1::HeartbeatRequest {
            lease_id: "0".repeat(32),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // A publish whose first message is not a header, and one with a 2 MiB chunk.
    let mut typed = server.client().await;
    let lease = learner(&mut typed).await;
    let chunk = |n: usize| v1::PublishCheckpointRequest {
        kind: Some(v1::publish_checkpoint_request::Kind::Chunk(vec![0; n])),
    };
    let err = client
        .publish_checkpoint(call(tokio_stream::iter(vec![chunk(3)])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let header = v1::PublishCheckpointRequest {
        kind: Some(v1::publish_checkpoint_request::Kind::Header(
            v1::PublishHeader {
                lease_id: lease.to_string(),
                player: v1::Player::Agent.into(),
                version: 1,
                sha256: "b".repeat(64),
                size_bytes: 4 << 20,
                ..Default::default()
            },
        )),
    };
    let err = client
        .publish_checkpoint(call(tokio_stream::iter(vec![
            header.clone(),
            chunk(2 << 20),
        ])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("exceeds the limit"), "{err:?}");
    // A message over the 8 MiB limit inside a stream: INVALID_ARGUMENT too.
    let err = client
        .publish_checkpoint(call(tokio_stream::iter(vec![header, chunk(9 << 20)])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A unary message over the limit is refused by tonic's framing (OUT_OF_RANGE).
    let err = client
        .register(call(register(1, &"x".repeat(9 << 20), "", vec![])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");

    // Bytes that are not a protobuf message at all.
    let err = raw_garbage(&server, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("malformed protobuf"), "{err:?}");

    // Still serving.
    assert_eq!(typed.run_state().await.unwrap().versions.agent.version, 0);
    server.stop().await;
}

/// Sends `bytes` as the body of a Register call, bypassing protobuf encoding.
async fn raw_garbage(server: &Server, bytes: &'static [u8]) -> tonic::Status {
    use prost::bytes::BufMut;
    use tonic::codec::{Codec, EncodeBuf, Encoder};

    struct RawBytes;
    struct RawEncoder;
    impl Encoder for RawEncoder {
        type Item = &'static [u8];
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Self::Item,
            dst: &mut EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            dst.put_slice(item);
            Ok(())
        }
    }
    impl Codec for RawBytes {
        type Encode = &'static [u8];
        type Decode = v1::RegisterResponse;
        type Encoder = RawEncoder;
        type Decoder = tonic_prost::ProstDecoder<v1::RegisterResponse>;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> Self::Decoder {
            tonic_prost::ProstDecoder::default()
        }
    }
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        call(bytes),
        tonic::codegen::http::uri::PathAndQuery::from_static("/arlas.v1.Coordinator/Register"),
        RawBytes,
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn publish_then_fetch_round_trips_with_resume_and_watchers_see_the_version() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, Some(TOKEN), CoordinatorConfig::default()).await;
    let mut client = server.client().await;
    let mut watch = client.watch().await.unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.versions.agent.version, 0);

    let lease = learner(&mut client).await;
    let blob_file = checkpoint_blob(tmp.path(), "agent-v1", (3 << 20) + 12345);
    let blob = blob_ref_of_file(&blob_file).unwrap();
    let header = PublishHeader {
        lease: lease.clone(),
        player: Player::Agent,
        version: 1,
        checkpoint: blob.clone(),
        join_population: false,
        iteration: 1,
    };
    let published = client.publish_file(&header, &blob_file).await.unwrap();
    assert_eq!(published.version.version, 1);
    assert_eq!(published.version.checkpoint.as_ref(), Some(&blob));
    // Publishing the same thing again is a no-op.
    assert_eq!(
        client.publish_file(&header, &blob_file).await.unwrap(),
        published
    );

    // The watcher sees version 1 (possibly after the learner's registration).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = tokio::time::timeout_at(deadline, watch.next())
            .await
            .expect("watch pushes the new version")
            .unwrap()
            .unwrap();
        if view.versions.agent.version == 1 {
            assert!(view.revision > first.revision);
            break;
        }
    }

    let original = std::fs::read(&blob_file).unwrap();
    let dest = tmp.path().join("fetched.blob");
    let report = client.fetch_to_file(&blob, &dest).await.unwrap();
    assert_eq!(report.resumed_from, 0);
    assert_eq!(report.received, blob.size);
    assert_eq!(std::fs::read(&dest).unwrap(), original);

    // An interrupted download resumes where it stopped.
    let resumed = tmp.path().join("resumed.blob");
    let cut = (1 << 20) + 777;
    std::fs::write(partial_path(&resumed), &original[..cut]).unwrap();
    let report = client.fetch_to_file(&blob, &resumed).await.unwrap();
    assert_eq!(report.resumed_from, cut as u64);
    assert_eq!(report.received, blob.size - cut as u64);
    assert_eq!(std::fs::read(&resumed).unwrap(), original);
    assert!(!partial_path(&resumed).exists());

    // Raw fetch from an offset: chunks start there, carry their checksum and the size. A
    // request for 1-byte chunks gets the 64 KiB minimum (tiny chunks would cost the
    // coordinator 32 bytes of digest per byte of the blob).
    let mut raw_client = raw(&server).await;
    let mut stream = raw_client
        .fetch_checkpoint(call(v1::FetchCheckpointRequest {
            sha256: blob.id.to_string(),
            offset: 1000,
            max_chunk_bytes: 1,
        }))
        .await
        .unwrap()
        .into_inner();
    let chunk = stream.message().await.unwrap().unwrap();
    let min = arlas_proto::limits::MIN_CHUNK_BYTES;
    assert_eq!(
        (chunk.offset, chunk.data.len(), chunk.total_size),
        (1000, min, blob.size)
    );
    assert_eq!(chunk.data, original[1000..1000 + min]);
    assert_eq!(chunk.data_sha256, Sha256::digest(&chunk.data).to_vec());
    drop(stream); // a download left unread would hold the graceful shutdown until its grace

    // An attacker checkpoint joins the population and is listed and assigned.
    let attacker_file = checkpoint_blob(tmp.path(), "attacker-v1", 5000);
    let attacker = blob_ref_of_file(&attacker_file).unwrap();
    let published = client
        .publish_file(
            &PublishHeader {
                player: Player::Attacker,
                checkpoint: attacker.clone(),
                join_population: true,
                ..header.clone()
            },
            &attacker_file,
        )
        .await
        .unwrap();
    let member = published.member.unwrap();
    assert_eq!(member.id, "attacker-0000");
    assert_eq!(
        client.population().await.unwrap(),
        std::slice::from_ref(&member)
    );
    assert!(
        data.join("population/attacker-0000/model.safetensors")
            .is_file()
    );
    let (actor, _) = client
        .register(&Registration::Actor {
            name: "actor-0".into(),
        })
        .await
        .unwrap();
    let picks = client.assign_opponents(&actor.id, 0, 3).await.unwrap();
    assert_eq!(picks, vec![member; 3]);

    // Bytes that do not match the header are refused and nothing becomes visible.
    let other = checkpoint_blob(tmp.path(), "agent-v2", 4000);
    let err = client
        .publish_file(
            &PublishHeader {
                version: 2,
                ..header.clone()
            },
            &other,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rpc {
                code: Code::InvalidArgument,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(client.run_state().await.unwrap().versions.agent.version, 1);
    let conflicting = PublishHeader {
        checkpoint: blob_ref_of_file(&other).unwrap(),
        ..header
    };
    let err = client.publish_file(&conflicting, &other).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rpc {
                code: Code::AlreadyExists,
                ..
            }
        ),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn leases_expire_and_the_metrics_endpoint_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let config = CoordinatorConfig {
        lease_ttl: Duration::from_millis(400),
        ..CoordinatorConfig::default()
    };
    let server = Server::start(tmp.path(), None, config).await;
    let mut client = CoordinatorClient::connect(&server.url(), None)
        .await
        .unwrap();
    let (lease, view) = client
        .register(&Registration::Actor {
            name: "actor-0".into(),
        })
        .await
        .unwrap();
    assert_eq!(lease.ttl, Duration::from_millis(400));
    assert_eq!(view.connected_actors, 1);
    let (_, view) = client.heartbeat(&lease.id).await.unwrap();
    assert_eq!(view.connected_actors, 1);

    let (status, body) = arlas_runtime::http::get(server.metrics, "/healthz")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Other tests in this process share the recorder: look for this server's labels.
    let (_, body) = arlas_runtime::http::get(server.metrics, "/metrics")
        .await
        .unwrap();
    assert!(body.contains("role=\"coordinator\""), "{body}");
    assert!(
        body.contains("# TYPE arlas_connected_actors gauge"),
        "{body}"
    );
    assert!(
        body.contains("arlas_policy_version{player=\"agent\"}"),
        "{body}"
    );

    // Silence: the lease ends and the actor is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.run_state().await.unwrap().connected_actors != 0 {
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = client.heartbeat(&lease.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rpc {
                code: Code::NotFound,
                ..
            }
        ),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn listening_beyond_loopback_without_a_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let grpc = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = arlas_coordinator::service::run(
        Listeners {
            grpc,
            metrics: None,
        },
        ServerConfig {
            data_dir: tmp.path().to_path_buf(),
            coordinator: CoordinatorConfig::default(),
            token: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("without a token"), "{err}");
}

mod corruption {
    //! A stand-in coordinator whose FetchCheckpoint flips a byte in some chunks (keeping
    //! the original checksum), to check that the real client notices and fetches again.
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tonic::codegen::BoxStream;
    use tonic::{Request, Response, Status};

    struct Corrupting {
        blob: Vec<u8>,
        /// Corrupted chunks still to serve at offset 1 MiB before good ones.
        bad_left: Arc<AtomicU32>,
    }

    #[tonic::async_trait]
    impl v1::coordinator_server::Coordinator for Corrupting {
        async fn fetch_checkpoint(
            &self,
            request: Request<v1::FetchCheckpointRequest>,
        ) -> Result<Response<BoxStream<v1::CheckpointChunk>>, Status> {
            let offset = usize::try_from(request.into_inner().offset).unwrap();
            let mut chunks = Vec::new();
            for (i, data) in self.blob[offset..].chunks(1 << 20).enumerate() {
                let at = offset + i * (1 << 20);
                let mut sent = data.to_vec();
                let digest = Sha256::digest(data).to_vec();
                if at == 1 << 20
                    && self
                        .bad_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                {
                    sent[17] ^= 0x40;
                }
                chunks.push(Ok(v1::CheckpointChunk {
                    offset: at as u64,
                    data: sent,
                    data_sha256: digest,
                    total_size: self.blob.len() as u64,
                }));
            }
            Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
        }
    }

    async fn serve(blob: Vec<u8>, bad: u32) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = v1::coordinator_server::CoordinatorServer::new(Corrupting {
            blob,
            bad_left: Arc::new(AtomicU32::new(bad)),
        })
        .max_encoding_message_size(8 << 20);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }

    #[tokio::test]
    async fn a_corrupted_chunk_is_detected_and_fetched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let blob_file = checkpoint_blob(tmp.path(), "ckpt", 3 << 20);
        let bytes = std::fs::read(&blob_file).unwrap();
        let blob = blob_ref_of_file(&blob_file).unwrap();

        let mut client = CoordinatorClient::connect(&serve(bytes.clone(), 1).await, None)
            .await
            .unwrap();
        let dest = tmp.path().join("out.blob");
        let report = client.fetch_to_file(&blob, &dest).await.unwrap();
        assert_eq!(report.corrupted_chunks, 1);
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);

        // A link that corrupts every time: the client gives up with a clear error and
        // keeps the good bytes it has for a later resume.
        let mut client = CoordinatorClient::connect(&serve(bytes, u32::MAX).await, None)
            .await
            .unwrap();
        let dest = tmp.path().join("never.blob");
        let err = client.fetch_to_file(&blob, &dest).await.unwrap_err();
        assert!(
            matches!(err, Error::ChunkCorrupted { offset, .. } if offset == 1 << 20),
            "{err}"
        );
        assert!(!dest.exists());
        assert_eq!(
            std::fs::metadata(partial_path(&dest)).unwrap().len(),
            1 << 20
        );
    }
}
