//! The learner service over real loopback sockets, with a real in-process coordinator and
//! a synthetic trajectory client: acks and credits, DUPLICATE, INVALID (the stream goes on),
//! STALE, token auth, a version published after a batch — and a load test: 16 streams into
//! one learner whose training is slower than the intake, with the queue bounded by its
//! capacity, credits respected, overflow acks for a client that ignores them, and resident
//! memory bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arlas_client::CoordinatorClient;
use arlas_coordinator::service::{
    CoordinatorConfig, Listeners as CoordinatorListeners, ServerConfig,
};
use arlas_game::{CorpusOptions, Split};
use arlas_learner::Player;
use arlas_learner::service::synthetic::{Shape, trajectory};
use arlas_learner::service::{Listeners, ServiceConfig};
use arlas_policy::{LoadOptions, ModelSpec, TinyPreset};
use arlas_proto::v1;
use arlas_proto::v1::learner_client::LearnerClient;
use arlas_runtime::auth::{AttachToken, Token};
use prost::Message;
use rand::SeedableRng;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "learner-test-token-0123456789";
const VOCAB: u32 = 1000;

type Client = LearnerClient<InterceptedService<Channel, AttachToken>>;

struct Cluster {
    tmp: tempfile::TempDir,
    coordinator_url: String,
    coordinator_addr: SocketAddr,
    learner: SocketAddr,
    stop_learner: oneshot::Sender<()>,
    stop_coordinator: oneshot::Sender<()>,
    learner_task: JoinHandle<arlas_learner::Result<()>>,
    coordinator_task: JoinHandle<arlas_coordinator::Result<()>>,
}

/// Serves a coordinator on `grpc` over `data` until the returned sender fires.
fn coordinator(
    grpc: TcpListener,
    data: &Path,
) -> (
    oneshot::Sender<()>,
    JoinHandle<arlas_coordinator::Result<()>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(arlas_coordinator::service::run(
        CoordinatorListeners {
            grpc,
            metrics: None,
        },
        ServerConfig {
            data_dir: data.to_path_buf(),
            coordinator: CoordinatorConfig {
                lease_ttl: Duration::from_secs(3),
                ..CoordinatorConfig::default()
            },
            token: Some(Token::parse(TOKEN).unwrap()),
            shutdown_grace: Duration::from_secs(2),
        },
        async {
            let _ = stopped.await;
        },
    ));
    (stop, task)
}

fn corpus() -> arlas_policy::CorpusFn {
    Arc::new(|| {
        arlas_game::corpus(&CorpusOptions {
            episodes: 120,
            seed: 3,
            split: Split::Train,
        })
        .map_err(|e| e.to_string())
    })
}

async fn wait_serving(addr: SocketAddr, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        if let Ok(channel) = endpoint.connect().await {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await;
            if answer.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{service} at {addr} not serving");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Cluster {
    async fn start(tune: impl FnOnce(&mut ServiceConfig)) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_test_writer()
            .try_init();
        let tmp = tempfile::tempdir().unwrap();
        let token = Token::parse(TOKEN).unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let coordinator_addr = grpc.local_addr().unwrap();
        let (stop_coordinator, coordinator_task) =
            coordinator(grpc, &tmp.path().join("coordinator"));
        wait_serving(coordinator_addr, "arlas.v1.Coordinator").await;
        let coordinator_url = format!("http://{coordinator_addr}");

        let mut config = ServiceConfig::new(
            Player::Agent,
            tmp.path().join("learner"),
            coordinator_url.clone(),
            ModelSpec::Tiny(TinyPreset::Tiny2M),
        );
        config.token = Some(token);
        config.load = LoadOptions {
            models_dir: tmp.path().join("models"),
            tiny_corpus: Some(corpus()),
            seed: 1,
            ..LoadOptions::default()
        };
        config.learner.minibatch_size = 64;
        config.shutdown_grace = Duration::from_secs(2);
        tune(&mut config);
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let learner = grpc.local_addr().unwrap();
        let (stop_l, stopped_l) = oneshot::channel::<()>();
        let learner_task = tokio::spawn(arlas_learner::service::run(
            Listeners {
                grpc,
                metrics: None,
            },
            config,
            async {
                let _ = stopped_l.await;
            },
        ));
        wait_serving(learner, "arlas.v1.Learner").await;
        Self {
            tmp,
            coordinator_url,
            coordinator_addr,
            learner,
            stop_learner: stop_l,
            stop_coordinator,
            learner_task,
            coordinator_task,
        }
    }

    async fn client(&self, token: Option<&str>) -> Client {
        let channel = arlas_runtime::client::connect(&format!("http://{}", self.learner))
            .await
            .unwrap();
        let token = token.map(|t| Token::parse(t).unwrap());
        LearnerClient::with_interceptor(channel, AttachToken::new(token.as_ref()))
    }

    async fn coordinator(&self) -> CoordinatorClient {
        CoordinatorClient::connect(&self.coordinator_url, Some(&Token::parse(TOKEN).unwrap()))
            .await
            .unwrap()
    }

    /// Stops the coordinator and starts it again on the same data directory and port.
    async fn restart_coordinator(&mut self) {
        let (stop, _) = oneshot::channel();
        let old = std::mem::replace(&mut self.stop_coordinator, stop);
        let _ = old.send(());
        (&mut self.coordinator_task).await.unwrap().unwrap();
        let grpc = TcpListener::bind(self.coordinator_addr).await.unwrap();
        let (stop, task) = coordinator(grpc, &self.tmp.path().join("coordinator"));
        self.stop_coordinator = stop;
        self.coordinator_task = task;
        wait_serving(self.coordinator_addr, "arlas.v1.Coordinator").await;
    }

    async fn stop(self) {
        let _ = self.stop_learner.send(());
        self.learner_task.await.unwrap().unwrap();
        let _ = self.stop_coordinator.send(());
        self.coordinator_task.await.unwrap().unwrap();
    }
}

/// One open `SubmitTrajectories` stream.
struct Stream {
    tx: mpsc::Sender<v1::SubmitTrajectoryRequest>,
    acks: tonic::Streaming<v1::TrajectoryAck>,
    credits: u32,
}

async fn open(client: &mut Client) -> Stream {
    let (tx, rx) = mpsc::channel(1024);
    let acks = client
        .submit_trajectories(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut stream = Stream {
        tx,
        acks,
        credits: 0,
    };
    let first = stream.acks.next().await.unwrap().unwrap();
    assert_eq!(first.sequence, 0);
    assert_eq!(first.status, v1::AckStatus::Unspecified as i32);
    stream.credits = first.credits;
    stream
}

impl Stream {
    async fn send(&self, lease: &str, sequence: u64, t: v1::Trajectory) {
        self.tx
            .send(v1::SubmitTrajectoryRequest {
                actor_lease_id: lease.into(),
                sequence,
                trajectory: Some(t),
            })
            .await
            .unwrap();
    }

    /// The next acknowledgement (credit updates only change the credits).
    async fn ack(&mut self) -> v1::TrajectoryAck {
        loop {
            let ack = tokio::time::timeout(Duration::from_secs(60), self.acks.next())
                .await
                .expect("an ack within 60 s")
                .unwrap()
                .unwrap();
            self.credits = ack.credits;
            if ack.status != v1::AckStatus::Unspecified as i32 {
                return ack;
            }
        }
    }
}

/// A trajectory of `group` at agent version `version` with the reward `reward`.
fn wire(group: u64, version: u64, reward: f32, shape: &Shape) -> v1::Trajectory {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(group * 1000 + version);
    let mut t = trajectory(&mut rng, shape, group, version, version);
    t.rewards.agent = reward;
    (&t).into()
}

fn small() -> Shape {
    Shape {
        vocab: VOCAB,
        turns: 2,
        prompt_tokens: 12,
        completion_tokens: 6,
    }
}

async fn status(client: &mut Client) -> v1::LearnerStatus {
    client
        .get_learner_status(v1::GetLearnerStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_credits_duplicates_invalid_stale_and_a_published_version() {
    let cluster = Cluster::start(|c| {
        c.queue_capacity = 16;
        c.batch_episodes = 4;
        c.stream_credits = 8;
        c.learner.max_staleness = 0;
    })
    .await;
    let mut coordinator = cluster.coordinator().await;
    // Version 1 is published at start-up.
    wait_until("version 1 at the coordinator", 60, || {
        let mut c = coordinator.clone();
        async move { c.run_state().await.unwrap().versions.agent.version == 1 }
    })
    .await;
    let run = coordinator.run_state().await.unwrap();
    assert_eq!(run.learners.len(), 1);
    assert_eq!(run.learners[0].players, vec![Player::Agent]);

    let mut client = cluster.client(Some(TOKEN)).await;
    let mut s = open(&mut client).await;
    assert_eq!(
        s.credits, 8,
        "the first message grants the stream's credits"
    );
    let shape = small();
    // One group of 3 with different rewards, so the update has a signal.
    for (seq, reward) in [(1, 1.0), (2, -1.0), (3, 0.5)] {
        s.send("actor-a", seq, wire(7, 1, reward, &shape)).await;
        let ack = s.ack().await;
        assert_eq!(
            (ack.sequence, ack.status),
            (seq, v1::AckStatus::Accepted as i32)
        );
        assert!(ack.credits <= 8);
    }
    // Resent: DUPLICATE.
    s.send("actor-a", 2, wire(7, 1, -1.0, &shape)).await;
    let ack = s.ack().await;
    assert_eq!(
        (ack.sequence, ack.status),
        (2, v1::AckStatus::Duplicate as i32)
    );
    // Invalid: a positive log-prob. The stream goes on.
    let mut bad = wire(7, 1, 0.0, &shape);
    bad.agent[0].logprobs[0] = 3.0;
    s.send("actor-a", 4, bad).await;
    let ack = s.ack().await;
    assert_eq!(ack.status, v1::AckStatus::DroppedInvalid as i32);
    assert!(ack.reason.contains("log"), "{}", ack.reason);
    s.send("actor-a", 5, wire(7, 1, -0.5, &shape)).await;
    let ack = s.ack().await;
    assert_eq!(
        (ack.sequence, ack.status),
        (5, v1::AckStatus::Accepted as i32)
    );

    // Four accepted: a batch trains, version 2 is saved and published.
    wait_until("version 2 at the coordinator", 60, || {
        let mut c = coordinator.clone();
        async move { c.run_state().await.unwrap().versions.agent.version >= 2 }
    })
    .await;
    wait_until("the learner to see its publish", 30, || {
        let mut c = client.clone();
        async move { status(&mut c).await.versions[0].checkpoint.is_some() }
    })
    .await;
    let st = status(&mut client).await;
    assert_eq!(st.versions[0].version, 2);
    assert_eq!(st.trained_total, 4);
    assert_eq!(st.accepted_total, 4);
    assert_eq!(st.queue_depth, 0);
    assert_eq!(
        st.versions[0].checkpoint.as_ref().unwrap().sha256,
        coordinator
            .run_state()
            .await
            .unwrap()
            .versions
            .agent
            .checkpoint
            .unwrap()
            .id
            .to_string()
    );
    // Played by version 1, the learner is at 2 with max staleness 0: STALE.
    s.send("actor-a", 6, wire(8, 1, 1.0, &shape)).await;
    let ack = s.ack().await;
    assert_eq!(ack.status, v1::AckStatus::DroppedStale as i32);
    assert!(ack.reason.contains("1 versions behind"), "{}", ack.reason);
    s.send("actor-a", 7, wire(8, 2, 1.0, &shape)).await;
    assert_eq!(s.ack().await.status, v1::AckStatus::Accepted as i32);
    drop(s);
    cluster.stop().await;
}

/// A stream that ends hands its credits to the others at once: with no training to free
/// room (nothing is sent, so no batch fills), a stream that got nothing at open is granted the closed
/// stream's credits (issue 17: stuck or closed streams must not starve the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_streams_credits_go_to_the_others_without_an_update() {
    let cluster = Cluster::start(|c| {
        c.queue_capacity = 8;
        c.batch_episodes = 8;
        c.stream_credits = 8;
    })
    .await;
    let mut client = cluster.client(Some(TOKEN)).await;
    let first = open(&mut client).await;
    assert_eq!(first.credits, 8);
    let mut second = open(&mut client).await;
    assert_eq!(
        second.credits, 0,
        "the room is promised to the first stream"
    );
    drop(first);
    let update = tokio::time::timeout(Duration::from_secs(60), second.acks.next())
        .await
        .expect("a credit update within 60 s")
        .unwrap()
        .unwrap();
    assert_eq!(update.status, v1::AckStatus::Unspecified as i32);
    assert_eq!(update.credits, 8);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_unauthenticated_health_is_open() {
    let cluster = Cluster::start(|_| {}).await;
    for token in [None, Some("wrong-token-but-long-enough-0000")] {
        let mut client = cluster.client(token).await;
        let err = client
            .get_learner_status(v1::GetLearnerStatusRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}");
        let (_tx, rx) = mpsc::channel::<v1::SubmitTrajectoryRequest>(1);
        let err = client
            .submit_trajectories(ReceiverStream::new(rx))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    wait_serving(cluster.learner, "").await;
    cluster.stop().await;
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    bytes: u64,
    by_status: BTreeMap<i32, u64>,
    max_unacked_over_credits: i64,
}

/// One client: sends for `until`, honouring credits unless `greedy`.
async fn load_client(
    mut client: Client,
    id: usize,
    greedy: bool,
    until: Instant,
    shape: Shape,
) -> Counts {
    let mut s = open(&mut client).await;
    let lease = format!("load-actor-{id}");
    let mut counts = Counts::default();
    let mut unacked = 0u32;
    let mut seq = 0u64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(id as u64);
    loop {
        let sending = Instant::now() < until;
        if sending && (greedy || unacked < s.credits) {
            seq += 1;
            let group = ((id as u64) << 32) | (seq / 4);
            let t: v1::Trajectory = (&trajectory(&mut rng, &shape, group, 1, 1)).into();
            let request = v1::SubmitTrajectoryRequest {
                actor_lease_id: lease.clone(),
                sequence: seq,
                trajectory: Some(t),
            };
            counts.bytes += request.encoded_len() as u64;
            counts.sent += 1;
            if !greedy {
                counts.max_unacked_over_credits = counts
                    .max_unacked_over_credits
                    .max(i64::from(unacked) + 1 - i64::from(s.credits));
            }
            s.tx.send(request).await.unwrap();
            unacked += 1;
            // Read whatever acks are ready without waiting.
            while let Ok(Some(Ok(ack))) = tokio::time::timeout(Duration::ZERO, s.acks.next()).await
            {
                s.credits = ack.credits;
                if ack.status != v1::AckStatus::Unspecified as i32 {
                    unacked -= 1;
                    *counts.by_status.entry(ack.status).or_default() += 1;
                }
            }
            continue;
        }
        if unacked == 0 && !sending {
            break;
        }
        // Wait for an ack (or a credit update), or the end of the sending window.
        let wait = if sending {
            until.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(60)
        };
        match tokio::time::timeout(wait, s.acks.next()).await {
            Ok(Some(Ok(ack))) => {
                s.credits = ack.credits;
                if ack.status != v1::AckStatus::Unspecified as i32 {
                    unacked -= 1;
                    *counts.by_status.entry(ack.status).or_default() += 1;
                }
            }
            Ok(other) => panic!("stream {id} ended: {other:?}"),
            Err(_) if sending => {}
            Err(_) => panic!("stream {id}: {unacked} acks missing after 60 s"),
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_streams_never_overfill_a_slow_learner() {
    const CAPACITY: u64 = 256;
    let cluster = Cluster::start(|c| {
        c.queue_capacity = CAPACITY as usize;
        // Training starts only when the queue is full, so the queue stays full while the
        // (slow) update runs: everything beyond is refused.
        c.batch_episodes = CAPACITY as usize;
        c.stream_credits = 32;
        c.learner.max_staleness = 100;
    })
    .await;
    let rss_before = vm_rss_kib();
    let shape = Shape {
        vocab: VOCAB,
        turns: 2,
        prompt_tokens: 48,
        completion_tokens: 16,
    };
    let stop_polling = Arc::new(AtomicBool::new(false));
    let max_depth = Arc::new(AtomicU64::new(0));
    let poller = {
        let mut client = cluster.client(Some(TOKEN)).await;
        let (stop, max_depth) = (stop_polling.clone(), max_depth.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut polls = 0u64;
            let mut full_after = None;
            while !stop.load(Ordering::Relaxed) {
                let st = status(&mut client).await;
                assert!(st.queue_depth <= st.queue_capacity, "{st:?}");
                max_depth.fetch_max(st.queue_depth, Ordering::Relaxed);
                if st.queue_depth == st.queue_capacity && full_after.is_none() {
                    full_after = Some(started.elapsed().as_secs_f64());
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (polls, full_after)
        })
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for id in 0..16 {
        let client = cluster.client(Some(TOKEN)).await;
        // Two of the sixteen ignore their credits.
        tasks.push(tokio::spawn(load_client(client, id, id < 2, until, shape)));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop_polling.store(true, Ordering::Relaxed);
    let (polls, full_after) = poller.await.unwrap();
    let rss_after = vm_rss_kib();

    let sent: u64 = all.iter().map(|c| c.sent).sum();
    let bytes: u64 = all.iter().map(|c| c.bytes).sum();
    let count = |status: v1::AckStatus| -> u64 {
        all.iter()
            .map(|c| c.by_status.get(&(status as i32)).copied().unwrap_or(0))
            .sum()
    };
    let accepted = count(v1::AckStatus::Accepted);
    let overflow = count(v1::AckStatus::DroppedOverflow);
    let greedy_overflow: u64 = all[..2]
        .iter()
        .map(|c| {
            c.by_status
                .get(&(v1::AckStatus::DroppedOverflow as i32))
                .copied()
                .unwrap_or(0)
        })
        .sum();
    let acked: u64 = all.iter().flat_map(|c| c.by_status.values()).sum();
    eprintln!(
        "load: {sent} trajectories in {elapsed:.1} s = {:.0}/s, {:.2} MB/s; accepted {accepted}, overflow {overflow} (greedy clients {greedy_overflow}); max queue depth {} of {CAPACITY} over {polls} polls, full after {full_after:?} s; RSS {} -> {} MiB",
        sent as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        max_depth.load(Ordering::Relaxed),
        rss_before / 1024,
        rss_after / 1024,
    );
    assert_eq!(acked, sent, "every trajectory got exactly one ack");
    assert!(accepted >= CAPACITY, "the queue filled");
    assert!(greedy_overflow > 0, "clients ignoring credits get OVERFLOW");
    for (id, c) in all.iter().enumerate().skip(2) {
        assert!(
            c.max_unacked_over_credits <= 0,
            "client {id} kept to its credits"
        );
        assert_eq!(
            c.by_status.get(&(v1::AckStatus::DroppedOverflow as i32)),
            None,
            "client {id} respected its credits and got OVERFLOW"
        );
    }
    let mut client = cluster.client(Some(TOKEN)).await;
    let st = status(&mut client).await;
    assert!(st.queue_depth <= CAPACITY);
    assert_eq!(st.accepted_total, accepted, "accepted = trained + queued");
    assert!(
        rss_after < rss_before + 768 * 1024,
        "resident memory grew from {rss_before} to {rss_after} KiB"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_gets_the_learner_back_and_streams_keep_working() {
    let mut cluster = Cluster::start(|c| {
        c.batch_episodes = 64;
    })
    .await;
    let registered = |url: String| async move {
        let token = Token::parse(TOKEN).unwrap();
        match CoordinatorClient::connect(&url, Some(&token)).await {
            Ok(mut c) => c.run_state().await.is_ok_and(|r| r.learners.len() == 1),
            Err(_) => false,
        }
    };
    // Registered and its first version published (the learner registers, then publishes).
    let published = |url: String| async move {
        let token = Token::parse(TOKEN).unwrap();
        match CoordinatorClient::connect(&url, Some(&token)).await {
            Ok(mut c) => c
                .run_state()
                .await
                .is_ok_and(|r| r.learners.len() == 1 && r.versions.agent.version == 1),
            Err(_) => false,
        }
    };
    wait_until("the learner's registration and first publish", 30, || {
        published(cluster.coordinator_url.clone())
    })
    .await;
    let mut client = cluster.client(Some(TOKEN)).await;
    let mut s = open(&mut client).await;
    s.send("actor-r", 1, wire(1, 1, 1.0, &small())).await;
    assert_eq!(s.ack().await.status, v1::AckStatus::Accepted as i32);

    // Leases are not persisted: the learner's heartbeat gets NOT_FOUND and it registers
    // again. Its stream never noticed.
    cluster.restart_coordinator().await;
    s.send("actor-r", 2, wire(1, 1, -1.0, &small())).await;
    assert_eq!(s.ack().await.status, v1::AckStatus::Accepted as i32);
    wait_until("the learner to register again", 30, || {
        registered(cluster.coordinator_url.clone())
    })
    .await;
    let run = cluster.coordinator().await.run_state().await.unwrap();
    assert_eq!(
        run.versions.agent.version, 1,
        "the published version survived the restart"
    );
    drop(s);
    cluster.stop().await;
}
