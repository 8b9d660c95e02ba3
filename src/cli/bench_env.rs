//! `arlas bench env`: environment steps per second through an environment service, with
//! 1 and more concurrent clients (as many actors share one service), each playing batches
//! of AgentDojo episodes with the service's own `oracle` agent (no model: the service's cost
//! alone).

use std::time::Instant;

use arlas::environments::{EnvArgs, EnvKind};
use arlas_game::{GameConfig, Split, play::episode_seed};
use clap::Args;
use serde::Serialize;

#[derive(Debug, Clone, Args)]
pub struct EnvBenchArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// Concurrent clients to measure, each its own connection (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4])]
    pub clients: Vec<usize>,
    /// Episodes each client plays, in batches of --batch.
    #[arg(long, default_value_t = 64)]
    pub episodes: usize,
    /// Episodes per batch (one rpc per turn for the whole batch, as the rollout does).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Suites to draw from (default all).
    #[arg(long, value_delimiter = ',')]
    pub suites: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    clients: usize,
    episodes: usize,
    /// Agent actions applied (one per episode and turn).
    steps: u64,
    /// Batched rpcs (reset, inject, step).
    rpcs: u64,
    seconds: f64,
    steps_per_sec: f64,
    episodes_per_sec: f64,
}

/// One client's episodes; returns (steps, rpcs).
fn client(
    service: &arlas::environments::EnvService,
    args: &EnvBenchArgs,
    index: usize,
) -> anyhow::Result<(u64, u64)> {
    let game = GameConfig {
        max_turns: arlas::environments::AGENTDOJO_MAX_TURNS,
        ..GameConfig::default()
    };
    let mut env = service.open(&args.suites, &game)?;
    let (mut steps, mut rpcs) = (0u64, 0u64);
    for start in (0..args.episodes).step_by(args.batch.max(1)) {
        let n = args.batch.min(args.episodes - start);
        let tasks = (start..start + n)
            .map(|k| env.sample(Split::Train, episode_seed(index as u64, k as u64)))
            .collect::<Result<Vec<_>, _>>()?;
        env.reset(&tasks)?;
        env.inject(&(0..n).map(|i| (i, None)).collect::<Vec<_>>())?;
        rpcs += 2;
        loop {
            let actions: Vec<(usize, String)> = (0..n)
                .filter(|&i| !env.episode(i).is_done())
                .map(|i| {
                    (
                        i,
                        env.episode(i).scripted_action("oracle").unwrap_or_default(),
                    )
                })
                .collect();
            if actions.is_empty() {
                break;
            }
            steps += actions.len() as u64;
            env.step(&actions)?;
            rpcs += 1;
        }
    }
    Ok((steps, rpcs))
}

#[allow(clippy::cast_precision_loss)]
pub fn run(args: EnvBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.env.env != EnvKind::Builtin || args.env.env_url.is_some(),
        "bench env measures an environment service: --env agentdojo or --env-url URL"
    );
    let service = args.env.settings().start()?;
    // Warm the service (its environment caches fill on first use).
    let warm = EnvBenchArgs {
        episodes: args.batch,
        ..args.clone()
    };
    client(&service, &warm, 999)?;
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let started = Instant::now();
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let (service, args) = (&service, &args);
                    scope.spawn(move || client(service, args, c))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow::anyhow!("a client panicked"))?)
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let steps: u64 = results.iter().map(|r| r.0).sum();
        let rpcs: u64 = results.iter().map(|r| r.1).sum();
        let episodes = clients * args.episodes;
        rows.push(Row {
            clients,
            episodes,
            steps,
            rpcs,
            seconds,
            steps_per_sec: steps as f64 / seconds,
            episodes_per_sec: episodes as f64 / seconds,
        });
    }
    let out = serde_json::json!({
        "bench": "env",
        "environment": args.env.env,
        "suites": args.suites,
        "batch": args.batch,
        "rows": rows,
        "env": arlas_policy::bench::BenchEnv::current(),
    });
    super::bench::print_report(&out, args.json)
}
