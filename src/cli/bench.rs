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
    /// A fresh actor joining a run whose population holds N adapter members, with real
    /// processes: seconds to ready per N, bytes of an adapter version against the base.
    Join(super::bench_join::JoinBenchArgs),
    /// Environment steps per second through an environment service (AgentDojo), with 1 and
    /// more concurrent clients.
    Env(super::bench_env::EnvBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Game(args) => super::game::bench(args),
        BenchCommand::Sample(args) => super::model::bench_sample(args),
        BenchCommand::Train(args) => super::model::bench_train(args),
        BenchCommand::Iteration(args) => super::bench_iteration::run(args),
        BenchCommand::Join(args) => super::bench_join::run(args),
        BenchCommand::Env(args) => super::bench_env::run(args),
    }
}

/// A bench's result: one JSON line with `--json` (for scripts), indented otherwise.
pub(super) fn print_report(out: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(out)?);
    }
    Ok(())
}
