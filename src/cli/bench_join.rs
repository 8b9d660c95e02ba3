//! `arlas bench join`: how long a fresh actor takes to join a run whose population holds
//! N adapter members, for each N asked, with real processes: one coordinator per N (each
//! holding the agent's version 1 and attacker versions 1..=N, every attacker version a
//! population member), then, in turn, fresh `arlas actor` processes with empty checkpoint
//! caches, timed from spawn to `GET /healthz` = 200 (`seconds`: the current versions are
//! loaded and it plays) and to its "population members loaded" log line
//! (`members_loaded_seconds`: the members it was assigned, loaded while its first attacker
//! phase plays). Also prints the bytes of one published adapter version beside the bytes
//! of the base published whole, as a full fine-tuning run publishes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arlas::cluster::{Announced, RoleProcess};
use arlas::pipeline::models::Models;
use arlas_client::CoordinatorClient;
use arlas_core::archive::pack_to_file;
use arlas_core::{BlobRef, LeaseId, Player, PublishHeader, Registration};
use arlas_policy::{Device, LoraConfig, save_policy};
use clap::Args;
use serde_json::json;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct JoinBenchArgs {
    /// Base model the adapters are trained over: smollm2, tiny, tiny-20m (a name an actor
    /// resolves in its models directory).
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Where models are built and fetched (the actors resolve the base there).
    #[arg(long, env = "ARLAS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Population sizes to join (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub members: Vec<u64>,
    /// Fresh actors timed per population size (interleaved across sizes).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Tasks of the actors' rounds: the opponents asked for at joining, so with more tasks
    /// than members every member is most likely assigned.
    #[arg(long, default_value_t = 32)]
    pub tasks: usize,
    /// Working directory for checkpoints, coordinator data, caches and logs (default: a
    /// temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON object on stdout (the default output is the same JSON, pretty).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: JoinBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.members.is_empty() && args.members.iter().all(|&n| n >= 1),
        "--members needs population sizes of at least 1"
    );
    anyhow::ensure!(args.repeats >= 1, "--repeats must be at least 1");
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let root = args.dir.as_deref().unwrap_or(tmp.path());
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let exe = std::env::current_exe().context("cannot find the arlas binary")?;
    let most = args.members.iter().copied().max().unwrap_or(1);
    eprintln!(
        "bench join: writing {} adapter checkpoints over {}",
        most + 1,
        args.model
    );
    let made = checkpoints(&args, root, most)?;
    let runtime = super::role::runtime("bench")?;
    let mut coordinators = Vec::new();
    for &n in &args.members {
        let name = format!("coordinator-{n}");
        let mut c = RoleProcess::spawn(
            &exe,
            &name,
            strings(&[
                "coordinator",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data",
                &root.join(&name).to_string_lossy(),
                "--lease-ttl-secs",
                "3600",
            ]),
            Vec::new(),
            &root.join(format!("{name}.log")),
            START_TIMEOUT,
        )?;
        c.wait_ready(START_TIMEOUT)?;
        let url = grpc_url(c.announced())?;
        runtime.block_on(publish_population(&url, &made.versions, n))?;
        coordinators.push((n, url, c));
    }

    let mut samples: Vec<(u64, serde_json::Value)> = Vec::new();
    for r in 0..args.repeats {
        for (n, url, _) in &coordinators {
            let sample = join_once(&exe, &args, root, url, *n, r)?;
            eprintln!("bench join: population {n}, try {}: {sample}", r + 1);
            samples.push((*n, sample));
        }
    }
    for (_, _, mut c) in coordinators {
        c.terminate(Duration::from_secs(5))?;
    }

    let per_size: Vec<_> = args
        .members
        .iter()
        .map(|&n| {
            let runs: Vec<&serde_json::Value> = samples
                .iter()
                .filter(|(m, _)| *m == n)
                .map(|(_, s)| s)
                .collect();
            let seconds: Vec<f64> = runs.iter().filter_map(|s| s["seconds"].as_f64()).collect();
            json!({
                "members": n,
                "seconds_median": median(&seconds),
                "runs": runs,
            })
        })
        .collect();
    let out = json!({
        "bench": "join",
        "model": args.model,
        "lora": made.lora,
        "tasks": args.tasks,
        "repeats": args.repeats,
        "adapter_version_bytes": made.adapter_blob.size,
        "base_version_bytes": made.base_blob.size,
        "adapter_over_base": made.adapter_blob.size as f64 / made.base_blob.size as f64,
        "populations": per_size,
        "arlas": env!("CARGO_PKG_VERSION"),
        "commit": env!("ARLAS_COMMIT"),
        "cpu": arlas_policy::bench::CpuInfo::current(),
    });
    super::bench::print_report(&out, args.json)
}

/// The checkpoints published: agent version 1, then attacker versions 1..=N.
struct Made {
    lora: LoraConfig,
    /// `(player, version, blob file, its ref)` in publishing order.
    versions: Vec<(Player, u64, PathBuf, BlobRef)>,
    adapter_blob: BlobRef,
    base_blob: BlobRef,
}

/// Fresh adapters of distinct seeds over one base, packed as they are published, and the
/// base itself saved whole and packed, for the size comparison.
fn checkpoints(args: &JoinBenchArgs, root: &Path, attackers: u64) -> anyhow::Result<Made> {
    let models = Models::new(&args.models_dir, Device::Cpu);
    let lora = LoraConfig::default();
    let mut versions = Vec::new();
    let players =
        std::iter::once((Player::Agent, 1)).chain((1..=attackers).map(|v| (Player::Attacker, v)));
    for (i, (player, version)) in players.enumerate() {
        let policy = models.load(&args.model, false, 1000 + i as u64, Some(lora.clone()))?;
        let dir = root.join(format!("{player}-{version}"));
        save_policy(&policy, &dir).with_context(|| format!("cannot save {}", dir.display()))?;
        let blob = dir.with_extension("blob");
        let blob_ref = pack_to_file(&dir, &blob)?;
        versions.push((player, version, blob, blob_ref));
    }
    let base = models.load(&args.model, false, 0, None)?;
    let base_dir = root.join("base");
    save_policy(&base, &base_dir)?;
    let base_blob = pack_to_file(&base_dir, &base_dir.with_extension("blob"))?;
    std::fs::remove_dir_all(&base_dir).ok();
    std::fs::remove_file(base_dir.with_extension("blob")).ok();
    let adapter_blob = versions
        .last()
        .map(|v| v.3.clone())
        .context("no adapter checkpoint was written")?;
    Ok(Made {
        lora,
        versions,
        adapter_blob,
        base_blob,
    })
}

/// Publishes the agent's version 1 and attacker versions 1..=`members` (each joining the
/// population), under one learner lease per player.
async fn publish_population(
    url: &str,
    versions: &[(Player, u64, PathBuf, BlobRef)],
    members: u64,
) -> anyhow::Result<()> {
    let mut client = CoordinatorClient::connect(url, None).await?;
    let mut leases: Vec<(Player, LeaseId)> = Vec::new();
    for player in Player::ALL {
        let (lease, _) = client
            .register(&Registration::Learner {
                name: format!("bench-{player}"),
                // Nothing is sent to it: the actors are stopped once they have joined.
                url: "http://127.0.0.1:9".into(),
                players: vec![player],
            })
            .await?;
        leases.push((player, lease.id));
    }
    for (player, version, blob, checkpoint) in versions {
        if *player == Player::Attacker && *version > members {
            continue;
        }
        let lease = leases
            .iter()
            .find(|(p, _)| p == player)
            .map(|(_, l)| l.clone())
            .context("no lease for a player")?;
        client
            .publish_file(
                &PublishHeader {
                    lease,
                    player: *player,
                    version: *version,
                    checkpoint: checkpoint.clone(),
                    join_population: *player == Player::Attacker,
                    iteration: u32::try_from(*version)?,
                },
                blob,
            )
            .await
            .with_context(|| format!("cannot publish {player} version {version}"))?;
    }
    Ok(())
}

/// One fresh actor (empty cache) timed from spawn to ready, then stopped.
fn join_once(
    exe: &Path,
    args: &JoinBenchArgs,
    root: &Path,
    url: &str,
    members: u64,
    repeat: usize,
) -> anyhow::Result<serde_json::Value> {
    let name = format!("actor-{members}-{repeat}");
    let cache = root.join(format!("{name}-cache"));
    let started = Instant::now();
    let mut actor = RoleProcess::spawn(
        exe,
        &name,
        strings(&[
            "actor",
            "--coordinator",
            url,
            "--metrics-listen",
            "127.0.0.1:0",
            "--cache",
            &cache.to_string_lossy(),
            "--models-dir",
            &args.models_dir.to_string_lossy(),
            "--tasks",
            &args.tasks.to_string(),
            "--name",
            &name,
            "--seed",
            &repeat.to_string(),
            "--log-format",
            "json",
            "--log",
            "info",
        ]),
        Vec::new(),
        &root.join(format!("{name}.log")),
        START_TIMEOUT,
    )?;
    actor.wait_ready(READY_TIMEOUT)?;
    let seconds = started.elapsed().as_secs_f64();
    // The members load while the first attacker phase plays: wait for them too.
    let members_loaded = wait_for_line(&mut actor, "population members loaded")?;
    let members_seconds = started.elapsed().as_secs_f64();
    actor.terminate(Duration::from_secs(5))?;
    let (blobs, fetched_bytes, bases) = fetched(actor.log())?;
    std::fs::remove_dir_all(&cache).ok();
    Ok(json!({
        "seconds": seconds,
        "members_loaded_seconds": members_seconds,
        "members_loaded": members_loaded["fields"]["members"],
        "checkpoints_fetched": blobs,
        "fetched_bytes": fetched_bytes,
        "bases_loaded": bases,
    }))
}

fn grpc_url(announced: Announced) -> anyhow::Result<String> {
    let addr = announced
        .grpc
        .context("the coordinator announced no gRPC address")?;
    Ok(format!("http://{addr}"))
}

/// Waits (up to the ready timeout) for the actor's JSON log line with `message`.
fn wait_for_line(actor: &mut RoleProcess, message: &str) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(actor.log()).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == message);
        if let Some(line) = found {
            return Ok(line);
        }
        if let Some(status) = actor.try_exit()? {
            anyhow::bail!(
                "{} exited ({status}) before logging {message:?}; see {}",
                actor.name(),
                actor.log().display()
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not log {message:?} within {READY_TIMEOUT:?}; see {}",
            actor.name(),
            actor.log().display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checkpoints an actor fetched, their bytes and the bases it held when it stopped, from
/// its JSON log lines.
fn fetched(log: &Path) -> anyhow::Result<(usize, u64, Option<u64>)> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let bytes: Vec<u64> = lines
        .iter()
        .filter(|v| v["fields"]["message"] == "checkpoint fetched")
        .filter_map(|v| v["fields"]["bytes"].as_u64())
        .collect();
    let bases = lines
        .iter()
        .find(|v| v["fields"]["message"] == "actor stopped")
        .and_then(|v| v["fields"]["bases"].as_u64());
    Ok((bytes.len(), bytes.iter().sum(), bases))
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}
