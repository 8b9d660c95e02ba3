//! `arlas learner`: trains one player from the trajectories actors stream to it (gRPC
//! `arlas.v1.Learner`), persisting each before acknowledging it, and publishes every new
//! version to the coordinator. Settings come from flags (or their `ARLAS_*` variables),
//! then a TOML file (`--config`), then defaults; see docs/distributed.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::pipeline::models::{AdapterMode, AdapterSettings, Models};
use anyhow::Context as _;
use arlas_learner::Player;
use arlas_learner::service::ServiceConfig;
use arlas_learner::service::config::{
    DEFAULT_BATCH_EPISODES, DEFAULT_QUEUE_CAPACITY, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STREAM_CREDITS,
};
use arlas_policy::ModelSpec;
use arlas_runtime::auth::Token;
use clap::Args;
use serde::{Deserialize, Serialize};

const DEFAULT_LISTEN: &str = "127.0.0.1:50052";
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9091";
const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:50051";

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerArgs {
    /// The player this learner trains: agent or attacker.
    #[arg(long, env = "ARLAS_PLAYER")]
    pub player: Option<Player>,
    /// The coordinator's gRPC URL. Default http://127.0.0.1:50051.
    #[arg(long, env = "ARLAS_COORDINATOR")]
    pub coordinator: Option<String>,
    /// gRPC address to serve `arlas.v1.Learner` on (port 0 picks a free port; the bound
    /// addresses are printed as one JSON line on stdout). Default 127.0.0.1:50052.
    #[arg(long, env = "ARLAS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP address of the read-only /metrics (Prometheus) and /healthz endpoint.
    /// Default 127.0.0.1:9091.
    #[arg(long, env = "ARLAS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Data directory (created if absent; resumed after a restart): state.json,
    /// checkpoints/, journal/, publish/.
    #[arg(long, env = "ARLAS_DATA")]
    pub data: Option<PathBuf>,
    /// The URL actors reach this learner at, registered with the coordinator.
    /// Default http://<the bound --listen address>.
    #[arg(long, env = "ARLAS_ADVERTISE")]
    pub advertise: Option<String>,
    /// Name registered with the coordinator. Default learner-<player>.
    #[arg(long, env = "ARLAS_NAME")]
    pub name: Option<String>,
    /// File holding the shared token: required of callers as `authorization: Bearer
    /// <token>` and sent to the coordinator. Required when --listen is not loopback.
    #[arg(long, env = "ARLAS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// TOML file with any of these settings (snake_case keys); flags override it.
    #[arg(long, env = "ARLAS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The initial policy on an empty data directory: tiny, tiny-20m, smollm2 or a model
    /// directory. Default tiny. Ignored when resuming.
    #[arg(long, env = "ARLAS_MODEL")]
    pub model: Option<String>,
    /// Start from this model directory instead (e.g. RUN/agent/warmup from `arlas train`).
    #[arg(long, env = "ARLAS_INIT")]
    pub init: Option<PathBuf>,
    /// Where tiny models are built and cached and smollm2 is fetched. Default models.
    #[arg(long, env = "ARLAS_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// LoRA adapters over a frozen base (`on`), every weight (`off`), or `auto`: adapters for
    /// pretrained bases, full fine-tuning for the random-init tiny presets. An adapter
    /// checkpoint as --init keeps training its adapters. Default auto.
    #[arg(long, env = "ARLAS_ADAPTERS")]
    pub adapters: Option<AdapterMode>,
    /// Rank of fresh adapters. Default 16.
    #[arg(long, env = "ARLAS_LORA_RANK")]
    pub lora_rank: Option<usize>,
    /// Alpha of fresh adapters (their output is scaled by alpha / rank). Default 32.
    #[arg(long, env = "ARLAS_LORA_ALPHA")]
    pub lora_alpha: Option<f64>,
    /// Projections that get fresh adapters (comma-separated: q_proj, k_proj, v_proj, o_proj,
    /// gate_proj, up_proj, down_proj). Default all.
    #[arg(long, env = "ARLAS_LORA_TARGETS", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lora_targets: Vec<String>,
    /// Device: cpu, cuda or cuda:N. Default cpu.
    #[arg(long, env = "ARLAS_DEVICE")]
    pub device: Option<String>,
    /// Seed of the initial weights (tiny) and of the updates' shuffling. Default 0.
    #[arg(long, env = "ARLAS_SEED")]
    pub seed: Option<u64>,
    /// Lock-step mode: max staleness 0 and batches of exactly --batch-episodes.
    #[arg(long, env = "ARLAS_SYNC")]
    #[serde(default, skip_serializing_if = "crate::config::is_false")]
    pub sync: bool,
    /// Trajectories played by a policy more than this many versions older than the
    /// learner's are dropped as STALE. Default 4.
    #[arg(long, env = "ARLAS_MAX_STALENESS")]
    pub max_staleness: Option<u64>,
    /// Trajectories per update (plus the queued members of their groups). Default 32.
    #[arg(long, env = "ARLAS_BATCH_EPISODES")]
    pub batch_episodes: Option<usize>,
    /// Trajectories persisted and not yet trained, at most; beyond, actors get no credits
    /// and OVERFLOW. Default 1024.
    #[arg(long, env = "ARLAS_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Most credits (unacknowledged trajectories in flight) one actor stream holds.
    /// Default 64.
    #[arg(long, env = "ARLAS_STREAM_CREDITS")]
    pub stream_credits: Option<u32>,
    /// Learning rate (new data directories; a resumed learner keeps its saved settings).
    #[arg(long, env = "ARLAS_LR")]
    pub lr: Option<f64>,
    /// PPO clip range below 1 (new data directories).
    #[arg(long, env = "ARLAS_CLIP_LOW")]
    pub clip_low: Option<f64>,
    /// PPO clip range above 1 (new data directories).
    #[arg(long, env = "ARLAS_CLIP_HIGH")]
    pub clip_high: Option<f64>,
    /// Weight of the KL penalty to the version-1 reference (new data directories).
    #[arg(long, env = "ARLAS_KL_COEF")]
    pub kl_coef: Option<f64>,
    /// Items per optimizer step. Default 16.
    #[arg(long, env = "ARLAS_MINIBATCH_SIZE")]
    pub minibatch_size: Option<usize>,
    /// Seconds in-flight rpcs and an update in progress get after SIGTERM / Ctrl-C.
    /// Default 10.
    #[arg(long, env = "ARLAS_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<f64>,
}

/// Every setting resolved: flag, else file, else default.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub service: ServiceConfig,
}

fn positive(flag: &str, value: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        value.is_finite() && value > 0.0,
        "{flag} must be a positive number, got {value}"
    );
    Ok(value)
}

/// The adapters of `args`: the defaults where a flag is absent.
fn adapter_settings(args: &LearnerArgs) -> anyhow::Result<AdapterSettings> {
    let defaults = AdapterSettings::default();
    let mut lora = defaults.lora.clone();
    if let Some(rank) = args.lora_rank {
        lora.rank = rank;
    }
    if let Some(alpha) = args.lora_alpha {
        lora.alpha = alpha;
    }
    if !args.lora_targets.is_empty() {
        lora.targets.clone_from(&args.lora_targets);
    }
    let settings = AdapterSettings {
        mode: args.adapters.unwrap_or(defaults.mode),
        lora,
        ..defaults
    };
    settings.validate()?;
    Ok(settings)
}

pub fn resolve(args: LearnerArgs) -> anyhow::Result<Settings> {
    let args = crate::config::load(&LearnerArgs::default(), args.config.as_deref(), &args)?;
    let adapters = adapter_settings(&args)?;
    let player = args.player.context(
        "no player: pass --player agent or --player attacker (or set player in the --config file)",
    )?;
    let data = args
        .data
        .context("no data directory: pass --data DIR (or set data in the --config file)")?;
    let coordinator = args
        .coordinator
        .unwrap_or_else(|| DEFAULT_COORDINATOR.to_string());
    let model = match args.init {
        Some(dir) => ModelSpec::Path(dir),
        None => {
            let name = args.model.unwrap_or_else(|| "tiny".into());
            ModelSpec::parse(&name).with_context(|| format!("--model {name}"))?
        }
    };
    let seed = args.seed.unwrap_or(0);
    let models_dir = args.models_dir.unwrap_or_else(|| PathBuf::from("models"));
    let device_name = args.device.unwrap_or_else(|| "cpu".into());
    let lora = adapters.for_spec(&model);
    let device = arlas_policy::device_from_name(&device_name)?;
    let models = Models::new(models_dir, device.clone());
    let mut service = ServiceConfig::new(player, data, coordinator, model);
    service.device = device;
    service.load = models.options(true, seed, lora);
    service.seed = seed;
    service.advertise = args.advertise;
    if let Some(name) = args.name {
        service.name = name;
    }
    service.token = match args.token_file {
        Some(path) => Some(Token::from_file(&path)?),
        None => None,
    };
    service.sync = args.sync;
    if let Some(n) = args.max_staleness {
        service.learner.max_staleness = n;
    }
    service.batch_episodes = args.batch_episodes.unwrap_or(DEFAULT_BATCH_EPISODES);
    service.queue_capacity = args.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
    service.stream_credits = args.stream_credits.unwrap_or(DEFAULT_STREAM_CREDITS);
    let train = &mut service.learner.train;
    if let Some(v) = args.lr {
        train.learning_rate = positive("--lr", v)?;
    }
    if let Some(v) = args.clip_low {
        train.clip_low = positive("--clip-low", v)?;
    }
    if let Some(v) = args.clip_high {
        train.clip_high = positive("--clip-high", v)?;
    }
    if let Some(v) = args.kl_coef {
        anyhow::ensure!(
            v.is_finite() && v >= 0.0,
            "--kl-coef must be 0 or more, got {v}"
        );
        train.kl_coef = v;
    }
    if let Some(n) = args.minibatch_size {
        service.learner.minibatch_size = n;
    }
    service.shutdown_grace = match args.shutdown_grace_secs {
        Some(s) => Duration::from_secs_f64(positive("--shutdown-grace-secs", s)?),
        None => DEFAULT_SHUTDOWN_GRACE,
    };
    service.validate()?;
    let default_addr = |s: &str| s.parse::<SocketAddr>().context("built-in default address");
    Ok(Settings {
        listen: match args.listen {
            Some(a) => a,
            None => default_addr(DEFAULT_LISTEN)?,
        },
        metrics_listen: match args.metrics_listen {
            Some(a) => a,
            None => default_addr(DEFAULT_METRICS_LISTEN)?,
        },
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> LearnerArgs {
        super::super::parse_for_tests(args).unwrap()
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("learner.toml");
        std::fs::write(
            &config,
            "player = \"attacker\"\ndata = \"/from/file\"\nbatch_episodes = 8\nqueue_capacity = 64\nmax_staleness = 2\n",
        )
        .unwrap();
        let c = config.to_str().unwrap();
        let s = resolve(parse(&["--config", c, "--batch-episodes", "16", "--sync"])).unwrap();
        assert_eq!(s.service.player, Player::Attacker);
        assert_eq!(s.service.data_dir, PathBuf::from("/from/file"));
        assert_eq!(s.service.batch_episodes, 16);
        assert_eq!(s.service.queue_capacity, 64);
        assert_eq!(s.service.max_staleness(), 0, "--sync forces staleness 0");
        assert_eq!(s.service.coordinator, DEFAULT_COORDINATOR);
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
        assert!(s.service.token.is_none());
    }

    #[test]
    fn unknown_keys_missing_values_and_stalling_sizes_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("c.toml");
        std::fs::write(&config, "data = \"d\"\nbatch_episode = 3\n").unwrap();
        let err = resolve(parse(&["--config", config.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("batch_episode"), "{err:#}");
        let err = resolve(parse(&["--data", "d"])).unwrap_err();
        assert!(format!("{err:#}").contains("--player"), "{err:#}");
        let err = resolve(parse(&["--player", "agent"])).unwrap_err();
        assert!(format!("{err:#}").contains("--data"), "{err:#}");
        let err = resolve(parse(&[
            "--player",
            "agent",
            "--data",
            "d",
            "--batch-episodes",
            "64",
            "--queue-capacity",
            "32",
        ]))
        .unwrap_err();
        assert!(format!("{err:#}").contains("never start"), "{err:#}");
    }
}
