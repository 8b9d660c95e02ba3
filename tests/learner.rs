//! `arlas learner` as a real process next to a real `arlas coordinator`: trajectories go in
//! over gRPC, the learner is killed with SIGKILL mid-run and restarted on the same data
//! directory and port; versions stay monotone, every acknowledged trajectory is either
//! trained into a published checkpoint or still queued (resends of acknowledged ones are
//! DUPLICATE), and training goes on to new versions. SIGTERM stops it with exit code 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arlas_client::CoordinatorClient;
use arlas_learner::service::synthetic::{Shape, trajectory};
use arlas_proto::v1;
use arlas_proto::v1::learner_client::LearnerClient;
use arlas_runtime::auth::{AttachToken, Token};
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "learner-multi-process-token-0123";
const TRAJECTORIES: u64 = 32;
const LEASE: &str = "actor-under-test";

type Client = LearnerClient<InterceptedService<Channel, AttachToken>>;

struct Process {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

/// Starts `arlas ARGS` and reads the addresses it announces on stdout.
fn start(dir: &Path, args: &[&str], log: &str) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arlas"))
        .args(args)
        .arg("--token-file")
        .arg(dir.join("token"))
        .env("ARLAS_LOG", "info")
        .env("CANDLE_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let announce: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("no address line ({e}): {line:?}; see {log}"));
    Process {
        child,
        grpc: announce["grpc"].as_str().unwrap().parse().unwrap(),
        metrics: announce["metrics"].as_str().unwrap().parse().unwrap(),
    }
}

fn start_learner(dir: &Path, coordinator: SocketAddr, listen: &str, log: &str) -> Process {
    let url = format!("http://{coordinator}");
    let data = dir.join("learner");
    let models = dir.join("models");
    start(
        dir,
        &[
            "learner",
            "--player",
            "agent",
            "--model",
            "tiny",
            "--models-dir",
            models.to_str().unwrap(),
            "--batch-episodes",
            "4",
            "--minibatch-size",
            "64",
            "--max-staleness",
            "1000",
            "--coordinator",
            &url,
            "--listen",
            listen,
            "--metrics-listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--shutdown-grace-secs",
            "5",
        ],
        log,
    )
}

async fn wait_serving(addr: SocketAddr, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
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
        assert!(
            Instant::now() < deadline,
            "{service} at {addr} not serving in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn learner_client(addr: SocketAddr) -> Client {
    let channel = arlas_runtime::client::connect(&format!("http://{addr}"))
        .await
        .unwrap();
    let token = Token::parse(TOKEN).unwrap();
    LearnerClient::with_interceptor(channel, AttachToken::new(Some(&token)))
}

async fn status(client: &mut Client) -> v1::LearnerStatus {
    client
        .get_learner_status(v1::GetLearnerStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The trajectory with sequence `seq`: groups of 4 with different rewards.
fn request(seq: u64) -> v1::SubmitTrajectoryRequest {
    let shape = Shape {
        vocab: 1000,
        turns: 2,
        prompt_tokens: 16,
        completion_tokens: 6,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seq);
    let group = 1000 + (seq - 1) / 4;
    let mut t = trajectory(&mut rng, &shape, group, 1, 1);
    t.rewards.agent = [1.0, -1.0, 0.5, -0.5][usize::try_from((seq - 1) % 4).unwrap()];
    v1::SubmitTrajectoryRequest {
        actor_lease_id: LEASE.into(),
        sequence: seq,
        trajectory: Some((&t).into()),
    }
}

/// Sends `seqs` on one stream, keeping to the credits; returns each sequence's ack status.
/// With `stop_after`, returns as soon as that many were ACCEPTED (the rest unanswered).
async fn send(
    client: &mut Client,
    seqs: &[u64],
    stop_after: Option<usize>,
) -> BTreeMap<u64, v1::AckStatus> {
    let (tx, rx) = mpsc::channel(64);
    let mut acks = client
        .submit_trajectories(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut credits = 0u32;
    let mut unacked = 0u32;
    let mut next = 0usize;
    let mut answers = BTreeMap::new();
    loop {
        while next < seqs.len() && unacked < credits {
            tx.send(request(seqs[next])).await.unwrap();
            next += 1;
            unacked += 1;
        }
        if answers.len() == seqs.len() {
            return answers;
        }
        let ack = tokio::time::timeout(Duration::from_secs(60), acks.next())
            .await
            .expect("an ack within 60 s")
            .unwrap()
            .unwrap();
        credits = ack.credits;
        let status = v1::AckStatus::try_from(ack.status).unwrap();
        if status != v1::AckStatus::Unspecified {
            unacked -= 1;
            answers.insert(ack.sequence, status);
            let accepted = answers
                .values()
                .filter(|s| **s == v1::AckStatus::Accepted)
                .count();
            if stop_after.is_some_and(|n| accepted >= n) {
                return answers;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_nothing_acknowledged_and_versions_stay_monotone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let coordinator_data = dir.join("coordinator");
    let mut coordinator = start(
        dir,
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data",
            coordinator_data.to_str().unwrap(),
        ],
        "coordinator.log",
    );
    wait_serving(coordinator.grpc, "arlas.v1.Coordinator").await;
    let mut run = CoordinatorClient::connect(
        &format!("http://{}", coordinator.grpc),
        Some(&Token::parse(TOKEN).unwrap()),
    )
    .await
    .unwrap();
    let mut versions_seen = vec![run.run_state().await.unwrap().versions.agent.version];
    let observe = async |run: &mut CoordinatorClient, seen: &mut Vec<u64>| -> u64 {
        let v = run.run_state().await.unwrap().versions.agent.version;
        assert!(
            seen.last().is_none_or(|&last| v >= last),
            "coordinator's agent version went back: {seen:?} then {v}"
        );
        seen.push(v);
        v
    };

    let mut learner = start_learner(dir, coordinator.grpc, "127.0.0.1:0", "learner-1.log");
    let learner_addr = learner.grpc;
    wait_serving(learner_addr, "arlas.v1.Learner").await;
    let mut client = learner_client(learner_addr).await;

    // Half of it, all acknowledged; wait for an update to be published.
    let half = usize::try_from(TRAJECTORIES / 2).unwrap();
    let all: Vec<u64> = (1..=TRAJECTORIES).collect();
    let first = send(&mut client, &all[..half], None).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while observe(&mut run, &mut versions_seen).await < 2 {
        assert!(Instant::now() < deadline, "no update published in 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rest: kill -9 as soon as a few more are acknowledged (some queued, some not
    // yet answered, an update possibly in progress).
    let rest = send(&mut client, &all[half..], Some(4)).await;
    learner.child.kill().unwrap(); // SIGKILL
    learner.child.wait().unwrap();
    let acked: BTreeSet<u64> = first
        .iter()
        .chain(&rest)
        .filter(|(_, s)| **s == v1::AckStatus::Accepted)
        .map(|(&q, _)| q)
        .collect();
    assert!(acked.len() >= half + 4);
    let before_kill = observe(&mut run, &mut versions_seen).await;

    // Restart on the same data directory and port.
    let mut learner = start_learner(
        dir,
        coordinator.grpc,
        &learner_addr.to_string(),
        "learner-2.log",
    );
    assert_eq!(learner.grpc, learner_addr);
    wait_serving(learner_addr, "arlas.v1.Learner").await;
    let mut client = learner_client(learner_addr).await;
    let st = status(&mut client).await;
    let restarted_version = st.versions[0].version;
    let at_restart = (st.accepted_total, st.trained_total, st.queue_depth);
    assert!(
        restarted_version >= before_kill,
        "the learner resumed at {restarted_version}, below the published {before_kill}"
    );
    assert_eq!(st.accepted_total, st.trained_total + st.queue_depth);
    assert!(
        st.accepted_total >= acked.len() as u64,
        "acknowledged {} but the restarted learner holds {} (trained {} + queued {})",
        acked.len(),
        st.accepted_total,
        st.trained_total,
        st.queue_depth
    );

    // Resend everything: the acknowledged ones are DUPLICATE, the rest go in now.
    let second = send(&mut client, &all, None).await;
    for q in &acked {
        assert_eq!(
            second[q],
            v1::AckStatus::Duplicate,
            "acknowledged sequence {q} was lost by the kill"
        );
    }
    for (q, s) in &second {
        assert!(
            matches!(s, v1::AckStatus::Duplicate | v1::AckStatus::Accepted),
            "sequence {q}: {s:?}"
        );
    }

    // Training goes on: every trajectory is trained into a published checkpoint.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status(&mut client).await;
        let published = observe(&mut run, &mut versions_seen).await;
        assert_eq!(st.accepted_total, TRAJECTORIES, "each key counted once");
        if st.trained_total == TRAJECTORIES
            && st.queue_depth == 0
            && published == st.versions[0].version
            && published > restarted_version.max(before_kill)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "training did not finish: {st:?}, coordinator at {published}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "versions seen at the coordinator: {versions_seen:?}; killed with {} of {TRAJECTORIES} acknowledged at version {before_kill}, resumed at {restarted_version} with (accepted, trained, queued) = {at_restart:?}",
        acked.len()
    );

    // The metrics of docs/metrics.md, with this run's numbers.
    let (code, text) = arlas_runtime::http::get(learner.metrics, "/metrics")
        .await
        .unwrap();
    assert_eq!(code, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    };
    assert_eq!(value("arlas_learner_queue_depth"), 0.0);
    // After the restart every resend was a DUPLICATE or newly ACCEPTED: counted either way.
    assert!(value("arlas_trajectories_acknowledged_total") >= 0.0);
    assert_eq!(
        value("arlas_trajectories_dropped_total{reason=\"overflow\"}"),
        0.0
    );
    assert!(
        value("arlas_trajectories_received_total")
            >= f64::from(u32::try_from(TRAJECTORIES).unwrap())
    );
    assert!(value("arlas_updates_total{player=\"agent\"}") >= 1.0);
    assert!(value("arlas_policy_version{player=\"agent\"}") >= 2.0);
    assert!(value("arlas_learner_batch_seconds_sum{player=\"agent\"}") > 0.0);
    for name in [
        "arlas_loss{",
        "arlas_kl{",
        "arlas_entropy{",
        "arlas_grad_norm{",
        "arlas_clip_fraction{",
        "arlas_learner_last_update_timestamp_seconds{",
        "arlas_build_info{",
    ] {
        assert!(text.contains(name), "no {name} in /metrics");
    }
    let (code, _) = arlas_runtime::http::get(learner.metrics, "/healthz")
        .await
        .unwrap();
    assert_eq!(code, 200);

    // SIGTERM: clean exit.
    let signalled = Command::new("kill")
        .args(["-TERM", &learner.child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = learner.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "SIGTERM exit: {exit}");
    coordinator.child.kill().unwrap();
    coordinator.child.wait().unwrap();
}
