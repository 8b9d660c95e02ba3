//! `arlas bench ...`: speed measurements. Each prints one JSON object on stdout.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Scripted game play: episodes per second on one core.
    Game(super::game::GameBenchArgs),
    /// Batched sampling with the KV cache: tokens per second.
    Sample(super::model::SampleBenchArgs),
    /// Training steps (GRPO loss + AdamW): tokens per second.
    Train(super::model::TrainBenchArgs),
    /// One ARLAS iteration of both players from an imitation-free start: seconds, tokens
    /// sampled, prefilled and trained, peak memory.
    Iteration(super::bench_iteration::IterationBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Game(args) => super::game::bench(args),
        BenchCommand::Sample(args) => super::model::bench_sample(args),
        BenchCommand::Train(args) => super::model::bench_train(args),
        BenchCommand::Iteration(args) => super::bench_iteration::run(args),
    }
}
