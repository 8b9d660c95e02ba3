//! Benchmarks of the distributed runtime (docs/benchmarks.md, "Distributed runtime"), each
//! printing one JSON line: `cluster` (episodes/s with N actor processes, learner busy
//! fraction, async or `--sync`), `intake` (trajectories/s into one learner vs raw loopback
//! TCP), `broadcast` (a checkpoint fetched by C actors vs raw loopback TCP).
//!
//! ```sh
//! cargo build --release -p arlas --example distributed_bench
//! target/release/examples/distributed_bench cluster --actors 2 --secs 60 --dir /tmp/b
//! ```
//! `bench/distributed.sh` runs them all.

mod broadcast;
mod cluster;
mod intake;
mod probe;

use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(about = "Benchmarks of the distributed runtime")]
enum Bench {
    /// Episodes/s and learner busy fraction of a local cluster.
    Cluster(cluster::ClusterArgs),
    /// Trajectory intake into one learner vs raw loopback TCP.
    Intake(intake::IntakeArgs),
    /// Checkpoint broadcast to C actors vs raw loopback TCP.
    Broadcast(broadcast::BroadcastArgs),
}

fn main() -> anyhow::Result<()> {
    let record = match Bench::parse() {
        Bench::Cluster(args) => cluster::run(&args)?,
        Bench::Intake(args) => intake::run(&args)?,
        Bench::Broadcast(args) => broadcast::run(&args)?,
    };
    println!("{record}");
    Ok(())
}
