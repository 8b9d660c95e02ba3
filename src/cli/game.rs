//! `arlas game ...` (placeholder: owned by the game work).

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum GameCommand {
    /// Print one episode.
    Sample,
}

#[derive(Debug, Args)]
pub struct GameBenchArgs {}

pub fn run(_cmd: GameCommand) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn bench(_args: GameBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
