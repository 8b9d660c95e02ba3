//! `arlas train --processes N`: the ARLAS run as a cluster on this machine — the imitation
//! warm-up in-process (as `arlas train --iterations 0`), then a coordinator, one learner per
//! player and N actors as separate `arlas` processes on loopback (`arlas::cluster`), until
//! each learner has trained `--iterations` batches of `tasks × group size` trajectories (an
//! iteration's worth each; a batch whose groups all have equal rewards teaches nothing and
//! makes no new version); then a held-out evaluation of the final agent with `arlas eval`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arlas::cluster::{ClusterConfig, LocalCluster};
use arlas::pipeline::{self, RunDir, Settings, Start};
use arlas_client::{CoordinatorClient, LearnerClient};
use arlas_core::RunView;
use arlas_runtime::auth::Token;

/// How often the coordinator is asked for the run's state.
const POLL: Duration = Duration::from_secs(2);

/// Runs the warm-up (unless done) and then the cluster.
pub fn run(
    dir: &Path,
    settings: Settings,
    actors: usize,
    sync: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(actors >= 1, "--processes needs at least 1 actor");
    anyhow::ensure!(
        settings.freeze.is_none(),
        "--freeze is not supported with --processes: run the one-machine pipeline for it"
    );
    let iterations = settings.iterations;
    warm_up(dir, &settings, quiet)?;
    let config = cluster_config(dir, &settings, actors, sync)?;
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
    let checkpoint = learner_checkpoint(dir, "agent", view.versions.agent.version);
    eprintln!(
        "done: agent v{} attacker v{} population {}; final agent {}",
        view.versions.agent.version,
        view.versions.attacker.version,
        view.population_size,
        checkpoint.display()
    );
    if settings.eval.episodes > 0 {
        evaluate(dir, &checkpoint, &settings)?;
    }
    Ok(())
}

/// The one-machine warm-up (both players' imitation, `agent/warmup`, `attacker/warmup`),
/// skipped when the run directory already has it.
fn warm_up(dir: &Path, settings: &Settings, quiet: bool) -> anyhow::Result<()> {
    let warmed = dir.join("agent/warmup").is_dir() && dir.join("attacker/warmup").is_dir();
    if warmed {
        eprintln!("warm-up found in {}: skipping it", dir.display());
        return Ok(());
    }
    let start = if dir.join("state.json").exists() {
        Start::Resume
    } else {
        let mut warmup = settings.clone();
        warmup.iterations = 0;
        Start::New(Box::new(warmup))
    };
    pipeline::run(RunDir::new(dir.to_path_buf()), start, !quiet)?;
    Ok(())
}

fn cluster_config(
    dir: &Path,
    s: &Settings,
    actors: usize,
    sync: bool,
) -> anyhow::Result<ClusterConfig> {
    let exe = std::env::current_exe().context("cannot find the arlas binary")?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut learner_args = vec![
        "--models-dir".to_string(),
        path(&s.models_dir),
        "--seed".to_string(),
        s.seed.to_string(),
        "--batch-episodes".to_string(),
        (s.tasks_per_iteration * s.group_size).to_string(),
        "--clip-low".to_string(),
        s.agent.train.clip_low.to_string(),
        "--clip-high".to_string(),
        s.agent.train.clip_high.to_string(),
        "--kl-coef".to_string(),
        s.agent.train.kl_coef.to_string(),
    ];
    let mut actor_args = vec![
        "--models-dir".to_string(),
        path(&s.models_dir),
        "--seed".to_string(),
        s.seed.to_string(),
        "--group-size".to_string(),
        s.group_size.to_string(),
        "--tasks".to_string(),
        s.tasks_per_iteration.to_string(),
        "--max-turns".to_string(),
        s.rollout.game.max_turns.to_string(),
        "--agent-max-tokens".to_string(),
        s.rollout.agent_sampling.max_new_tokens.to_string(),
        "--attacker-max-tokens".to_string(),
        s.rollout.attacker_sampling.max_new_tokens.to_string(),
        "--temperature".to_string(),
        s.rollout.agent_sampling.temperature.to_string(),
        "--batch-size".to_string(),
        s.rollout.batch_size.to_string(),
    ];
    if sync {
        learner_args.push("--sync".to_string());
        actor_args.push("--sync".to_string());
    }
    let init = |player: &str, lr: f64| {
        vec![
            "--init".to_string(),
            path(&dir.join(player).join("warmup")),
            "--lr".to_string(),
            lr.to_string(),
        ]
    };
    Ok(ClusterConfig {
        exe,
        dir: dir.join("cluster"),
        actors,
        coordinator_args: vec![
            "--opponents".to_string(),
            s.opponents.to_string(),
            "--opponent-sampling".to_string(),
            s.opponent_sampling.to_string(),
            "--seed".to_string(),
            s.seed.to_string(),
        ],
        learner_args,
        agent_learner_args: init("agent", s.agent.train.learning_rate),
        attacker_learner_args: init("attacker", s.attacker.train.learning_rate),
        actor_args,
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

/// Held-out evaluation of the final agent against templates and the population, by the
/// `arlas eval` command, written to `DIR/eval/cluster.json`.
fn evaluate(dir: &Path, agent: &Path, s: &Settings) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(dir.join("eval"))?;
    let out = dir.join("eval/cluster.json");
    let output = std::process::Command::new(exe)
        .arg("eval")
        .arg("--agent")
        .arg(agent)
        .arg("--population")
        .arg(dir.join("cluster/coordinator/population"))
        .arg("--models-dir")
        .arg(&s.models_dir)
        .args(["--split", "eval", "--json"])
        .args(["--episodes", &s.eval.episodes.to_string()])
        .args(["--seed", &s.seed.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run arlas eval")?;
    anyhow::ensure!(
        output.status.success(),
        "arlas eval of {} failed ({})",
        agent.display(),
        output.status
    );
    std::fs::write(&out, &output.stdout)?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    eprintln!(
        "final agent, held-out tasks: TSR {} / under attack {} / ASR {}; {}",
        report["task_success_rate"],
        report["task_success_rate_under_attack"],
        report["attack_success_rate"],
        out.display()
    );
    Ok(())
}
