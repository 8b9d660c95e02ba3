//! `arlas coordinator`: the run's coordinator process (registry, versions, population,
//! checkpoints) over gRPC. Settings come from flags (or their `ARLAS_*` variables), then a
//! TOML file (`--config`), then defaults; see docs/distributed.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use arlas_coordinator::service::{CoordinatorConfig, DEFAULT_SHUTDOWN_GRACE, ServerConfig};
use arlas_coordinator::{OpponentPool, OpponentSampling};
use arlas_runtime::auth::Token;
use clap::Args;
use serde::{Deserialize, Serialize};

const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorArgs {
    /// gRPC address to serve on (port 0 picks a free port; the bound addresses are printed
    /// as one JSON line on stdout). Default 127.0.0.1:50051.
    #[arg(long, env = "ARLAS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HTTP address of the read-only /metrics (Prometheus) and /healthz endpoint.
    /// Default 127.0.0.1:9090.
    #[arg(long, env = "ARLAS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Data directory (created if absent): run.json, payoff.json, blobs/, population/.
    /// Everything in it is verified by hash at start-up.
    #[arg(long, env = "ARLAS_DATA")]
    pub data: Option<PathBuf>,
    /// File holding the shared token that every rpc must carry as `authorization: Bearer
    /// <token>`. Required when --listen is not a loopback address.
    #[arg(long, env = "ARLAS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// TOML file with any of these settings (snake_case keys); flags override it.
    #[arg(long, env = "ARLAS_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// A lease ends this many seconds after its last heartbeat. Default 15.
    #[arg(long, env = "ARLAS_LEASE_TTL_SECS")]
    pub lease_ttl_secs: Option<f64>,
    /// Which population members are opponents: all (ARLAS) or latest. Default all.
    #[arg(long, env = "ARLAS_OPPONENTS")]
    pub opponents: Option<OpponentPool>,
    /// How opponents are weighted: uniform, recent or pfsp. Default uniform.
    #[arg(long, env = "ARLAS_OPPONENT_SAMPLING")]
    pub opponent_sampling: Option<OpponentSampling>,
    /// Largest checkpoint blob accepted, in bytes. Default 64 GiB.
    #[arg(long, env = "ARLAS_MAX_CHECKPOINT_BYTES")]
    pub max_checkpoint_bytes: Option<u64>,
    /// Checkpoint blobs kept per player (population members are always kept). Default 4.
    #[arg(long, env = "ARLAS_KEEP_VERSIONS")]
    pub keep_versions: Option<usize>,
    /// Seed of opponent sampling (default: from the OS).
    #[arg(long, env = "ARLAS_SEED")]
    pub seed: Option<u64>,
    /// Seconds in-flight rpcs get after SIGTERM / Ctrl-C before connections are closed.
    /// Default 10.
    #[arg(long, env = "ARLAS_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<f64>,
}

/// Every setting resolved: flag, else file, else default.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub server: ServerConfig,
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("{flag} must be a positive number of seconds, got {value}"))
}

pub fn resolve(args: CoordinatorArgs) -> anyhow::Result<Settings> {
    let args = crate::config::load(&CoordinatorArgs::default(), args.config.as_deref(), &args)?;
    let defaults = CoordinatorConfig::default();
    let data = args
        .data
        .context("no data directory: pass --data DIR (or set data in the --config file)")?;
    let token = match args.token_file {
        Some(path) => Some(Token::from_file(&path)?),
        None => None,
    };
    let lease_ttl = match args.lease_ttl_secs {
        Some(s) => seconds("--lease-ttl-secs", s)?,
        None => defaults.lease_ttl,
    };
    let shutdown_grace = match args.shutdown_grace_secs {
        Some(s) => seconds("--shutdown-grace-secs", s)?,
        None => DEFAULT_SHUTDOWN_GRACE,
    };
    let keep_versions = args.keep_versions.unwrap_or(defaults.keep_versions);
    anyhow::ensure!(
        keep_versions >= 1,
        "--keep-versions must be at least 1 (the current version), got {keep_versions}"
    );
    let coordinator = CoordinatorConfig {
        lease_ttl,
        opponent_pool: args.opponents.unwrap_or(defaults.opponent_pool),
        opponent_sampling: args.opponent_sampling.unwrap_or(defaults.opponent_sampling),
        max_checkpoint_bytes: args
            .max_checkpoint_bytes
            .unwrap_or(defaults.max_checkpoint_bytes),
        keep_versions,
        seed: args.seed,
    };
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
        server: ServerConfig {
            data_dir: data,
            coordinator,
            token,
            shutdown_grace,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> CoordinatorArgs {
        super::super::parse_for_tests(args).unwrap()
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("coordinator.toml");
        std::fs::write(
            &config,
            "data = \"/from/file\"\nlease_ttl_secs = 30\nopponent_sampling = \"pfsp\"\nlisten = \"127.0.0.1:7000\"\n",
        )
        .unwrap();
        let c = config.to_str().unwrap();
        let s = resolve(parse(&["--config", c, "--lease-ttl-secs", "2.5"])).unwrap();
        assert_eq!(s.server.data_dir, PathBuf::from("/from/file"));
        assert_eq!(s.server.coordinator.lease_ttl, Duration::from_millis(2500));
        assert_eq!(
            s.server.coordinator.opponent_sampling,
            OpponentSampling::Pfsp
        );
        assert_eq!(s.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(s.metrics_listen, DEFAULT_METRICS_LISTEN.parse().unwrap());
        assert_eq!(s.server.coordinator.keep_versions, 4);
        assert!(s.server.token.is_none());
    }

    #[test]
    fn unknown_keys_missing_data_and_bad_values_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("c.toml");
        std::fs::write(&config, "data = \"d\"\nlease_tll_secs = 3\n").unwrap();
        let err = resolve(parse(&["--config", config.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("lease_tll_secs"), "{err:#}");
        let err = resolve(parse(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("--data"), "{err:#}");
        let err = resolve(parse(&["--data", "d", "--lease-ttl-secs", "0"])).unwrap_err();
        assert!(format!("{err:#}").contains("positive"), "{err:#}");
        let token = tmp.path().join("token");
        std::fs::write(&token, "short\n").unwrap();
        let err = resolve(parse(&[
            "--data",
            "d",
            "--token-file",
            token.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(format!("{err:#}").contains("fewer than 16"), "{err:#}");
    }
}
