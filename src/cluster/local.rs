//! A whole cluster on one machine: a coordinator, one learner per player and N actors, each
//! a real `arlas` process on loopback, in one directory:
//!
//! ```text
//! DIR/
//!   token              the shared token (every role's token_file)
//!   config/ROLE.toml   each role's settings (its --config file)
//!   coordinator/       the coordinator's --data
//!   learner-agent/     the agent learner's --data (checkpoints/vNNNNNNNN/ are its versions)
//!   learner-attacker/  the attacker learner's --data
//!   actor-K/           actor K's checkpoint cache
//!   logs/ROLE.log      each role's stdout and stderr
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use arlas_core::{PerPlayer, Player};
use serde::Serialize;

use super::process::RoleProcess;
use crate::roles::actor::ActorArgs;
use crate::roles::coordinator::CoordinatorArgs;
use crate::roles::learner::LearnerArgs;

/// Loopback, a port from the OS (the role announces the one it got).
const LOOPBACK_ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// How long a role may take to print its start line and to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a role gets to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// What to launch: each role's settings as values. The cluster fills in what belongs to
/// one instance (addresses on loopback, data directories, the token, the coordinator's
/// URL, names), writes each role's `--config` file to `DIR/config/ROLE.toml` and starts
/// `arlas ROLE --config FILE`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `arlas` binary.
    pub exe: PathBuf,
    /// The cluster's directory (layout above); created if absent, reused if present (every
    /// role resumes from its own data).
    pub dir: PathBuf,
    /// Actor processes started with the cluster.
    pub actors: usize,
    pub coordinator: CoordinatorArgs,
    /// Each player's learner (`player` is set by the cluster).
    pub learners: PerPlayer<LearnerArgs>,
    /// Every actor.
    pub actor: ActorArgs,
    /// Environment of every role (e.g. `CANDLE_NUM_THREADS`).
    pub env: Vec<(String, String)>,
}

/// The running cluster. Dropping it kills every role; [`LocalCluster::shutdown`] stops them
/// cleanly.
#[derive(Debug)]
pub struct LocalCluster {
    config: ClusterConfig,
    token: PathBuf,
    url: String,
    /// The coordinator.
    pub coordinator: RoleProcess,
    /// The agent's learner.
    pub agent_learner: RoleProcess,
    /// The attacker's learner.
    pub attacker_learner: RoleProcess,
    /// The actors, in start order.
    pub actors: Vec<RoleProcess>,
    next_actor: usize,
}

impl LocalCluster {
    /// Starts the coordinator, then both learners, then the actors, each ready before the
    /// next starts (learners publish their first version while starting).
    pub fn start(config: ClusterConfig) -> anyhow::Result<Self> {
        let dir = &config.dir;
        for sub in ["logs", "config"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let token = dir.join("token");
        if !token.exists() {
            write_token(&token)?;
        }
        let loopback = Some(LOOPBACK_ANY);
        let coordinator_settings = CoordinatorArgs {
            listen: loopback,
            metrics_listen: loopback,
            data: Some(dir.join("coordinator")),
            token_file: Some(token.clone()),
            ..config.coordinator.clone()
        };
        let mut coordinator = spawn(&config, "coordinator", "coordinator", &coordinator_settings)?;
        coordinator.wait_ready(START_TIMEOUT)?;
        coordinator.pin_addresses();
        let grpc = coordinator
            .announced()
            .grpc
            .context("the coordinator announced no gRPC address")?;
        let url = format!("http://{grpc}");
        let learner = |player: Player| -> anyhow::Result<RoleProcess> {
            let name = format!("learner-{player}");
            let settings = LearnerArgs {
                player: Some(player),
                coordinator: Some(url.clone()),
                listen: loopback,
                metrics_listen: loopback,
                data: Some(dir.join(&name)),
                token_file: Some(token.clone()),
                ..config.learners[player].clone()
            };
            let mut role = spawn(&config, &name, "learner", &settings)?;
            role.wait_ready(START_TIMEOUT)?;
            role.pin_addresses();
            Ok(role)
        };
        let agent_learner = learner(Player::Agent)?;
        let attacker_learner = learner(Player::Attacker)?;
        let mut cluster = Self {
            token,
            url,
            coordinator,
            agent_learner,
            attacker_learner,
            actors: Vec::new(),
            next_actor: 0,
            config,
        };
        for _ in 0..cluster.config.actors {
            cluster.add_actor()?;
        }
        Ok(cluster)
    }

    /// The coordinator's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token file every role uses.
    pub fn token_file(&self) -> &Path {
        &self.token
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Starts one more actor (it joins the running cluster) and returns it; it is not
    /// waited for: an actor is ready once it plays, which needs both first versions.
    pub fn add_actor(&mut self) -> anyhow::Result<&mut RoleProcess> {
        let k = self.next_actor;
        self.next_actor += 1;
        let name = format!("actor-{k}");
        let settings = ActorArgs {
            coordinator: Some(self.url.clone()),
            metrics_listen: Some(LOOPBACK_ANY),
            name: Some(name.clone()),
            cache: Some(self.config.dir.join(&name)),
            token_file: Some(self.token.clone()),
            ..self.config.actor.clone()
        };
        let role = spawn(&self.config, &name, "actor", &settings)?;
        self.actors.push(role);
        let last = self.actors.len() - 1;
        Ok(&mut self.actors[last])
    }

    /// Every role, actors first, then learners, then the coordinator.
    pub fn roles_mut(&mut self) -> impl Iterator<Item = &mut RoleProcess> {
        self.actors.iter_mut().chain([
            &mut self.agent_learner,
            &mut self.attacker_learner,
            &mut self.coordinator,
        ])
    }

    /// Stops every role with SIGTERM (actors first, the coordinator last) and reports the
    /// roles that did not exit cleanly.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let mut unclean = Vec::new();
        for role in self.roles_mut() {
            match role.terminate(STOP_GRACE)? {
                Some(status) if !status.success() => {
                    unclean.push(format!("{} ({status})", role.name()));
                }
                _ => {}
            }
        }
        anyhow::ensure!(
            unclean.is_empty(),
            "roles that did not stop cleanly: {}; see their logs in {}",
            unclean.join(", "),
            self.config.dir.join("logs").display()
        );
        Ok(())
    }
}

/// Writes `settings` to `DIR/config/NAME.toml` and starts `arlas ROLE --config FILE`.
fn spawn(
    config: &ClusterConfig,
    name: &str,
    role: &str,
    settings: &impl Serialize,
) -> anyhow::Result<RoleProcess> {
    let file = config.dir.join("config").join(format!("{name}.toml"));
    crate::config::write_toml(&file, settings)?;
    let log = config.dir.join("logs").join(format!("{name}.log"));
    let args = vec![
        role.to_string(),
        "--config".to_string(),
        file.to_string_lossy().into_owned(),
    ];
    RoleProcess::spawn(
        &config.exe,
        name,
        args,
        config.env.clone(),
        &log,
        START_TIMEOUT,
    )
}

/// A fresh random token, readable by the owner only.
fn write_token(path: &Path) -> anyhow::Result<()> {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // Owner-only from its creation: never readable by others, not even for a moment.
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the token {}", path.display()))?;
    #[cfg(unix)]
    {
        // A file that was already there keeps its mode through `open`: narrow it first.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut file, format!("{hex}\n").as_bytes())
        .with_context(|| format!("cannot write the token {}", path.display()))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_token_file_is_owner_only_even_when_it_existed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write_token(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim().len(), 64);
    }
}
