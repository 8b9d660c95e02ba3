//! Episodes/s and learner busy fraction of a whole local cluster (`arlas::cluster`): a
//! coordinator, two learners and N actors as real `arlas` processes, measured over a fixed
//! window that opens at the first accepted trajectory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arlas::cluster::{ClusterConfig, LocalCluster};
use arlas::roles::actor::ActorArgs;
use arlas::roles::coordinator::CoordinatorArgs;
use arlas::roles::learner::LearnerArgs;
use arlas_core::{PerPlayer, Player};
use arlas_runtime::auth::Token;
use serde_json::{Value, json};

use crate::probe::{learner_status, load_average, scrape, scrape_all};

/// What to run.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Actor processes.
    #[arg(long, default_value_t = 1)]
    pub actors: usize,
    /// Seconds measured after the first accepted trajectory.
    #[arg(long, default_value_t = 60)]
    pub secs: u64,
    /// Lock-step mode on the learners and the actors.
    #[arg(long)]
    pub sync: bool,
    /// A run directory warmed up by `arlas train --iterations 0`: the learners start from
    /// its `agent/warmup` and `attacker/warmup` (default: a random tiny model).
    #[arg(long)]
    pub warm: Option<PathBuf>,
    /// The cluster's directory (emptied first).
    #[arg(long)]
    pub dir: PathBuf,
    /// The `arlas` binary.
    #[arg(long, default_value = "target/release/arlas")]
    pub exe: PathBuf,
    /// Train tasks per phase of an actor's round.
    #[arg(long, default_value_t = 2)]
    pub tasks: usize,
    /// Episodes per task (a GRPO group); a learner batch is tasks × group size.
    #[arg(long, default_value_t = 4)]
    pub group_size: usize,
    /// New tokens per agent action and per injection, at most.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// The game's reward penalty per format error, passed to the actors: with a weak
    /// warm-up agent it is what makes a group's rewards differ (so updates run).
    #[arg(long, default_value_t = 0.0)]
    pub format_error_penalty: f32,
}

/// One counter snapshot of the cluster.
struct Snapshot {
    at: Instant,
    accepted: [u64; 2],
    trained: [u64; 2],
    versions: [u64; 2],
    episodes: f64,
    busy_ms: [f64; 2],
    updates: [f64; 2],
}

async fn snapshot(cluster: &LocalCluster, token: &Token) -> anyhow::Result<Snapshot> {
    let learners = [&cluster.agent_learner, &cluster.attacker_learner];
    let mut s = Snapshot {
        at: Instant::now(),
        accepted: [0; 2],
        trained: [0; 2],
        versions: [0; 2],
        episodes: scrape_all(&cluster.actors, "arlas_episodes_total")?,
        busy_ms: [0.0; 2],
        updates: [0.0; 2],
    };
    for (i, role) in learners.into_iter().enumerate() {
        let grpc = role.announced().grpc.context("a learner without gRPC")?;
        let status = learner_status(grpc, token).await?;
        s.accepted[i] = status.accepted_total;
        s.trained[i] = status.trained_total;
        s.versions[i] = status.versions.first().map_or(0, |v| v.version);
        let metrics = role
            .announced()
            .metrics
            .context("a learner without metrics")?;
        s.busy_ms[i] = scrape(metrics, "arlas_learner_batch_seconds_sum")? * 1000.0;
        s.updates[i] = scrape(metrics, "arlas_updates_total")?;
    }
    Ok(s)
}

fn alive(cluster: &mut LocalCluster) -> anyhow::Result<()> {
    for role in cluster.roles_mut() {
        if let Some(status) = role.try_exit()? {
            anyhow::bail!(
                "{} exited ({status}); see {}",
                role.name(),
                role.log().display()
            );
        }
    }
    Ok(())
}

/// Starts the cluster, measures, stops it; returns the JSON record.
pub fn run(args: &ClusterArgs) -> anyhow::Result<Value> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    let learner = |player: Player| LearnerArgs {
        batch_episodes: Some(args.tasks * args.group_size),
        sync: args.sync,
        init: args
            .warm
            .as_ref()
            .map(|warm| warm.join(player.name()).join("warmup")),
        model: args.warm.is_none().then(|| "tiny".to_string()),
        ..LearnerArgs::default()
    };
    let config = ClusterConfig {
        exe: args.exe.clone(),
        dir: args.dir.clone(),
        actors: args.actors,
        coordinator: CoordinatorArgs::default(),
        learners: PerPlayer::from_fn(learner),
        actor: ActorArgs {
            tasks: Some(args.tasks),
            group_size: Some(args.group_size),
            agent_max_tokens: Some(args.max_tokens),
            attacker_max_tokens: Some(args.max_tokens),
            format_error_penalty: Some(args.format_error_penalty),
            sync: args.sync,
            ..ActorArgs::default()
        },
        env: vec![("CANDLE_NUM_THREADS".into(), "1".into())],
    };
    let started = Instant::now();
    let mut cluster = LocalCluster::start(config)?;
    let token = Token::from_file(cluster.token_file())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(600);
        let first = loop {
            alive(&mut cluster)?;
            let s = snapshot(&cluster, &token).await?;
            if s.accepted.iter().sum::<u64>() > 0 {
                break s;
            }
            anyhow::ensure!(Instant::now() < deadline, "no trajectory accepted in 600 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let to_first = started.elapsed().as_secs_f64();
        let load_before = load_average();
        let end = first.at + Duration::from_secs(args.secs);
        // Trajectories arrive a phase at a time: the last snapshot in which the accepted
        // count changed closes an event-to-event window without the idle tail.
        let mut last_change = snapshot(&cluster, &token).await?;
        let last = loop {
            alive(&mut cluster)?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = snapshot(&cluster, &token).await?;
            if s.at >= end {
                break s;
            }
            if s.accepted != last_change.accepted {
                last_change = s;
            }
        };
        Ok::<_, anyhow::Error>(record(
            args,
            [&first, &last_change, &last],
            to_first,
            load_before,
        ))
    });
    drop(runtime);
    let stopped = cluster.shutdown();
    let record = result?;
    stopped?;
    Ok(record)
}

#[allow(clippy::cast_precision_loss)]
fn record(
    args: &ClusterArgs,
    [a, changed, b]: [&Snapshot; 3],
    to_first: f64,
    load_before: [f64; 3],
) -> Value {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let event_secs = changed.at.duration_since(a.at).as_secs_f64();
    let event_accepted: u64 = (0..2).map(|i| changed.accepted[i] - a.accepted[i]).sum();
    let accepted: u64 = (0..2).map(|i| b.accepted[i] - a.accepted[i]).sum();
    let per_learner = |i: usize, name: &str| {
        json!({
            "player": name,
            "accepted": b.accepted[i] - a.accepted[i],
            "trained": b.trained[i] - a.trained[i],
            "version": [a.versions[i], b.versions[i]],
            "updates": b.updates[i] - a.updates[i],
            "busy_ms": b.busy_ms[i] - a.busy_ms[i],
            "busy_fraction": (b.busy_ms[i] - a.busy_ms[i]) / 1000.0 / secs,
        })
    };
    json!({
        "bench": "cluster",
        "actors": args.actors,
        "sync": args.sync,
        "warm": args.warm.is_some(),
        "tasks": args.tasks,
        "group_size": args.group_size,
        "max_tokens": args.max_tokens,
        "format_error_penalty": args.format_error_penalty,
        "window_s": secs,
        "start_to_first_accept_s": to_first,
        "episodes": b.episodes - a.episodes,
        "episodes_per_s": (b.episodes - a.episodes) / secs,
        "accepted": accepted,
        "accepted_per_s": accepted as f64 / secs,
        // From the first accepted trajectory to the last arrival inside the window.
        "event_window_s": event_secs,
        "event_accepted": event_accepted,
        "event_accepted_per_s": event_accepted as f64 / event_secs.max(f64::EPSILON),
        "learners": [per_learner(0, "agent"), per_learner(1, "attacker")],
        "load_before": load_before,
        "load_after": load_average(),
    })
}
