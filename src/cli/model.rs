//! `arlas generate`, `arlas model ...`, `arlas bench sample|train` (placeholder: owned by the policy work).

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct GenerateArgs {}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download a model.
    Fetch,
}

#[derive(Debug, Args)]
pub struct SampleBenchArgs {}

#[derive(Debug, Args)]
pub struct TrainBenchArgs {}

pub fn generate(_args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn run(_cmd: ModelCommand) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn bench_sample(_args: SampleBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn bench_train(_args: TrainBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
