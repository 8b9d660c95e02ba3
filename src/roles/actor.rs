//! `arlas actor`: plays episodes for a distributed run — follows the coordinator's versions,
//! keeps the policies loaded from a checkpoint cache, and streams trajectories to the
//! learners. Settings come from flags (or their `ARLAS_*` variables), then a TOML file
//! (`--config`), then defaults; see docs/distributed.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use arlas_actor::RolloutConfig;
use arlas_actor::node::NodeConfig;
use arlas_actor::round::RoundShape;
use arlas_runtime::auth::Token;
use clap::Args;
use serde::{Deserialize, Serialize};

const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9092";
const DEFAULT_TASKS: usize = 4;
const DEFAULT_GROUP_SIZE: usize = 8;
const DEFAULT_MAX_PENDING: usize = 256;
const DEFAULT_CACHE_KEEP: usize = 2;
const DEFAULT_SYNC_TIMEOUT_SECS: u64 = 600;

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorArgs {
    /// gRPC URL of the coordinator, e.g. http://10.0.0.2:50051.
    #[arg(long, env = "ARLAS_COORDINATOR")]
    pub coordinator: Option<String>,
    /// HTTP address of the read-only /metrics (Prometheus) and /healthz endpoint (port 0
    /// picks a free port; printed in the "started" line). Default 127.0.0.1:9092.
    #[arg(long, env = "ARLAS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Checkpoint cache directory (created if absent): blobs/<sha256> and
    /// checkpoints/<sha256>/; reused across restarts.
    #[arg(long, env = "ARLAS_CACHE")]
    pub cache: Option<PathBuf>,
    /// Checkpoints kept in the cache besides the ones in use (older versions, unassigned
    /// population members); the rest is deleted after each round. Default 2.
    #[arg(long, env = "ARLAS_CACHE_KEEP")]
    pub cache_keep: Option<usize>,
    /// File holding the shared token sent to the coordinator and the learners.
    #[arg(long, env = "ARLAS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// TOML file with any of these settings (snake_case keys); flags override it.
    #[arg(long, env = "ARLAS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Name to register with (logs, metrics). Default: $HOSTNAME, else actor-<pid>.
    #[arg(long, env = "ARLAS_NAME")]
    pub name: Option<String>,
    /// Seed of task choice and sampling, mixed with a random number drawn at start (so two
    /// actors with the same seed do not play the same episodes). Default 0.
    #[arg(long, env = "ARLAS_SEED")]
    pub seed: Option<u64>,
    /// Lock-step: after each round, wait until both learners published a newer version.
    #[arg(long, env = "ARLAS_SYNC")]
    #[serde(default, skip_serializing_if = "crate::config::is_false")]
    pub sync: bool,
    /// The longest a lock-step (--sync) wait for new versions lasts before the next round
    /// plays the current ones, in seconds. Default 600.
    #[arg(long, env = "ARLAS_SYNC_TIMEOUT_SECS")]
    pub sync_timeout_secs: Option<u64>,
    /// Episodes per task (a GRPO group). Default 8.
    #[arg(long, env = "ARLAS_GROUP_SIZE")]
    pub group_size: Option<usize>,
    /// Train tasks per phase of a round (the attacker phase and the agent phase each play
    /// tasks × group-size episodes). Default 4.
    #[arg(long, env = "ARLAS_TASKS")]
    pub tasks: Option<usize>,
    /// Agent turns before an episode ends at the turn limit.
    #[arg(long, env = "ARLAS_MAX_TURNS")]
    pub max_turns: Option<u32>,
    /// Reward subtracted per format error of a player (the game's rule; default 0).
    #[arg(long, env = "ARLAS_FORMAT_ERROR_PENALTY")]
    pub format_error_penalty: Option<f32>,
    /// Suites the tasks come from (comma-separated; built-in: web,email,banking,travel;
    /// agentdojo: workspace,travel,banking,slack; default all).
    #[arg(long, env = "ARLAS_SUITES", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<String>,
    /// Where episodes are played: builtin (in process) or agentdojo (an environment
    /// service: --env-url, or a local one started from envs/agentdojo). Default builtin.
    #[arg(long = "env", env = "ARLAS_ENV")]
    pub env: Option<crate::environments::EnvKind>,
    /// A running environment service, e.g. an AgentDojo sidecar (http://127.0.0.1:50060).
    #[arg(long, env = "ARLAS_ENV_URL")]
    pub env_url: Option<String>,
    /// File holding the environment service's token.
    #[arg(long, env = "ARLAS_ENV_TOKEN_FILE")]
    pub env_token_file: Option<PathBuf>,
    /// New tokens per agent action, at most.
    #[arg(long, env = "ARLAS_AGENT_MAX_TOKENS")]
    pub agent_max_tokens: Option<usize>,
    /// New tokens per injection, at most.
    #[arg(long, env = "ARLAS_ATTACKER_MAX_TOKENS")]
    pub attacker_max_tokens: Option<usize>,
    /// Sampling temperature of both players (1 keeps behaviour log-probs exact).
    #[arg(long, env = "ARLAS_TEMPERATURE")]
    pub temperature: Option<f32>,
    /// Episodes sampled together in one batch.
    #[arg(long, env = "ARLAS_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// Unsent trajectories kept per player while its learner is slow or away; when full,
    /// the oldest is dropped (and counted). Default 256.
    #[arg(long, env = "ARLAS_MAX_PENDING")]
    pub max_pending: Option<usize>,
    /// Stop (exit 0) after this many episodes were played, sent and acknowledged.
    /// Default: run until SIGTERM or Ctrl-C.
    #[arg(long, env = "ARLAS_EPISODES")]
    pub episodes: Option<u64>,
    /// Where LoRA checkpoints find their base model (tiny presets, smollm2). Default models.
    #[arg(long, env = "ARLAS_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Device to sample on: cpu, cuda or cuda:N. Default cpu.
    #[arg(long, env = "ARLAS_DEVICE")]
    pub device: Option<String>,
}

#[derive(Debug)]
pub struct Settings {
    pub metrics_listen: SocketAddr,
    pub node: NodeConfig,
    /// Where episodes are played (the built-in suites' list is in the node's game config).
    pub environment: crate::environments::EnvironmentSettings,
}

fn default_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("actor-{}", std::process::id()))
}

pub fn resolve(args: ActorArgs) -> anyhow::Result<Settings> {
    let args = crate::config::load(&ActorArgs::default(), args.config.as_deref(), &args)?;
    let coordinator = args.coordinator.context(
        "no coordinator: pass --coordinator http://HOST:PORT (or set coordinator in the --config file)",
    )?;
    let cache = args
        .cache
        .context("no cache directory: pass --cache DIR (or set cache in the --config file)")?;
    let token = match args.token_file {
        Some(path) => Some(Token::from_file(&path)?),
        None => None,
    };
    let group_size = args.group_size.unwrap_or(DEFAULT_GROUP_SIZE);
    anyhow::ensure!(
        group_size >= 2,
        "--group-size is {group_size}; GRPO needs at least 2 episodes per task"
    );
    let tasks = args.tasks.unwrap_or(DEFAULT_TASKS);
    anyhow::ensure!(
        (1..=1024).contains(&tasks),
        "--tasks must be between 1 and 1024, got {tasks}"
    );
    let max_pending = args.max_pending.unwrap_or(DEFAULT_MAX_PENDING);
    anyhow::ensure!(max_pending >= 1, "--max-pending must be at least 1");
    let mut rollout = RolloutConfig::default();
    if let Some(t) = args.max_turns {
        anyhow::ensure!(t >= 1, "--max-turns must be at least 1");
        rollout.game.max_turns = t;
    }
    if let Some(p) = args.format_error_penalty {
        rollout.game.format_error_penalty = p;
    }
    let mut environment = crate::environments::EnvironmentSettings {
        kind: args.env.unwrap_or_default(),
        url: args.env_url,
        token_file: args.env_token_file,
        suites: args.suites,
    };
    if environment.kind == crate::environments::EnvKind::Builtin && environment.url.is_none() {
        if !environment.suites.is_empty() {
            rollout.game.suites = crate::environments::parse_builtin_suites(&environment.suites)?;
        }
        environment.suites.clear();
    }
    rollout
        .game
        .validate()
        .context("the game settings (--max-turns, --format-error-penalty) are invalid")?;
    if let Some(n) = args.agent_max_tokens {
        rollout.agent_sampling.max_new_tokens = n;
    }
    if let Some(n) = args.attacker_max_tokens {
        rollout.attacker_sampling.max_new_tokens = n;
    }
    if let Some(t) = args.temperature {
        anyhow::ensure!(
            t.is_finite() && t >= 0.0,
            "--temperature must be 0 or more, got {t}"
        );
        rollout.agent_sampling.temperature = t;
        rollout.attacker_sampling.temperature = t;
    }
    if let Some(b) = args.batch_size {
        anyhow::ensure!(b >= 1, "--batch-size must be at least 1");
        rollout.batch_size = b;
    }
    let device_name = args.device.unwrap_or_else(|| "cpu".to_string());
    let device = arlas_policy::device_from_name(&device_name)
        .with_context(|| format!("--device {device_name}"))?;
    let metrics_listen = match args.metrics_listen {
        Some(a) => a,
        None => DEFAULT_METRICS_LISTEN
            .parse()
            .context("built-in default address")?,
    };
    Ok(Settings {
        metrics_listen,
        environment,
        node: NodeConfig {
            coordinator,
            token,
            name: args.name.unwrap_or_else(default_name),
            cache_dir: cache,
            cache_keep: args.cache_keep.unwrap_or(DEFAULT_CACHE_KEEP),
            models_dir: args.models_dir.unwrap_or_else(|| PathBuf::from("models")),
            device,
            shape: RoundShape { tasks, group_size },
            rollout,
            seed: args.seed.unwrap_or(0),
            sync: args.sync,
            sync_timeout: std::time::Duration::from_secs(
                args.sync_timeout_secs.unwrap_or(DEFAULT_SYNC_TIMEOUT_SECS),
            ),
            max_pending,
            episodes: args.episodes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ActorArgs {
        super::super::parse_for_tests(args).unwrap()
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("actor.toml");
        std::fs::write(
            &config,
            "coordinator = \"http://c:1\"\ncache = \"/from/file\"\ntasks = 2\ngroup_size = 3\nsync = true\nmax_turns = 5\nsuites = [\"banking\"]\nformat_error_penalty = 0.1\n",
        )
        .unwrap();
        let c = config.to_str().unwrap();
        let s = resolve(parse(&["--config", c, "--tasks", "6", "--episodes", "10"])).unwrap();
        assert_eq!(s.node.coordinator, "http://c:1");
        assert_eq!(s.node.cache_dir, PathBuf::from("/from/file"));
        assert_eq!(
            s.node.shape,
            RoundShape {
                tasks: 6,
                group_size: 3
            }
        );
        assert!(s.node.sync);
        assert_eq!(s.node.rollout.game.max_turns, 5);
        assert_eq!(s.node.rollout.game.suites, vec![arlas_game::Suite::Banking]);
        assert!((s.node.rollout.game.format_error_penalty - 0.1).abs() < 1e-6);
        assert_eq!(s.node.episodes, Some(10));
        assert_eq!(s.node.max_pending, DEFAULT_MAX_PENDING);
        assert_eq!(s.metrics_listen, DEFAULT_METRICS_LISTEN.parse().unwrap());
        assert!(s.node.token.is_none());
    }

    #[test]
    fn unknown_keys_missing_settings_and_bad_values_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("a.toml");
        std::fs::write(&config, "coordinator = \"http://c:1\"\ngroup_sise = 3\n").unwrap();
        let err = resolve(parse(&["--config", config.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("group_sise"), "{err:#}");
        let err = resolve(parse(&["--cache", "c"])).unwrap_err();
        assert!(format!("{err:#}").contains("--coordinator"), "{err:#}");
        let err = resolve(parse(&["--coordinator", "http://c:1"])).unwrap_err();
        assert!(format!("{err:#}").contains("--cache"), "{err:#}");
        let base = ["--coordinator", "http://c:1", "--cache", "c"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            resolve(parse(&v))
        };
        for bad in [
            &["--format-error-penalty=-1"][..],
            &["--group-size", "1"],
            &["--tasks", "0"],
            &["--max-pending", "0"],
            &["--device", "tpu"],
            &["--suites", "bankin"],
        ] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
        let err = with(&["--suites", "bankin"]).unwrap_err();
        assert!(format!("{err:#}").contains("bankin"), "{err:#}");
    }
}
