//! `arlas`: one binary for every role of the ARLAS system.
//!
//! Subcommands: `game` (the built-in environment), `generate` and `model` (policies),
//! `bench` (speed measurements). Training and the distributed roles build on these.

mod cli;

use clap::{Parser, Subcommand};

/// Adversarial RL for agent safety: co-train an attacker LLM and an agent LLM
/// so the agent finishes its task without leaking private data to prompt injections.
#[derive(Debug, Parser)]
#[command(name = "arlas", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ARLAS_COMMIT"), ")"), about, long_about = None)]
struct Cli {
    #[command(flatten)]
    log: cli::logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Play, inspect and export the built-in prompt-injection game.
    #[command(subcommand)]
    Game(cli::game::GameCommand),
    /// Generate text from a policy model (tiny, smollm2, a Hugging Face directory or a checkpoint).
    Generate(cli::model::GenerateArgs),
    /// Fetch, build and inspect policy models.
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Run the whole ARLAS pipeline on one machine: warm-up, adversarial iterations, evaluation.
    Train(Box<cli::train::TrainArgs>),
    /// The embedded default: ARLAS end to end on the built-in tiny model (about 15 minutes on 2 cores).
    Demo(cli::train::DemoArgs),
    /// Evaluate an agent on held-out tasks, with no attack and against attackers.
    Eval(cli::eval::EvalCommand),
    /// Serve an environment (AgentDojo) to eval, train and actors over gRPC.
    #[command(subcommand)]
    Env(cli::env::EnvCommand),
    /// Seeds x (ARLAS run, --opponents latest ablation, paired evaluations), then one summary.
    Experiment(cli::experiment::ExperimentArgs),
    /// Measure speed: the game, sampling and training.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Serve a distributed run's coordinator: leases, versions, population, checkpoints (gRPC).
    Coordinator(Box<cli::coordinator::CoordinatorArgs>),
    /// Serve a distributed run's learner of one player: persisted trajectory intake, GRPO updates, publishing (gRPC).
    Learner(Box<cli::learner::LearnerArgs>),
    /// Play episodes for a distributed run and stream the trajectories to the learners.
    Actor(Box<cli::actor::ActorArgs>),
    /// Print every subcommand's flags as Markdown (docs/config-reference.md).
    #[command(hide = true)]
    ConfigReference,
}

/// Candle 0.11 runs element-wise ops on a pool of threads that wait at a spinning barrier
/// (`CANDLE_NUM_THREADS`); matrix products use rayon's pool (`RAYON_NUM_THREADS`) either
/// way. Whenever another process (or another role of ours) shares the cores, the spinning
/// costs far more than it saves: training steps ran 3x slower on 2 shared cores. Unless the
/// user chose, element-wise ops run on the calling thread.
#[allow(unsafe_code)]
fn default_candle_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing
        // can read the environment concurrently.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// Candle asks for its thread count at every matrix product, and without
/// `RAYON_NUM_THREADS` it finds it by reading `/proc/cpuinfo`: 22,000 reads in a 4-episode
/// iteration, ~3% of a SmolLM2 rollout's time spent formatting that file. Unless the user
/// chose, the count candle would find (physical cores, or the CPU mask) is fixed once here.
#[allow(unsafe_code)]
fn default_rayon_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = arlas_policy::candle_core::utils::get_num_threads();
        // SAFETY: as in `default_candle_threads`, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

fn main() -> anyhow::Result<()> {
    default_candle_threads();
    default_rayon_threads();
    let cli = Cli::parse();
    cli::logging::init(&cli.log)?;
    // Candle allocates and frees large buffers on every op; keep them mapped (2x on CPU).
    arlas_policy::tune_allocator();
    match cli.command {
        Command::Game(cmd) => cli::game::run(cmd),
        Command::Generate(args) => cli::model::generate(args),
        Command::Model(cmd) => cli::model::run(cmd),
        Command::Bench(cmd) => cli::bench::run(cmd),
        Command::Train(args) => cli::train::train(*args),
        Command::Demo(args) => cli::train::demo(args),
        Command::Eval(args) => cli::eval::eval(args),
        Command::Env(cmd) => cli::env::run(cmd),
        Command::Experiment(args) => cli::experiment::run(args),
        Command::Coordinator(args) => cli::coordinator::run(*args),
        Command::Learner(args) => cli::learner::run(*args),
        Command::Actor(args) => cli::actor::run(*args),
        Command::ConfigReference => {
            cli::config_reference::print(&<Cli as clap::CommandFactory>::command());
            Ok(())
        }
    }
}
