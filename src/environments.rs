//! Which environment plays the episodes: the built-in suites in process, or an environment
//! service (`arlas.v1.Environment`) — AgentDojo's suites from `envs/agentdojo/server.py`,
//! started here as a child process (`--env agentdojo`) or reached at `--env-url`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arlas_client::RemoteEnvironment;
use arlas_game::{BuiltinEnvironment, Environment, GameConfig, Suite};
use arlas_runtime::auth::Token;
use clap::{Args, ValueEnum};

/// The environments `--env` names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EnvKind {
    /// The built-in suites (web, email, banking, travel), in process.
    #[default]
    Builtin,
    /// AgentDojo v1.2.1 (workspace, travel, banking, slack) through its environment service.
    Agentdojo,
}

/// `--env`, `--env-url`, `--env-token-file`: where episodes are played.
#[derive(Debug, Clone, Default, Args)]
pub struct EnvArgs {
    /// The environment: builtin (in process) or agentdojo (an environment service; a local
    /// one is started from envs/agentdojo unless --env-url names one).
    #[arg(long = "env", env = "ARLAS_ENV", value_enum, default_value_t = EnvKind::Builtin)]
    pub env: EnvKind,
    /// A running environment service (http://HOST:PORT), e.g. from `arlas env agentdojo`.
    #[arg(long, env = "ARLAS_ENV_URL")]
    pub env_url: Option<String>,
    /// The token the environment service requires (a file holding it).
    #[arg(long, env = "ARLAS_ENV_TOKEN_FILE")]
    pub env_token_file: Option<PathBuf>,
}

/// AgentDojo's longest ground truth is 18 tool calls and an answer.
pub const AGENTDOJO_MAX_TURNS: u32 = 20;

impl EnvArgs {
    /// These flags as settings (no suites: commands take `--suites` themselves).
    pub fn settings(&self) -> EnvironmentSettings {
        EnvironmentSettings {
            kind: self.env,
            url: self.env_url.clone(),
            token_file: self.env_token_file.clone(),
            suites: Vec::new(),
        }
    }

    /// The turn limit of this environment's episodes when none is given.
    pub fn default_max_turns(&self) -> Option<u32> {
        (self.env == EnvKind::Agentdojo).then_some(AGENTDOJO_MAX_TURNS)
    }
}

/// Where a run's episodes are played (`environment` in a run's config.json).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentSettings {
    /// builtin or agentdojo.
    pub kind: EnvKind,
    /// A running environment service; none: a local one is started (agentdojo).
    pub url: Option<String>,
    /// The file holding the service's token.
    pub token_file: Option<PathBuf>,
    /// The environment's suites (agentdojo: workspace, travel, banking, slack; empty: all).
    /// The built-in suites are `rollout.game.suites`.
    pub suites: Vec<String>,
}

/// An environment service in use: reached at a URL or started here (stopped on drop).
pub struct EnvService {
    kind: EnvKind,
    url: Option<String>,
    token: Option<Token>,
    _local: Option<LocalService>,
}

impl EnvironmentSettings {
    /// Starts what the environment needs (a local AgentDojo service unless a URL is given).
    pub fn start(&self) -> anyhow::Result<EnvService> {
        let token = self
            .token_file
            .as_deref()
            .map(Token::from_file)
            .transpose()?;
        let (url, local) = match (self.kind, &self.url) {
            (EnvKind::Builtin, None) => (None, None),
            (_, Some(url)) => (Some(url.clone()), None),
            (EnvKind::Agentdojo, None) => {
                let local = LocalService::start(&agentdojo_dir(), "127.0.0.1:0", &[])?;
                (Some(local.url.clone()), Some(local))
            }
        };
        Ok(EnvService {
            kind: self.kind,
            url,
            token,
            _local: local,
        })
    }
}

impl EnvService {
    /// One environment for `suites` (its suites' names; empty = all; the built-in suites
    /// take theirs from `game`).
    pub fn open(
        &self,
        suites: &[String],
        game: &GameConfig,
    ) -> anyhow::Result<Box<dyn Environment>> {
        self.open_with(suites, game, false)
    }

    /// [`Self::open`], asking the service for each finished episode's own record
    /// (`EpisodeView::record`; the built-in suites keep none).
    pub fn open_with(
        &self,
        suites: &[String],
        game: &GameConfig,
        record: bool,
    ) -> anyhow::Result<Box<dyn Environment>> {
        let Some(url) = &self.url else {
            let mut game = game.clone();
            if !suites.is_empty() {
                game.suites = parse_builtin_suites(suites)?;
            }
            return Ok(Box::new(BuiltinEnvironment::new(game)));
        };
        let env = RemoteEnvironment::connect(url, self.token.as_ref(), suites, game.clone())
            .with_context(|| {
                format!(
                    "cannot use the {:?} environment service at {url}",
                    self.kind
                )
            })?
            .recording(record);
        Ok(Box::new(env))
    }
}

/// `--suites` names of the built-in suites.
pub fn parse_builtin_suites(suites: &[String]) -> anyhow::Result<Vec<Suite>> {
    suites
        .iter()
        .map(|s| s.parse::<Suite>())
        .collect::<Result<_, _>>()
        .context("--suites of the built-in environment (web, email, banking, travel)")
}

/// Where the AgentDojo service lives: `$ARLAS_AGENTDOJO_DIR`, else `envs/agentdojo` of the
/// current directory.
pub fn agentdojo_dir() -> PathBuf {
    std::env::var_os("ARLAS_AGENTDOJO_DIR")
        .map_or_else(|| PathBuf::from("envs/agentdojo"), PathBuf::from)
}

/// An environment service run as a child process.
#[derive(Debug)]
pub struct LocalService {
    child: Child,
    /// Its gRPC URL.
    pub url: String,
}

/// How long a service may take to print its address (importing AgentDojo takes ~3 s).
const START_TIMEOUT: Duration = Duration::from_secs(120);

impl LocalService {
    /// The service command of the environment in `dir`: its venv's python running
    /// `server.py`, listening on `listen`, with `extra` arguments.
    pub fn command(dir: &Path, listen: &str, extra: &[String]) -> anyhow::Result<Command> {
        let python = dir.join(".venv/bin/python");
        let server = dir.join("server.py");
        anyhow::ensure!(
            server.is_file(),
            "no environment service at {}: run from the repository root or set ARLAS_AGENTDOJO_DIR",
            server.display()
        );
        anyhow::ensure!(
            python.is_file() && dir.join("gen/arlas/v1/environment_pb2.py").is_file(),
            "the AgentDojo service is not set up: run {}/setup.sh (makes its venv from the pinned requirements)",
            dir.display()
        );
        let mut command = Command::new(python);
        command.arg(server).arg("--listen").arg(listen).args(extra);
        Ok(command)
    }

    /// Starts the service and waits for its `listening on HOST:PORT` line.
    pub fn start(dir: &Path, listen: &str, extra: &[String]) -> anyhow::Result<Self> {
        let mut command = Self::command(dir, listen, extra)?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!("cannot start the environment service in {}", dir.display())
            })?;
        let stdout = child.stdout.take().context("the service's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the service never blocks on a full pipe.
            for _ in lines {}
        });
        let started = Instant::now();
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .ok()
            .flatten()
            .and_then(Result::ok);
        let Some(address) = line
            .as_deref()
            .and_then(|l| l.strip_prefix("listening on "))
        else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "the environment service in {} did not start (after {:.0} s; its errors are above)",
                dir.display(),
                started.elapsed().as_secs_f64()
            );
        };
        tracing::info!(
            address,
            seconds = started.elapsed().as_secs_f64(),
            "environment service started"
        );
        Ok(Self {
            url: format!("http://{}", address.trim()),
            child,
        })
    }
}

impl Drop for LocalService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
