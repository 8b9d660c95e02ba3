//! Trajectory intake into one real `arlas learner` process from K credit-respecting
//! streams (training never starts: the batch is larger than the run), against the same
//! length-prefixed encoded bytes over raw loopback TCP.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arlas::cluster::RoleProcess;
use arlas_learner::service::synthetic::{Shape, trajectory};
use arlas_proto::v1;
use arlas_proto::v1::learner_client::LearnerClient;
use arlas_runtime::auth::{AttachToken, Token};
use prost::Message as _;
use rand::SeedableRng as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use crate::probe::load_average;

/// What to run.
#[derive(Debug, clap::Args)]
pub struct IntakeArgs {
    /// Concurrent streams (actors).
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Prompt tokens per turn and player.
    #[arg(long, default_value_t = 48)]
    pub prompt_tokens: usize,
    /// Completion tokens per turn and player.
    #[arg(long, default_value_t = 16)]
    pub completion_tokens: usize,
    /// Turns per trajectory.
    #[arg(long, default_value_t = 2)]
    pub turns: usize,
    /// Working directory (emptied first).
    #[arg(long)]
    pub dir: PathBuf,
    /// The `arlas` binary.
    #[arg(long, default_value = "target/release/arlas")]
    pub exe: PathBuf,
}

/// Below the tiny model's vocabulary (2,927 ids).
const VOCAB: u32 = 1000;
/// Distinct trajectories per stream, sent in a cycle with new sequence numbers.
const POOL: usize = 64;

fn pool(args: &IntakeArgs, stream: usize) -> Vec<v1::Trajectory> {
    let shape = Shape {
        vocab: VOCAB,
        turns: args.turns,
        prompt_tokens: args.prompt_tokens,
        completion_tokens: args.completion_tokens,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(stream as u64);
    (0..POOL)
        .map(|i| {
            (&trajectory(
                &mut rng,
                &shape,
                ((stream as u64) << 32) | (i as u64 / 4),
                1,
                1,
            ))
                .into()
        })
        .collect()
}

fn spawn_role(
    exe: &Path,
    dir: &Path,
    name: &str,
    args: Vec<String>,
) -> anyhow::Result<RoleProcess> {
    let mut role = RoleProcess::spawn(
        exe,
        name,
        args,
        vec![("CANDLE_NUM_THREADS".into(), "1".into())],
        &dir.join(format!("{name}.log")),
        Duration::from_secs(120),
    )?;
    role.wait_ready(Duration::from_secs(120))?;
    Ok(role)
}

/// A fresh token file in `dir`.
pub fn token_file(dir: &Path) -> anyhow::Result<(PathBuf, Token)> {
    use rand::Rng as _;
    let bytes: [u8; 24] = rand::rng().random();
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("token");
    std::fs::write(&path, format!("{text}\n"))?;
    Ok((path, Token::parse(&text).map_err(anyhow::Error::msg)?))
}

/// Starts `arlas coordinator` in `dir/coordinator` (extra args appended).
/// The gRPC URL a started coordinator announced.
pub fn grpc_url(coordinator: &RoleProcess) -> anyhow::Result<String> {
    let addr = coordinator
        .announced()
        .grpc
        .context("no coordinator address")?;
    Ok(format!("http://{addr}"))
}

pub fn coordinator(
    exe: &Path,
    dir: &Path,
    token: &Path,
    extra: &[&str],
) -> anyhow::Result<RoleProcess> {
    let mut args: Vec<String> = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--data",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(dir.join("coordinator").to_string_lossy().into_owned());
    args.push("--token-file".into());
    args.push(token.to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| (*s).to_string()));
    spawn_role(exe, dir, "coordinator", args)
}

#[derive(Debug, Default)]
struct StreamCounts {
    accepted: u64,
    other: u64,
    bytes: u64,
}

async fn one_stream(
    addr: SocketAddr,
    token: Token,
    id: usize,
    pool: Vec<v1::Trajectory>,
    until: Instant,
) -> anyhow::Result<StreamCounts> {
    let channel = arlas_runtime::client::connect(&format!("http://{addr}")).await?;
    let mut client = LearnerClient::with_interceptor(channel, AttachToken::new(Some(&token)));
    let (tx, rx) = mpsc::channel(256);
    let mut acks = client
        .submit_trajectories(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let lease = format!("bench-{id}");
    let (mut credits, mut unacked, mut seq) = (0u32, 0u32, 0u64);
    let mut sizes = std::collections::VecDeque::new();
    let mut counts = StreamCounts::default();
    loop {
        let sending = Instant::now() < until;
        if sending && unacked < credits {
            let request = v1::SubmitTrajectoryRequest {
                actor_lease_id: lease.clone(),
                sequence: seq + 1,
                trajectory: Some(pool[seq as usize % pool.len()].clone()),
            };
            seq += 1;
            sizes.push_back(request.encoded_len() as u64);
            tx.send(request).await.context("the stream closed")?;
            unacked += 1;
            continue;
        }
        if !sending && unacked == 0 {
            return Ok(counts);
        }
        let wait = if sending {
            until - Instant::now()
        } else {
            Duration::from_secs(60)
        };
        match tokio::time::timeout(wait, acks.next()).await {
            Ok(Some(ack)) => {
                let ack = ack?;
                credits = ack.credits;
                if ack.status == v1::AckStatus::Unspecified as i32 {
                    continue;
                }
                unacked -= 1;
                let size = sizes.pop_front().unwrap_or(0);
                if ack.status == v1::AckStatus::Accepted as i32 {
                    counts.accepted += 1;
                    counts.bytes += size;
                } else {
                    counts.other += 1;
                }
            }
            Ok(None) => anyhow::bail!("stream {id} ended early"),
            Err(_) if sending => {}
            Err(_) => anyhow::bail!("stream {id}: {unacked} acks missing after 60 s"),
        }
    }
}

/// Raw loopback TCP: `streams` connections each write `frames` length-prefixed frames
/// (cycling over `pools`) to a reader thread that reads every frame. Returns the seconds.
fn raw_tcp(pools: &[Vec<Vec<u8>>], frames: &[u64]) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let n = pools.len();
    let readers = std::thread::spawn(move || -> anyhow::Result<u64> {
        let mut handles = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept()?;
            handles.push(std::thread::spawn(move || -> std::io::Result<u64> {
                let (mut len, mut buf, mut total) = ([0u8; 4], Vec::new(), 0u64);
                loop {
                    match s.read_exact(&mut len) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return Ok(total);
                        }
                        Err(e) => return Err(e),
                    }
                    buf.resize(u32::from_le_bytes(len) as usize, 0);
                    s.read_exact(&mut buf)?;
                    total += 1;
                }
            }));
        }
        let mut total = 0;
        for h in handles {
            total += h
                .join()
                .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
        }
        Ok(total)
    });
    let started = Instant::now();
    let writers: Vec<_> = pools
        .iter()
        .cloned()
        .zip(frames.iter().copied())
        .map(|(pool, count)| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut s = std::io::BufWriter::new(TcpStream::connect(addr)?);
                for i in 0..count as usize {
                    let frame = &pool[i % pool.len()];
                    s.write_all(&(frame.len() as u32).to_le_bytes())?;
                    s.write_all(frame)?;
                }
                s.flush()
            })
        })
        .collect();
    for w in writers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    let read = readers
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    anyhow::ensure!(read == frames.iter().sum::<u64>(), "raw TCP lost frames");
    Ok(started.elapsed().as_secs_f64())
}

/// Runs both sides; returns the JSON record.
#[allow(clippy::cast_precision_loss)]
pub fn run(args: &IntakeArgs) -> anyhow::Result<Value> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let (token_path, token) = token_file(&args.dir)?;
    let coordinator = coordinator(&args.exe, &args.dir, &token_path, &[])?;
    let url = grpc_url(&coordinator)?;
    let mut learner_args: Vec<String> = [
        "learner",
        "--player",
        "agent",
        "--model",
        "tiny",
        "--coordinator",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        // Training never starts: intake only.
        "--batch-episodes",
        "10000000",
        "--queue-capacity",
        "10000000",
        "--max-staleness",
        "100",
        "--data",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    learner_args.push(args.dir.join("learner").to_string_lossy().into_owned());
    learner_args.push("--token-file".into());
    learner_args.push(token_path.to_string_lossy().into_owned());
    let learner = spawn_role(&args.exe, &args.dir, "learner", learner_args)?;
    let addr = learner.announced().grpc.context("no learner address")?;
    let pools: Vec<_> = (0..args.streams).map(|i| pool(args, i)).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let load_before = load_average();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.secs);
    let counts = runtime.block_on(async {
        let tasks: Vec<_> = pools
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, p)| tokio::spawn(one_stream(addr, token.clone(), i, p, until)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await??);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let load_after = load_average();
    drop(runtime);
    drop(learner);
    drop(coordinator);

    let accepted: u64 = counts.iter().map(|c| c.accepted).sum();
    let bytes: u64 = counts.iter().map(|c| c.bytes).sum();
    let other: u64 = counts.iter().map(|c| c.other).sum();
    let encoded: Vec<Vec<Vec<u8>>> = pools
        .iter()
        .enumerate()
        .map(|(i, pool)| {
            pool.iter()
                .enumerate()
                .map(|(seq, t)| {
                    v1::SubmitTrajectoryRequest {
                        actor_lease_id: format!("bench-{i}"),
                        sequence: seq as u64 + 1,
                        trajectory: Some(t.clone()),
                    }
                    .encode_to_vec()
                })
                .collect()
        })
        .collect();
    let frames: Vec<u64> = counts.iter().map(|c| c.accepted).collect();
    let raw_load_before = load_average();
    let raw_secs = raw_tcp(&encoded, &frames)?;
    let raw_bytes: u64 = encoded
        .iter()
        .zip(&frames)
        .map(|(pool, &n)| {
            (0..n as usize)
                .map(|i| pool[i % pool.len()].len() as u64 + 4)
                .sum::<u64>()
        })
        .sum();
    let _ = std::fs::remove_dir_all(&args.dir);
    let rate = accepted as f64 / secs;
    let raw_rate = accepted as f64 / raw_secs;
    Ok(json!({
        "bench": "intake",
        "streams": args.streams,
        "shape": {"turns": args.turns, "prompt_tokens": args.prompt_tokens, "completion_tokens": args.completion_tokens},
        "bytes_per_trajectory": bytes as f64 / accepted.max(1) as f64,
        "grpc": {"seconds": secs, "accepted": accepted, "not_accepted": other, "bytes": bytes,
                 "trajectories_per_s": rate, "mb_per_s": bytes as f64 / secs / 1e6,
                 "load_before": load_before, "load_after": load_after},
        "raw_tcp": {"seconds": raw_secs, "frames": accepted, "bytes": raw_bytes,
                    "trajectories_per_s": raw_rate, "mb_per_s": raw_bytes as f64 / raw_secs / 1e6,
                    "load_before": raw_load_before, "load_after": load_average()},
        "ratio_grpc_over_raw": rate / raw_rate,
    }))
}
