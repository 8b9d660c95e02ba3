//! `arlas coordinator` as a real process: killed with SIGKILL (mid-upload, too) and
//! restarted on the same data directory, it restores the population and the versions,
//! every checkpoint verified by hash, and clients reconnect and re-register; a truncated
//! blob on disk stops the start-up with an error that names the file; SIGTERM stops it
//! cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arlas_client::{CoordinatorClient, Error, blob_ref_of_file};
use arlas_core::archive::pack_to_file;
use arlas_core::{Player, PublishHeader, Registration};
use arlas_runtime::auth::Token;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "multi-process-token-0123456789";

struct Coordinator {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

/// Starts `arlas coordinator` on `data` and reads the addresses it announces on stdout.
fn spawn(dir: &Path, data: &Path, listen: &str, log: &str) -> Child {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_arlas"))
        .args([
            "coordinator",
            "--listen",
            listen,
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data)
        .arg("--token-file")
        .arg(&token)
        .args(["--lease-ttl-secs", "30"])
        .env("ARLAS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap()
}

async fn start(dir: &Path, data: &Path, listen: &str, log: &str) -> Coordinator {
    let mut child = spawn(dir, data, listen, log);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let announce: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("no address line ({e}): {line:?}; see {log}"));
    let coordinator = Coordinator {
        child,
        grpc: announce["grpc"].as_str().unwrap().parse().unwrap(),
        metrics: announce["metrics"].as_str().unwrap().parse().unwrap(),
    };
    wait_serving(coordinator.grpc).await;
    coordinator
}

/// Readiness: gRPC health SERVING (no token needed), polled with a deadline.
async fn wait_serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        if let Ok(channel) = endpoint.connect().await {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: "arlas.v1.Coordinator".into(),
                })
                .await;
            if answer.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "coordinator at {addr} not serving in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn checkpoint(dir: &Path, name: &str, size: usize) -> PathBuf {
    let ckpt = dir.join(name);
    std::fs::create_dir_all(ckpt.join("optimizer")).unwrap();
    let weights: Vec<u8> = (0..size)
        .map(|i| u8::try_from((i * 31 + name.len() * 7) % 251).unwrap())
        .collect();
    std::fs::write(ckpt.join("model.safetensors"), weights).unwrap();
    std::fs::write(ckpt.join("config.json"), format!("{{\"name\":\"{name}\"}}")).unwrap();
    std::fs::write(ckpt.join("optimizer/state.safetensors"), name.as_bytes()).unwrap();
    let blob = dir.join(format!("{name}.blob"));
    pack_to_file(&ckpt, &blob).unwrap();
    blob
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_restore_population_and_versions_and_truncation_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    let token = Token::parse(TOKEN).unwrap();
    let mut first = start(dir, &data, "127.0.0.1:0", "first.log").await;
    let url = format!("http://{}", first.grpc);
    let mut client = CoordinatorClient::connect(&url, Some(&token))
        .await
        .unwrap();
    let learner = Registration::Learner {
        name: "learner-both".into(),
        url: "http://127.0.0.1:50052".into(),
        players: vec![Player::Agent, Player::Attacker],
    };
    let (lease, _) = client.register(&learner).await.unwrap();

    let mut publish = async |player, version, name: &str, size, join| {
        let blob_file = checkpoint(dir, name, size);
        let header = PublishHeader {
            lease: lease.id.clone(),
            player,
            version,
            checkpoint: blob_ref_of_file(&blob_file).unwrap(),
            join_population: join,
            iteration: u32::try_from(version).unwrap(),
        };
        client.publish_file(&header, &blob_file).await.unwrap();
        (header.checkpoint, blob_file)
    };
    publish(Player::Attacker, 1, "attacker-1", 300_000, true).await;
    let (attacker2, attacker2_file) =
        publish(Player::Attacker, 2, "attacker-2", 2_500_000, true).await;
    let (agent3, _) = publish(Player::Agent, 3, "agent-3", 1_200_000, false).await;
    let before = client.run_state().await.unwrap();
    let population = client.population().await.unwrap();
    assert_eq!(population.len(), 2);
    assert_eq!(before.versions.agent.checkpoint.as_ref(), Some(&agent3));

    // An upload in flight when the coordinator dies: header and one chunk, never finished.
    let agent4_file = checkpoint(dir, "agent-4", 3_000_000);
    let agent4 = blob_ref_of_file(&agent4_file).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(arlas_proto::v1::PublishCheckpointRequest {
        kind: Some(arlas_proto::v1::publish_checkpoint_request::Kind::Header(
            arlas_proto::v1::PublishHeader {
                lease_id: lease.id.to_string(),
                player: arlas_proto::v1::Player::Agent.into(),
                version: 4,
                sha256: agent4.id.to_string(),
                size_bytes: agent4.size,
                ..Default::default()
            },
        )),
    })
    .await
    .unwrap();
    let first_chunk = std::fs::read(&agent4_file).unwrap()[..1 << 20].to_vec();
    tx.send(arlas_proto::v1::PublishCheckpointRequest {
        kind: Some(arlas_proto::v1::publish_checkpoint_request::Kind::Chunk(
            first_chunk,
        )),
    })
    .await
    .unwrap();
    let mut raw = arlas_proto::v1::coordinator_client::CoordinatorClient::connect(url.clone())
        .await
        .unwrap();
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let upload = tokio::spawn(async move { raw.publish_checkpoint(request).await });
    // The coordinator has started writing the upload when its incoming file has bytes.
    let incoming = data.join("blobs/.incoming");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&incoming)
        .unwrap()
        .flatten()
        .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    {
        assert!(
            Instant::now() < deadline,
            "upload never reached the coordinator's disk"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    assert!(
        upload.await.unwrap().is_err(),
        "the cut upload cannot succeed"
    );
    drop(tx);

    // Restart on the same data directory and the same port: the old client reconnects.
    let second = start(dir, &data, &first.grpc.to_string(), "second.log").await;
    let after = client.run_state().await.unwrap();
    assert_eq!(
        after.versions.agent, before.versions.agent,
        "agent version 3 restored, 4 never happened"
    );
    assert_eq!(after.versions.attacker, before.versions.attacker);
    assert_eq!(after.versions.attacker.version, 2);
    assert!(
        after.revision > before.revision,
        "revisions increase across restarts"
    );
    assert_eq!(client.population().await.unwrap(), population);
    assert_eq!(
        std::fs::read_dir(&incoming).unwrap().count(),
        0,
        "the cut upload left nothing behind"
    );
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap();
    assert!(
        log.contains("coordinator state verified and loaded"),
        "{log}"
    );

    // The old lease died with the old process: heartbeat says NOT_FOUND, register again.
    let err = client.heartbeat(&lease.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rpc {
                code: tonic::Code::NotFound,
                ..
            }
        ),
        "{err}"
    );
    let (lease, _) = client.register(&learner).await.unwrap();

    // Restored checkpoints download byte for byte.
    let fetched = dir.join("attacker-2.fetched");
    client.fetch_to_file(&attacker2, &fetched).await.unwrap();
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&attacker2_file).unwrap()
    );
    let (_, metrics) = arlas_runtime::http::get(second.metrics, "/metrics")
        .await
        .unwrap();
    assert!(metrics.contains("arlas_population_size 2"), "{metrics}");
    assert!(
        metrics.contains("arlas_policy_version{player=\"agent\"} 3"),
        "{metrics}"
    );

    // The publish that was cut can now be completed.
    let published = client
        .publish_file(
            &PublishHeader {
                lease: lease.id.clone(),
                player: Player::Agent,
                version: 4,
                checkpoint: agent4.clone(),
                join_population: false,
                iteration: 4,
            },
            &agent4_file,
        )
        .await
        .unwrap();
    assert_eq!(published.version.version, 4);

    // SIGTERM: a clean stop.
    let mut second = second;
    let status = Command::new("kill")
        .args(["-TERM", &second.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = second.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "SIGTERM exit: {exit}");

    // A truncated checkpoint blob on disk: the coordinator refuses to start and says which.
    let blob_path = data.join("blobs").join(attacker2.id.as_str());
    let bytes = std::fs::read(&blob_path).unwrap();
    std::fs::write(&blob_path, &bytes[..bytes.len() - 1000]).unwrap();
    let mut third = spawn(dir, &data, "127.0.0.1:0", "third.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = third.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "a truncated blob did not stop the start-up"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!exit.success());
    let log = std::fs::read_to_string(dir.join("third.log")).unwrap();
    assert!(log.contains("is truncated"), "{log}");
    assert!(log.contains(&blob_path.display().to_string()), "{log}");
}
