//! Checkpoint broadcast: one blob published to a real `arlas coordinator`, then fetched by
//! C concurrent `CoordinatorClient::fetch_to_file` clients, against C raw loopback TCP
//! readers copying the same file to disk.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use arlas_client::CoordinatorClient;
use arlas_core::archive::pack_to_file;
use arlas_core::{Player, PublishHeader, Registration};
use rand::{RngCore as _, SeedableRng as _};
use serde_json::{Value, json};

use crate::intake::{coordinator, token_file};
use crate::probe::load_average;

/// What to run.
#[derive(Debug, clap::Args)]
pub struct BroadcastArgs {
    /// Size of the checkpoint's weights file, MB (SmolLM2-135M in f32 + optimizer ≈ 540).
    #[arg(long, default_value_t = 540)]
    pub mb: u64,
    /// Concurrent fetching clients (actors).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Measurements of each side, alternating.
    #[arg(long, default_value_t = 2)]
    pub repeats: usize,
    /// Working directory (emptied first, removed after).
    #[arg(long)]
    pub dir: PathBuf,
    /// The `arlas` binary.
    #[arg(long, default_value = "target/release/arlas")]
    pub exe: PathBuf,
    /// In each repeat, measure the raw copy before the fetch (to see whether the first
    /// measurement of a process is slow whichever side it is).
    #[arg(long)]
    pub raw_first: bool,
}

/// A checkpoint directory of random bytes, packed; returns the blob's path.
fn make_blob(dir: &Path, mb: u64) -> anyhow::Result<PathBuf> {
    let src = dir.join("checkpoint");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("config.json"), b"{\"bench\": true}\n")?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(src.join("model.safetensors"))?);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mb {
        rng.fill_bytes(&mut buf);
        file.write_all(&buf)?;
    }
    file.flush()?;
    drop(file);
    let blob = dir.join("checkpoint.blob");
    pack_to_file(&src, &blob)?;
    std::fs::remove_dir_all(&src)?;
    Ok(blob)
}

/// Writes every dirty page back (`sync`), so that no measurement pays for earlier writes.
fn settle_disk() -> anyhow::Result<()> {
    let status = std::process::Command::new("sync").status()?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(())
}

/// C raw readers copy `blob` over loopback TCP into files; returns the seconds.
fn raw_copy(blob: &Path, dir: &Path, clients: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let source = blob.to_path_buf();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut senders = Vec::new();
        for _ in 0..clients {
            let (mut socket, _) = listener.accept()?;
            let path = source.clone();
            senders.push(std::thread::spawn(move || -> std::io::Result<u64> {
                std::io::copy(&mut std::fs::File::open(path)?, &mut socket)
            }));
        }
        for s in senders {
            s.join()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
        }
        Ok(())
    });
    let started = Instant::now();
    let readers: Vec<_> = (0..clients)
        .map(|k| {
            let dest = dir.join(format!("raw-{k}.blob"));
            std::thread::spawn(move || -> std::io::Result<u64> {
                let mut socket = TcpStream::connect(addr)?;
                let mut file = std::fs::File::create(&dest)?;
                let n = std::io::copy(&mut socket, &mut file)?;
                std::fs::remove_file(&dest)?;
                Ok(n)
            })
        })
        .collect();
    for r in readers {
        r.join()
            .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server panicked"))??;
    Ok(secs)
}

/// Publishes, then measures both sides `repeats` times; returns the JSON record.
#[allow(clippy::cast_precision_loss)]
pub fn run(args: &BroadcastArgs) -> anyhow::Result<Value> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let blob = make_blob(&args.dir, args.mb)?;
    let (token_path, token) = token_file(&args.dir)?;
    // A long lease: the upload must not outlive it.
    let coordinator = coordinator(
        &args.exe,
        &args.dir,
        &token_path,
        &["--lease-ttl-secs", "600"],
    )?;
    let url = crate::intake::grpc_url(&coordinator)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let checkpoint = arlas_client::blob_ref_of_file(&blob)?;
    let size = checkpoint.size;
    let publish_started = Instant::now();
    runtime.block_on(async {
        let mut client = CoordinatorClient::connect(&url, Some(&token)).await?;
        let (lease, _) = client
            .register(&Registration::Learner {
                name: "bench-learner".into(),
                url: "http://127.0.0.1:9".into(),
                players: vec![Player::Agent],
            })
            .await?;
        let header = PublishHeader {
            lease: lease.id,
            player: Player::Agent,
            version: 1,
            checkpoint: checkpoint.clone(),
            join_population: false,
            iteration: 0,
        };
        client.publish_file(&header, &blob).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let publish_secs = publish_started.elapsed().as_secs_f64();
    let total = (size * args.clients as u64) as f64;
    let mut runs = Vec::new();
    for _ in 0..args.repeats {
        // Both sides start with no dirty pages to write back (the source blob, the store's
        // copy): the first fetch used to pay for writing the bench's own blob to disk.
        settle_disk()?;
        let load_before = load_average();
        let raw_before = if args.raw_first {
            let secs = raw_copy(&blob, &args.dir, args.clients)?;
            settle_disk()?;
            Some(secs)
        } else {
            None
        };
        let started = Instant::now();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..args.clients)
                .map(|k| {
                    let (url, token, checkpoint) = (url.clone(), token.clone(), checkpoint.clone());
                    let dest = args.dir.join(format!("fetch-{k}.blob"));
                    tokio::spawn(async move {
                        let mut client = CoordinatorClient::connect(&url, Some(&token)).await?;
                        client.fetch_to_file(&checkpoint, &dest).await?;
                        std::fs::remove_file(&dest)?;
                        Ok::<_, anyhow::Error>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await??;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        let fetch_secs = started.elapsed().as_secs_f64();
        let fetch_load = load_average();
        let raw_secs = match raw_before {
            Some(secs) => secs,
            None => {
                settle_disk()?;
                raw_copy(&blob, &args.dir, args.clients)?
            }
        };
        runs.push(json!({
            "fetch_seconds": fetch_secs,
            "fetch_mb_per_s": total / fetch_secs / 1e6,
            "raw_seconds": raw_secs,
            "raw_mb_per_s": total / raw_secs / 1e6,
            "ratio_fetch_over_raw": raw_secs / fetch_secs,
            "load_before": load_before,
            "load_after_fetch": fetch_load,
            "load_after_raw": load_average(),
            "raw_first": args.raw_first,
        }));
    }
    drop(runtime);
    drop(coordinator);
    std::fs::remove_dir_all(&args.dir)?;
    Ok(json!({
        "bench": "broadcast",
        "blob_bytes": size,
        "clients": args.clients,
        "publish_seconds": publish_secs,
        "publish_mb_per_s": size as f64 / publish_secs / 1e6,
        "runs": runs,
    }))
}
