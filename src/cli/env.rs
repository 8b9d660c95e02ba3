//! `arlas env agentdojo --listen ADDR`: an environment service in the foreground.

use std::path::PathBuf;

use arlas::environments::{LocalService, agentdojo_dir};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Serve AgentDojo v1.2.1 (workspace, travel, banking, slack) over arlas.v1.Environment,
    /// from envs/agentdojo (its venv: envs/agentdojo/setup.sh).
    Agentdojo(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// gRPC address HOST:PORT (port 0: any free port, printed on start).
    #[arg(long, env = "ARLAS_LISTEN", default_value = "127.0.0.1:50060")]
    pub listen: String,
    /// A file holding the token every rpc must present (`authorization: Bearer <token>`).
    #[arg(long, env = "ARLAS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// HOST:PORT for `GET /healthz`.
    #[arg(long, env = "ARLAS_HEALTH_LISTEN")]
    pub health_listen: Option<String>,
    /// Where the service lives (default: $ARLAS_AGENTDOJO_DIR or envs/agentdojo).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(command: EnvCommand) -> anyhow::Result<()> {
    let EnvCommand::Agentdojo(args) = command;
    let dir = args.dir.clone().unwrap_or_else(agentdojo_dir);
    let mut extra = Vec::new();
    if let Some(f) = &args.token_file {
        extra.extend(["--token-file".to_string(), f.display().to_string()]);
    }
    if let Some(h) = &args.health_listen {
        extra.extend(["--health-listen".to_string(), h.clone()]);
    }
    let status = LocalService::command(&dir, &args.listen, &extra)?.status()?;
    anyhow::ensure!(
        status.success(),
        "the AgentDojo service ended with {status}"
    );
    Ok(())
}
