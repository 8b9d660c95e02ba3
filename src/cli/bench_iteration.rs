//! `arlas bench iteration`: one ARLAS iteration of both players from an imitation-free
//! start (the base with fresh adapters, or full weights with `--adapters off`), fixed seed,
//! no evaluation; prints what it cost as one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use arlas::pipeline::models::AdapterMode;
use arlas::pipeline::records::Record;
use arlas::pipeline::{self, RunDir, RunOptions, Settings};
use arlas_actor::PrefillCount;
use arlas_game::PerPlayer;
use clap::Args;
use serde_json::json;

#[derive(Debug, Args)]
pub struct IterationBenchArgs {
    /// Base model of both players: tiny, tiny-20m, smollm2 or a model directory.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Start the attacker from this checkpoint or model directory instead (e.g. models/tiny-2m,
    /// the 2M model `--model tiny` builds, for the mixed setting).
    #[arg(long)]
    pub attacker: Option<String>,
    /// Where models are built and fetched.
    #[arg(long, env = "ARLAS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Suites the tasks come from (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub suites: Vec<arlas_game::Suite>,
    /// Train tasks per player.
    #[arg(long, default_value_t = 4)]
    pub tasks: usize,
    /// Rollouts per task (a GRPO group).
    #[arg(long, default_value_t = 6)]
    pub group_size: usize,
    /// Agent turns per episode.
    #[arg(long, default_value_t = 4)]
    pub max_turns: u32,
    /// Reward lost per format error. An imitation-free start rarely completes a task: with
    /// no penalty every group's rewards are equal and nothing trains, so the benchmark would
    /// not measure training.
    #[arg(long, default_value_t = 0.1)]
    pub format_error_penalty: f32,
    /// LoRA adapters over a shared base (on), full fine-tuning (off), or auto.
    #[arg(long, default_value = "auto")]
    pub adapters: AdapterMode,
    /// Items per GRPO micro-batch (memory vs speed).
    #[arg(long)]
    pub micro_batch: Option<usize>,
    /// Padded tokens per GRPO micro-batch at most (0 = no cap; default: the run's settings).
    #[arg(long)]
    pub micro_batch_tokens: Option<usize>,
    /// Recompute each layer in the backward pass instead of keeping its activations
    /// (true or false; default: the run's settings).
    #[arg(long)]
    pub activation_checkpointing: Option<bool>,
    /// Seed of the run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, env = "ARLAS_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Run directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// One JSON object on stdout (the default output is the same JSON, pretty).
    #[arg(long)]
    pub json: bool,
}

/// The run's settings: the defaults of `arlas train` with an imitation-free start.
fn settings(args: &IterationBenchArgs) -> Settings {
    let mut s = Settings::default();
    s.model.clone_from(&args.model);
    s.models_dir.clone_from(&args.models_dir);
    s.attacker_init = args.attacker.as_ref().map(PathBuf::from);
    s.seed = args.seed;
    s.adapters.mode = args.adapters;
    s.warmup.episodes = 4;
    s.warmup.epochs = 0;
    s.tasks_per_iteration = args.tasks;
    s.group_size = args.group_size;
    s.rollout.game.max_turns = args.max_turns;
    s.rollout.game.suites.clone_from(&args.suites);
    s.rollout.game.format_error_penalty = args.format_error_penalty;
    if let Some(m) = args.micro_batch {
        s.agent.train.micro_batch_size = m;
        s.attacker.train.micro_batch_size = m;
    }
    if let Some(t) = args.micro_batch_tokens {
        s.agent.train.micro_batch_tokens = t;
        s.attacker.train.micro_batch_tokens = t;
    }
    if let Some(on) = args.activation_checkpointing {
        s.agent.train.activation_checkpointing = on;
        s.attacker.train.activation_checkpointing = on;
    }
    s
}

pub fn run(args: IterationBenchArgs) -> anyhow::Result<()> {
    let device = arlas_policy::device_from_name(&args.device)
        .with_context(|| format!("--device {}", args.device))?;
    let tmp = tempfile::tempdir().context("cannot create a temporary run directory")?;
    let dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("run"));
    let settings = settings(&args);
    let started = Instant::now();
    let records = pipeline::bench_iteration(
        RunDir::new(dir),
        settings.clone(),
        &RunOptions {
            show_progress: false,
            device,
        },
    )?;
    let wall = started.elapsed().as_secs_f64();
    let iteration = records
        .iter()
        .find_map(|r| match r {
            Record::Iteration(i) => Some(i.clone()),
            _ => None,
        })
        .context("the iteration left no record")?;
    let trained_tokens: usize = records
        .iter()
        .filter_map(|r| match r {
            Record::Update(u) => Some(u.means.tokens),
            _ => None,
        })
        .sum();
    let out = json!({
        "bench": "iteration",
        "model": args.model,
        "attacker": args.attacker.as_deref().unwrap_or(&args.model),
        "adapters": settings.adapters,
        "suites": args.suites,
        "tasks": args.tasks,
        "group_size": args.group_size,
        "max_turns": args.max_turns,
        "format_error_penalty": args.format_error_penalty,
        "seed": args.seed,
        "micro_batch": settings.agent.train.micro_batch_size,
        "micro_batch_tokens": settings.agent.train.micro_batch_tokens,
        "activation_checkpointing": settings.agent.train.activation_checkpointing,
        "device": args.device,
        "seconds": iteration.seconds,
        "phase_seconds": iteration.phase_seconds,
        "wall_seconds": wall,
        "episodes": iteration.episodes,
        "sampled_tokens": iteration.sampled_tokens,
        "prefilled_tokens": iteration.prefilled_tokens,
        "prefill": prefill_json(iteration.prefill.as_ref()),
        "trained_tokens": trained_tokens,
        "peak_rss_bytes": peak_rss_bytes(),
        "agent_version": iteration.agent_version,
        "attacker_version": iteration.attacker_version,
        "arlas": env!("CARGO_PKG_VERSION"),
        "commit": env!("ARLAS_COMMIT"),
        "cpu": arlas_policy::bench::CpuInfo::current(),
    });
    super::bench::print_report(&out, args.json)
}

/// Per player, the prompt tokens prefilled with the KV cache kept between turns (what ran)
/// and without it (every prompt whole: the same episodes' prompt tokens), and their ratio.
fn prefill_json(prefill: Option<&PerPlayer<PrefillCount>>) -> serde_json::Value {
    let Some(p) = prefill else {
        return serde_json::Value::Null;
    };
    let one = |c: &PrefillCount| {
        #[allow(clippy::cast_precision_loss)] // token counts
        let saved = (c.prefilled > 0).then(|| c.prompt as f64 / c.prefilled as f64);
        json!({
            "prefilled_tokens": c.prefilled,
            "prefilled_tokens_without_reuse": c.prompt,
            "reduction": saved,
        })
    };
    json!({ "agent": one(&p.agent), "attacker": one(&p.attacker) })
}

/// The process's peak resident memory (`VmHWM` of /proc/self/status), in bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
