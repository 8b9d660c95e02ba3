//! The actor node against a real in-process coordinator (loopback, ports from the OS) and
//! two in-test `arlas.v1.Learner` doubles (one per player) that record what they receive
//! and acknowledge by the credit protocol. Tiny random-init models, short episodes.
//!
//! Checked: both first checkpoints are fetched once (the population member that shares the
//! attacker's blob is a cache hit), rounds send groups of G with unique ids and the versions
//! that played them, credits bound the unacknowledged, a newly published agent version is
//! picked up without restart, a broken learner stream is followed by re-sends with the same
//! keys (answered DUPLICATE), and the agent phase's results reach the payoff matrix.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arlas_actor::RolloutConfig;
use arlas_actor::node::{NodeConfig, NodeReport};
use arlas_actor::round::RoundShape;
use arlas_client::CoordinatorClient;
use arlas_coordinator::PayoffMatrix;
use arlas_coordinator::service::{
    CoordinatorConfig, DEFAULT_SHUTDOWN_GRACE, Listeners, ServerConfig,
};
use arlas_core::archive::pack_to_file;
use arlas_core::{LeaseId, Player, PublishHeader, Registration, Trajectory};
use arlas_game::{CorpusOptions, Split, corpus};
use arlas_policy::{ChatFormat, Device, LoadOptions, Policy, TinyPreset, build_tiny, save_policy};
use arlas_proto::v1;
use arlas_proto::v1::learner_server::{Learner, LearnerServer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

const CREDITS: u32 = 3;
const G: usize = 2;

/// What a learner double saw.
#[derive(Default)]
struct Seen {
    /// Every request in arrival order, resends included: (lease, sequence, trajectory).
    requests: Vec<(String, u64, v1::Trajectory)>,
    /// Keys answered DUPLICATE.
    duplicates: Vec<(String, u64)>,
    /// Largest number of unacknowledged trajectories on one stream.
    max_outstanding: u32,
    streams: u32,
}

#[derive(Clone, Default)]
struct Double {
    seen: Arc<Mutex<Seen>>,
    /// Break the next stream after one more trajectory arrives (without acking it).
    break_next: Arc<AtomicBool>,
}

type AckStream = Pin<Box<dyn Stream<Item = Result<v1::TrajectoryAck, Status>> + Send>>;

#[tonic::async_trait]
impl Learner for Double {
    async fn submit_trajectories(
        &self,
        request: Request<Streaming<v1::SubmitTrajectoryRequest>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let me = self.clone();
        me.seen.lock().unwrap().streams += 1;
        tokio::spawn(async move {
            let grant = v1::TrajectoryAck {
                sequence: 0,
                credits: CREDITS,
                ..Default::default()
            };
            tx.send(Ok(grant)).await.unwrap();
            let mut known: HashSet<(String, u64)> = me
                .seen
                .lock()
                .unwrap()
                .requests
                .iter()
                .map(|(l, s, _)| (l.clone(), *s))
                .collect();
            // Acks trail by a little so that the actor has several in flight.
            let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<v1::TrajectoryAck>();
            let outstanding = Arc::new(std::sync::atomic::AtomicU32::new(0));
            let (out2, tx2) = (outstanding.clone(), tx.clone());
            tokio::spawn(async move {
                while let Some(ack) = ack_rx.recv().await {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    out2.fetch_sub(1, Ordering::SeqCst);
                    if tx2.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(r)) = inbound.next().await {
                let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
                let key = (r.actor_lease_id.clone(), r.sequence);
                let duplicate = !known.insert(key.clone());
                {
                    let mut seen = me.seen.lock().unwrap();
                    seen.max_outstanding = seen.max_outstanding.max(now);
                    seen.requests
                        .push((key.0.clone(), key.1, r.trajectory.clone().unwrap()));
                    if duplicate {
                        seen.duplicates.push(key.clone());
                    }
                }
                if me.break_next.swap(false, Ordering::SeqCst) {
                    let _ = tx
                        .send(Err(Status::unavailable("the learner broke the stream")))
                        .await;
                    return;
                }
                let status = if duplicate {
                    v1::AckStatus::Duplicate
                } else {
                    v1::AckStatus::Accepted
                };
                let _ = ack_tx.send(v1::TrajectoryAck {
                    sequence: r.sequence,
                    status: status.into(),
                    reason: String::new(),
                    credits: CREDITS,
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_learner_status(
        &self,
        _request: Request<v1::GetLearnerStatusRequest>,
    ) -> Result<Response<v1::LearnerStatus>, Status> {
        Ok(Response::new(v1::LearnerStatus::default()))
    }
}

async fn serve_double(double: Double) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LearnerServer::new(double))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// A learner double per player, each served on its own socket and registered.
async fn register_doubles(client: &mut CoordinatorClient) -> ([Double; 2], Vec<LeaseId>) {
    let doubles = [Double::default(), Double::default()];
    let mut leases = Vec::new();
    for (player, double) in Player::ALL.into_iter().zip(&doubles) {
        let addr = serve_double(double.clone()).await;
        let (lease, _) = client
            .register(&Registration::Learner {
                name: format!("{player}-double"),
                url: format!("http://{addr}"),
                players: vec![player],
            })
            .await
            .unwrap();
        leases.push(lease.id);
    }
    (doubles, leases)
}

/// Three tiny checkpoints with distinct weights: agent v1, attacker v1, agent v2.
fn checkpoints(root: &Path) -> [PathBuf; 3] {
    let texts = corpus(&CorpusOptions {
        episodes: 60,
        seed: 3,
        split: Split::Train,
    })
    .unwrap();
    let base = build_tiny(
        TinyPreset::Tiny2M,
        texts.into_iter(),
        5,
        &root.join("agent-1"),
    )
    .unwrap();
    let mut dirs = vec![root.join("agent-1")];
    for (name, seed) in [("attacker-1", 6), ("agent-2", 7)] {
        let policy = Policy::random(
            base.config(),
            base.tokenizer().clone(),
            ChatFormat::Tiny,
            &Device::Cpu,
            &LoadOptions {
                seed,
                ..LoadOptions::default()
            },
            TinyPreset::Tiny2M.name(),
        )
        .unwrap();
        save_policy(&policy, &root.join(name)).unwrap();
        dirs.push(root.join(name));
    }
    dirs.try_into().unwrap()
}

async fn publish(
    client: &mut CoordinatorClient,
    lease: &LeaseId,
    player: Player,
    version: u64,
    dir: &Path,
) -> String {
    let blob = dir.with_extension("blob");
    let checkpoint = pack_to_file(dir, &blob).unwrap();
    let id = checkpoint.id.to_string();
    client
        .publish_file(
            &PublishHeader {
                lease: lease.clone(),
                player,
                version,
                checkpoint,
                join_population: player == Player::Attacker,
                iteration: u32::try_from(version).unwrap(),
            },
            &blob,
        )
        .await
        .unwrap();
    id
}

async fn until(what: &str, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn trajectories(double: &Double) -> Vec<(String, u64, v1::Trajectory)> {
    double.seen.lock().unwrap().requests.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_plays_sends_swaps_versions_resends_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = checkpoints(tmp.path());

    // The coordinator.
    let data = tmp.path().join("coordinator");
    let (url, stop_coordinator, coordinator) = start_coordinator(data.clone()).await;

    // A learner double per player, registered, each publishing its player's version 1.
    let mut client = CoordinatorClient::connect(&url, None).await.unwrap();
    let (doubles, leases) = register_doubles(&mut client).await;
    let [agent, attacker] = &doubles;
    let agent_v1 = publish(&mut client, &leases[0], Player::Agent, 1, &dirs[0]).await;
    let attacker_v1 = publish(&mut client, &leases[1], Player::Attacker, 1, &dirs[1]).await;

    // The actor.
    let cache = tmp.path().join("cache");
    let mut rollout = RolloutConfig::default();
    rollout.game.max_turns = 2;
    rollout.agent_sampling.max_new_tokens = 12;
    rollout.attacker_sampling.max_new_tokens = 12;
    rollout.batch_size = 8;
    let config = NodeConfig {
        coordinator: url.clone(),
        token: None,
        name: "actor-under-test".into(),
        cache_dir: cache.clone(),
        cache_keep: 2,
        models_dir: tmp.path().join("models"),
        device: Device::Cpu,
        shape: RoundShape {
            tasks: 2,
            group_size: G,
        },
        rollout,
        seed: 11,
        sync: false,
        sync_timeout: Duration::from_secs(600),
        max_pending: 64,
        episodes: None,
    };
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let (stop_actor, actor_stopped) = oneshot::channel::<()>();
    let actor = tokio::spawn(arlas_actor::node::run(
        config.clone(),
        builtin(&config),
        Some(metrics),
        async {
            let _ = actor_stopped.await;
        },
    ));

    let deadline = Instant::now() + Duration::from_secs(60);
    until("two rounds at both learners", deadline, || {
        trajectories(agent).len() >= 2 * 2 * G && trajectories(attacker).len() >= 2 * 2 * G
    })
    .await;

    let (code, _) = arlas_runtime::http::get(metrics_addr, "/healthz")
        .await
        .unwrap();
    assert_eq!(code, 200, "ready once rounds are played");
    let (_, text) = arlas_runtime::http::get(metrics_addr, "/metrics")
        .await
        .unwrap();
    for name in [
        "arlas_episodes_total",
        "arlas_tokens_sampled_total",
        "arlas_task_success_rate",
        "arlas_policy_version",
        "arlas_checkpoint_broadcast_seconds_bucket",
        "arlas_actor_unacked_trajectories",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }

    // A new agent version is picked up between rounds, without restart.
    publish(&mut client, &leases[0], Player::Agent, 2, &dirs[2]).await;
    until("trajectories of agent version 2", deadline, || {
        trajectories(agent)
            .iter()
            .any(|(_, _, t)| t.agent_version == 2)
    })
    .await;

    // The attacker learner's stream breaks with trajectories in flight: they are re-sent
    // on a new stream with their keys, and answered DUPLICATE where already received.
    let before = trajectories(attacker).len();
    attacker.break_next.store(true, Ordering::SeqCst);
    until("a re-send after the broken stream", deadline, || {
        let seen = attacker.seen.lock().unwrap();
        seen.streams >= 2 && !seen.duplicates.is_empty()
    })
    .await;
    until(
        "attacker trajectories after the reconnect",
        deadline,
        || trajectories(attacker).len() >= before + 2 * G,
    )
    .await;

    stop_actor.send(()).unwrap();
    let report: NodeReport = actor.await.unwrap().unwrap();

    // A restarted actor on the same cache fetches nothing, and `episodes` stops it once
    // that many were played and acknowledged.
    let again = NodeConfig {
        episodes: Some(2 * G as u64),
        name: "actor-restarted".into(),
        ..config.clone()
    };
    let env = builtin(&again);
    let restarted = arlas_actor::node::run(again, env, None, std::future::pending())
        .await
        .unwrap();
    assert!(restarted.fetched.is_empty(), "{restarted:?}");
    assert!(restarted.episodes >= 2 * G as u64);
    for status in restarted.links.values() {
        assert!(status.idle(), "{restarted:?}");
        assert!(status.counts.accepted >= G as u64, "{restarted:?}");
    }
    // `sync`: after a round, nothing more until both players moved past its versions.
    let before = trajectories(agent).len();
    let one_round = 2 * G;
    let (stop_sync, sync_stopped) = oneshot::channel::<()>();
    let lockstep = tokio::spawn(arlas_actor::node::run(
        NodeConfig {
            sync: true,
            name: "actor-sync".into(),
            ..config.clone()
        },
        builtin(&config),
        None,
        async {
            let _ = sync_stopped.await;
        },
    ));
    until("the lock-step actor's first round", deadline, || {
        trajectories(agent).len() >= before + one_round
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        trajectories(agent).len(),
        before + one_round,
        "a second round before new versions"
    );
    publish(&mut client, &leases[0], Player::Agent, 3, &dirs[0]).await;
    publish(&mut client, &leases[1], Player::Attacker, 2, &dirs[2]).await;
    until(
        "the lock-step actor's round on the new versions",
        deadline,
        || {
            let t = trajectories(agent);
            t.len() >= before + 2 * one_round && t.iter().any(|(_, _, t)| t.agent_version == 3)
        },
    )
    .await;
    until(
        "attacker version 2 at the attacker learner",
        deadline,
        || {
            trajectories(attacker)
                .iter()
                .any(|(_, _, t)| t.attacker_version == 2 && t.agent_version == 3)
        },
    )
    .await;
    stop_sync.send(()).unwrap();
    lockstep.await.unwrap().unwrap();

    // A learner that never publishes again does not stop a lock-step actor for good: after
    // the sync timeout the next round plays the current versions.
    let before = trajectories(agent).len();
    let patient = arlas_actor::node::run(
        NodeConfig {
            sync: true,
            sync_timeout: Duration::from_secs(1),
            name: "actor-sync-timeout".into(),
            // Two rounds: each plays `one_round` agent and as many attacker episodes.
            episodes: Some(4 * one_round as u64),
            ..config.clone()
        },
        builtin(&config),
        None,
        std::future::pending(),
    );
    let waited = tokio::time::timeout(Duration::from_secs(120), patient)
        .await
        .expect("two rounds without new versions")
        .unwrap();
    assert!(waited.rounds >= 2, "{waited:?}");
    assert!(trajectories(agent).len() >= before + 2 * one_round);

    let _ = stop_coordinator.send(());
    coordinator.await.unwrap().unwrap();

    // Each blob fetched once; the population member (same blob as attacker v1) was a hit.
    let agent_v2 = arlas_core::archive::blob_ref_of_dir(&dirs[2])
        .unwrap()
        .id
        .to_string();
    let mut fetched = report.fetched.clone();
    fetched.sort();
    let mut expected = vec![agent_v1.clone(), attacker_v1.clone(), agent_v2.clone()];
    expected.sort();
    assert_eq!(fetched, expected, "{report:?}");
    assert!(
        report.cache.get("hit").copied().unwrap_or(0) >= 1,
        "{report:?}"
    );
    for id in &expected {
        assert!(
            cache
                .join("checkpoints")
                .join(id)
                .join("config.json")
                .is_file()
        );
    }
    assert!(report.rounds >= 3, "{report:?}");

    // Credits were respected on every stream.
    for d in &doubles {
        let seen = d.seen.lock().unwrap();
        assert!(
            seen.max_outstanding <= CREDITS,
            "{} unacknowledged with {CREDITS} credits",
            seen.max_outstanding
        );
    }

    // Groups: G consecutive episodes of one task and opponent; ids unique everywhere;
    // a re-send is the same trajectory under the same key.
    let mut all_groups = BTreeSet::new();
    for (d, phase) in [(agent, "agent"), (attacker, "attacker")] {
        let mut by_key: BTreeMap<(String, u64), v1::Trajectory> = BTreeMap::new();
        let mut firsts = Vec::new();
        for (lease, seq, t) in trajectories(d) {
            match by_key.get(&(lease.clone(), seq)) {
                Some(earlier) => assert_eq!(earlier, &t, "a re-send changed the trajectory"),
                None => {
                    by_key.insert((lease, seq), t.clone());
                    firsts.push(t);
                }
            }
        }
        let mut groups: BTreeMap<u64, Vec<Trajectory>> = BTreeMap::new();
        for t in firsts {
            let t = Trajectory::try_from(t).expect("valid on the wire");
            groups.entry(t.group).or_default().push(t);
        }
        for (group, members) in &groups {
            assert!(
                members.len() <= G,
                "{phase} group {group} has {}",
                members.len()
            );
            assert!(all_groups.insert(*group), "group {group} in both phases");
            let first = &members[0];
            for t in members {
                assert_eq!(
                    (&t.spec, &t.opponent, t.agent_version, t.attacker_version),
                    (
                        &first.spec,
                        &first.opponent,
                        first.agent_version,
                        first.attacker_version
                    )
                );
            }
            if phase == "attacker" {
                assert_eq!(first.opponent, "current");
                assert!(first.attacker_version == 1 || first.attacker_version == 2);
            } else {
                assert_ne!(first.opponent, "current", "the population is not empty");
                assert!((1..=3).contains(&first.agent_version));
            }
        }
        let complete = groups.values().filter(|m| m.len() == G).count();
        assert!(complete >= 2, "{phase}: {complete} complete groups");
    }
    assert!(!attacker.seen.lock().unwrap().duplicates.is_empty());

    // The agent phase's games reached the payoff matrix.
    let payoff: PayoffMatrix =
        serde_json::from_slice(&std::fs::read(data.join("payoff.json")).unwrap()).unwrap();
    let games: u64 = payoff
        .agent_versions()
        .into_iter()
        .flat_map(|v| payoff.attackers().into_iter().map(move |a| (v, a)))
        .map(|(v, a)| payoff.get(v, &a).games)
        .sum();
    assert!(games >= 2 * 2 * G as u64, "payoff holds {games} games");
}

/// The built-in suites with the node's game settings.
fn builtin(config: &NodeConfig) -> Box<dyn arlas_game::Environment> {
    Box::new(arlas_game::BuiltinEnvironment::new(
        config.rollout.game.clone(),
    ))
}

/// The coordinator, started on a free port; returns its URL, the sender that stops it and
/// its task.
async fn start_coordinator(
    data: PathBuf,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), arlas_coordinator::Error>>,
) {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(arlas_coordinator::service::run(
        Listeners {
            grpc,
            metrics: None,
        },
        ServerConfig {
            data_dir: data,
            coordinator: CoordinatorConfig {
                lease_ttl: Duration::from_secs(30),
                seed: Some(1),
                ..CoordinatorConfig::default()
            },
            token: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        },
        async {
            let _ = stopped.await;
        },
    ));
    (url, stop, task)
}

/// Versions and population members as LoRA adapters over one base: what travels is the
/// adapters (a small fraction of the base), and the actor holds one base for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_plays_adapter_versions_and_members_over_one_base() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = corpus(&CorpusOptions {
        episodes: 60,
        seed: 3,
        split: Split::Train,
    })
    .unwrap();
    let base_dir = tmp.path().join("base");
    build_tiny(TinyPreset::Tiny2M, texts.into_iter(), 5, &base_dir).unwrap();
    // Fresh adapters of different seeds: distinct checkpoints over the same base.
    let adapter = |name: &str, seed: u64| -> PathBuf {
        let options = LoadOptions {
            seed,
            lora: Some(arlas_policy::LoraConfig::new(4, 8.0).unwrap()),
            ..LoadOptions::default()
        };
        let policy = Policy::load(
            &arlas_policy::ModelSpec::Path(base_dir.clone()),
            &Device::Cpu,
            &options,
        )
        .unwrap();
        let dir = tmp.path().join(name);
        save_policy(&policy, &dir).unwrap();
        dir
    };
    let (url, stop_coordinator, _) = start_coordinator(tmp.path().join("coordinator")).await;
    let mut client = CoordinatorClient::connect(&url, None).await.unwrap();
    let (_doubles, leases) = register_doubles(&mut client).await;
    publish(
        &mut client,
        &leases[0],
        Player::Agent,
        1,
        &adapter("agent", 1),
    )
    .await;
    for v in 1..=3 {
        let dir = adapter(&format!("attacker-{v}"), 10 + v);
        publish(&mut client, &leases[1], Player::Attacker, v, &dir).await;
    }
    let base_bytes = std::fs::metadata(base_dir.join("model.safetensors"))
        .unwrap()
        .len();
    let blob_bytes = std::fs::metadata(tmp.path().join("attacker-1.blob"))
        .unwrap()
        .len();
    assert!(
        blob_bytes * 5 < base_bytes,
        "an adapter version ({blob_bytes} bytes) is a small part of the base ({base_bytes})"
    );

    let mut rollout = RolloutConfig::default();
    rollout.game.max_turns = 2;
    rollout.agent_sampling.max_new_tokens = 8;
    rollout.attacker_sampling.max_new_tokens = 8;
    let config = NodeConfig {
        coordinator: url,
        token: None,
        name: "adapter-actor".into(),
        cache_dir: tmp.path().join("cache"),
        cache_keep: 2,
        models_dir: tmp.path().join("models"),
        device: Device::Cpu,
        shape: RoundShape {
            tasks: 3,
            group_size: G,
        },
        rollout,
        seed: 4,
        sync: false,
        sync_timeout: Duration::from_secs(600),
        max_pending: 64,
        episodes: Some(4 * 3 * G as u64),
    };
    let env = builtin(&config);
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        arlas_actor::node::run(config, env, None, std::future::pending()),
    )
    .await
    .expect("the actor finishes its episodes")
    .unwrap();
    assert!(report.episodes >= 4 * 3 * G as u64, "{report:?}");
    assert!(report.versions.iter().all(|v| *v == (1, 3)), "{report:?}");
    assert_eq!(
        report.bases, 1,
        "one base for every adapter loaded: {report:?}"
    );
    assert!(
        report.fetched.len() >= 3,
        "the agent, the current attacker and members were fetched: {report:?}"
    );
    let _ = stop_coordinator.send(());
}
