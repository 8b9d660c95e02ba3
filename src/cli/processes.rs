//! `arlas train --processes N`: the ARLAS run as a cluster on this machine — the imitation
//! warm-up in-process (as `arlas train --iterations 0`), then a coordinator, one learner per
//! player and N actors as separate `arlas` processes on loopback (`arlas::cluster`), until
//! each learner has trained `--iterations` batches of `tasks × group size` trajectories (an
//! iteration's worth each; a batch whose groups all have equal rewards teaches nothing and
//! makes no new version); then the run is finished as a run in one process finishes
//! (`agent/final`, `attacker/final`, the same final evaluation, `eval/final.json`, the
//! report), in this process.
//! Each role's settings are built here as values (`arlas::roles`) and written to its
//! `--config` file by the cluster.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arlas::cluster::{ClusterConfig, LocalCluster};
use arlas::pipeline::{self, ClusterOutcome, RunDir, RunOptions, Settings, Start};
use arlas::roles::actor::ActorArgs;
use arlas::roles::coordinator::CoordinatorArgs;
use arlas::roles::learner::LearnerArgs;
use arlas_client::{CoordinatorClient, LearnerClient};
use arlas_core::PerPlayer;
use arlas_core::RunView;
use arlas_runtime::auth::Token;

/// How often the coordinator is asked for the run's state.
const POLL: Duration = Duration::from_secs(2);

/// How the cluster runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Actor processes.
    pub actors: usize,
    /// Lock-step rounds.
    pub sync: bool,
    pub quiet: bool,
    /// Print the final summary as one JSON object.
    pub json: bool,
    /// `--device`, for the warm-up, every role and the final evaluation.
    pub device: String,
}

/// Runs the warm-up (unless done) and then the cluster.
pub fn run(dir: &Path, settings: Settings, options: &Options) -> anyhow::Result<()> {
    let Options {
        actors,
        quiet,
        json,
        ..
    } = *options;
    let device = arlas_policy::device_from_name(&options.device)
        .with_context(|| format!("--device {}", options.device))?;
    anyhow::ensure!(actors >= 1, "--processes needs at least 1 actor");
    anyhow::ensure!(
        settings.freeze.is_none(),
        "--freeze is not supported with --processes: run the one-machine pipeline for it"
    );
    let iterations = settings.iterations;
    let run_options = RunOptions {
        show_progress: !quiet,
        device,
    };
    warm_up(dir, &settings, &run_options)?;
    let config = cluster_config(dir, &settings, options)?;
    eprintln!(
        "arlas train --processes {actors}: coordinator, 2 learners and {actors} actors; logs in {}",
        config.dir.join("logs").display()
    );
    let mut cluster = LocalCluster::start(config)?;
    print_endpoints(&mut cluster);
    let target =
        u64::from(iterations) * (settings.tasks_per_iteration * settings.group_size) as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(watch(&mut cluster, target));
    // Closes this process's connections, so that the roles' graceful shutdown need not wait.
    drop(runtime);
    let stopped = cluster.shutdown();
    let view = outcome?;
    stopped?;
    let outcome = ClusterOutcome {
        agent: learner_checkpoint(dir, "agent", view.versions.agent.version),
        attacker: learner_checkpoint(dir, "attacker", view.versions.attacker.version),
        agent_version: view.versions.agent.version,
        attacker_version: view.versions.attacker.version,
        league: dir.join("cluster/coordinator"),
    };
    eprintln!(
        "done: agent v{} attacker v{} population {}; final agent {}",
        view.versions.agent.version,
        view.versions.attacker.version,
        view.population_size,
        outcome.agent.display()
    );
    let summary = pipeline::finish_cluster(RunDir::new(dir.to_path_buf()), &outcome, &run_options)?;
    super::train::print_summary(&summary, json)
}

/// The one-machine warm-up (both players' imitation, `agent/warmup`, `attacker/warmup`,
/// the warm-up attacker as population member 0) of the run with its full settings, skipped
/// when the run directory already has it.
fn warm_up(dir: &Path, settings: &Settings, options: &RunOptions) -> anyhow::Result<()> {
    let start = if dir.join("state.json").exists() {
        Start::Resume
    } else {
        Start::New(Box::new(settings.clone()))
    };
    pipeline::warm_up(RunDir::new(dir.to_path_buf()), start, options)
}

/// Each role's settings as values, from the run's settings: the same game, sampling and
/// GRPO settings the one-process pipeline uses, each player's learner with its own.
fn cluster_config(dir: &Path, s: &Settings, options: &Options) -> anyhow::Result<ClusterConfig> {
    let sync = options.sync;
    let exe = std::env::current_exe().context("cannot find the arlas binary")?;
    let coordinator = CoordinatorArgs {
        opponents: Some(s.opponents),
        opponent_sampling: Some(s.opponent_sampling),
        seed: Some(s.seed),
        ..CoordinatorArgs::default()
    };
    let learners = PerPlayer::from_fn(|player| {
        let learner = s.learner(player);
        LearnerArgs {
            init: Some(dir.join(player.name()).join("warmup")),
            models_dir: Some(s.models_dir.clone()),
            seed: Some(s.seed),
            sync,
            batch_episodes: Some(s.tasks_per_iteration * s.group_size),
            max_staleness: Some(learner.max_staleness),
            minibatch_size: Some(learner.minibatch_size),
            lr: Some(learner.train.learning_rate),
            clip_low: Some(learner.train.clip_low),
            clip_high: Some(learner.train.clip_high),
            kl_coef: Some(learner.train.kl_coef),
            device: Some(options.device.clone()),
            adapters: Some(s.adapters.mode),
            lora_rank: Some(s.adapters.lora.rank),
            lora_alpha: Some(s.adapters.lora.alpha),
            lora_targets: s.adapters.lora.targets.clone(),
            ..LearnerArgs::default()
        }
    });
    let game = &s.rollout.game;
    let actor = ActorArgs {
        models_dir: Some(s.models_dir.clone()),
        seed: Some(s.seed),
        sync,
        group_size: Some(s.group_size),
        tasks: Some(s.tasks_per_iteration),
        max_turns: Some(game.max_turns),
        format_error_penalty: Some(game.format_error_penalty),
        // The built-in suites by name; another environment's own (each actor starts its
        // own local service unless the run names a URL).
        suites: if s.environment.suites.is_empty() {
            game.suites.iter().map(|x| x.name().to_string()).collect()
        } else {
            s.environment.suites.clone()
        },
        env: Some(s.environment.kind),
        env_url: s.environment.url.clone(),
        env_token_file: s.environment.token_file.clone(),
        agent_max_tokens: Some(s.rollout.agent_sampling.max_new_tokens),
        attacker_max_tokens: Some(s.rollout.attacker_sampling.max_new_tokens),
        temperature: Some(s.rollout.agent_sampling.temperature),
        batch_size: Some(s.rollout.batch_size),
        device: Some(options.device.clone()),
        ..ActorArgs::default()
    };
    Ok(ClusterConfig {
        exe,
        dir: dir.join("cluster"),
        actors: options.actors,
        coordinator,
        learners,
        actor,
        // Every process computes on one thread: N actors and 2 learners share the cores.
        env: vec![(
            "CANDLE_NUM_THREADS".to_string(),
            std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "1".to_string()),
        )],
    })
}

fn print_endpoints(cluster: &mut LocalCluster) {
    eprintln!("coordinator {}", cluster.url());
    for role in cluster.roles_mut() {
        if let Some(metrics) = role.announced().metrics {
            eprintln!("  {:<18} http://{metrics}/metrics", role.name());
        }
    }
}

/// A client of a role's learner service.
async fn learner_client(
    role: &arlas::cluster::RoleProcess,
    token: &Token,
) -> anyhow::Result<LearnerClient> {
    let addr = role
        .announced()
        .grpc
        .with_context(|| format!("{} announced no gRPC address", role.name()))?;
    Ok(LearnerClient::connect(&format!("http://{addr}"), Some(token)).await?)
}

/// Polls the coordinator and the learners until both learners have trained `target`
/// trajectories; fails if a role dies.
async fn watch(cluster: &mut LocalCluster, target: u64) -> anyhow::Result<RunView> {
    let token = Token::from_file(cluster.token_file())?;
    let mut client = CoordinatorClient::connect(cluster.url(), Some(&token)).await?;
    let started = Instant::now();
    let mut last = String::new();
    // Trajectories trained before this start (a resumed cluster) do not count.
    let mut agent_client = learner_client(&cluster.agent_learner, &token).await?;
    let mut attacker_client = learner_client(&cluster.attacker_learner, &token).await?;
    let base = (
        agent_client.status().await?.trained_total,
        attacker_client.status().await?.trained_total,
    );
    loop {
        let view = client.run_state().await?;
        let mut agent = agent_client.status().await?;
        let mut attacker = attacker_client.status().await?;
        agent.trained_total = agent.trained_total.saturating_sub(base.0);
        attacker.trained_total = attacker.trained_total.saturating_sub(base.1);
        let line = format!(
            "agent v{} ({}/{target} trained, {} queued) / attacker v{} ({}/{target} trained, {} queued), population {}, actors {}",
            view.versions.agent.version,
            agent.trained_total,
            agent.queue_depth,
            view.versions.attacker.version,
            attacker.trained_total,
            attacker.queue_depth,
            view.population_size,
            view.connected_actors
        );
        if line != last {
            eprintln!("[{:>6.0} s] {line}", started.elapsed().as_secs_f64());
            last = line;
        }
        if agent.trained_total >= target && attacker.trained_total >= target {
            return Ok(view);
        }
        for role in cluster.roles_mut() {
            if let Some(status) = role.try_exit()? {
                anyhow::bail!(
                    "{} exited ({status}); its log {} ends with:\n{}",
                    role.name(),
                    role.log().display(),
                    arlas::cluster::process::tail(role.log(), 20)
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = arlas_runtime::shutdown::signal() => anyhow::bail!("interrupted: the cluster is stopped; its directories keep every role's state"),
        }
    }
}

/// `DIR/cluster/learner-PLAYER/checkpoints/vNNNNNNNN`: a learner's saved version.
fn learner_checkpoint(dir: &Path, player: &str, version: u64) -> PathBuf {
    dir.join("cluster")
        .join(format!("learner-{player}"))
        .join("checkpoints")
        .join(format!("v{version:08}"))
}
