//! The one-machine ARLAS pipeline: imitation warm-up, adversarial GRPO iterations for both
//! players against a population of past attackers, evaluation, report. `arlas train` and
//! `arlas demo` run it; `--resume DIR` continues a stopped run.
//!
//! The roles in one process: the actor crate's round planner and round function play
//! every iteration (the same code as `arlas actor`), one [`Learner`] per player updates,
//! and the coordinator crate's [`League`] adds population members, records results and
//! draws opponents (the same code as `arlas coordinator`).

mod evaluation;
mod iteration;
pub mod models;
mod progress;
pub mod records;
mod report;
pub mod run_dir;
pub mod settings;
mod warmup;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use arlas_actor::round::{RoundPlanner, RoundShape};
use arlas_coordinator::League;
use arlas_game::Environment;
use arlas_learner::{Learner, Player};
use arlas_policy::{Device, Policy, Trainer};
use serde::Serialize;

use evaluation::EvalSet;
pub use evaluation::{FinalEvaluation, evaluate_agent};
pub use records::Record;
pub use run_dir::{RunDir, RunProgress};
pub use settings::{EvalSettings, Settings, WarmupSettings};

use run_dir::{read_json, write_json};

/// How to start.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new run in an empty (or absent) directory.
    New(Box<Settings>),
    /// Continue the run in the directory with its own settings.
    Resume,
}

/// What a finished run reports (also `DIR/eval/final.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub report: PathBuf,
    pub evaluation: FinalEvaluation,
    pub seconds: f64,
}

/// The state of a run in progress.
pub struct Pipeline {
    settings: Settings,
    dir: RunDir,
    /// The models directory, the device and the pool of shared frozen bases.
    models: models::Models,
    state: RunProgress,
    league: League,
    planner: RoundPlanner,
    /// Frozen population members loaded so far, by id.
    members: BTreeMap<String, Policy>,
    /// Where the rounds are played.
    env: Box<dyn Environment>,
    /// The held-out evaluation.
    eval: EvalSet,
    /// Whether the warm-up and the iterations are evaluated (a benchmark skips it).
    evaluate: bool,
    progress: progress::Progress,
    started: Instant,
    /// The environment service the episodes are played on (last: it outlives the clients).
    _service: crate::environments::EnvService,
}

/// How a run executes (not part of its settings: a run may resume elsewhere).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A progress bar on the terminal.
    pub show_progress: bool,
    /// Where the models sample and train.
    pub device: Device,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            show_progress: false,
            device: Device::Cpu,
        }
    }
}

/// Where a cluster (`arlas train --processes`) left the run's policies and league.
#[derive(Debug, Clone)]
pub struct ClusterOutcome {
    /// The final agent's and attacker's checkpoints (learner versions).
    pub agent: PathBuf,
    pub attacker: PathBuf,
    pub agent_version: u64,
    pub attacker_version: u64,
    /// The coordinator's data directory (its `population/` and `payoff.json`).
    pub league: PathBuf,
}

/// The warm-up of a run whose iterations a cluster plays: starts (or resumes) the run in
/// `dir` and returns once the warm-up is committed.
pub fn warm_up(dir: RunDir, start: Start, options: &RunOptions) -> anyhow::Result<()> {
    let mut pipeline = Pipeline::open(dir, start, options)?;
    if !pipeline.state.warmup_done {
        warmup::run(&mut pipeline)?;
    }
    Ok(())
}

/// Finishes a run whose iterations a cluster played, as a run in one process finishes:
/// the final policies in `agent/final` and `attacker/final`, the same final evaluation
/// (warm-up agent vs trained agent, against the templates and the cluster's population),
/// `eval/final.json`, the report.
pub fn finish_cluster(
    dir: RunDir,
    outcome: &ClusterOutcome,
    options: &RunOptions,
) -> anyhow::Result<Summary> {
    let mut pipeline = Pipeline::open(dir, Start::Resume, options)?;
    pipeline.league = League::open(&outcome.league).with_context(|| {
        format!(
            "cannot open the cluster's population in {}",
            outcome.league.display()
        )
    })?;
    for (player, from) in [("agent", &outcome.agent), ("attacker", &outcome.attacker)] {
        let to = pipeline.dir.checkpoint(player, "final");
        copy_dir(from, &to)?;
    }
    let agent = pipeline
        .models
        .load_dir(&pipeline.dir.checkpoint("agent", "final"), false)?;
    let state = &mut pipeline.state;
    state.iterations_done = pipeline.settings.iterations;
    state.agent_version = outcome.agent_version;
    state.attacker_version = outcome.attacker_version;
    state.agent_checkpoint = Some("agent/final".into());
    state.attacker_checkpoint = Some("attacker/final".into());
    pipeline.conclude(&agent, outcome.agent_version)
}

/// Copies the files of `from` to a fresh `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("cannot replace {}", to.display()))?;
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let path = entry?.path();
        if path.is_file()
            && let Some(name) = path.file_name()
        {
            std::fs::copy(&path, to.join(name))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// What `arlas bench iteration` measures: a new run in `dir` with the warm-up its settings
/// ask for (none with `warmup.epochs = 0`, an imitation-free start) and one iteration, no
/// evaluation; returns the iteration's records (its updates and the iteration itself).
pub fn bench_iteration(
    dir: RunDir,
    mut settings: Settings,
    options: &RunOptions,
) -> anyhow::Result<Vec<Record>> {
    settings.iterations = 1;
    let mut pipeline = Pipeline::open(dir, Start::New(Box::new(settings)), options)?;
    pipeline.evaluate = false;
    let (agent, attacker) = pipeline.warm_up()?;
    pipeline.iterate(agent, attacker)?;
    Ok(pipeline
        .dir
        .read_metrics()?
        .into_iter()
        .filter(|r| r.iteration() == Some(1))
        .collect())
}

/// Runs (or resumes) a whole ARLAS run in `dir`.
/// Sets a stopped or finished run's iteration count before it is resumed: more iterations
/// continue a finished run from its last one (the final evaluation and report are made
/// again at the new end); fewer than it has done is an error. `config.json` records it.
pub fn set_iterations(dir: &RunDir, iterations: u32) -> anyhow::Result<()> {
    let mut settings: Settings = read_json(&dir.config())?;
    let mut state = dir.read_progress()?;
    anyhow::ensure!(
        iterations >= state.iterations_done,
        "the run in {} has done {} iterations; --iterations {iterations} cannot undo them",
        dir.root().display(),
        state.iterations_done
    );
    if iterations == settings.iterations {
        return Ok(());
    }
    tracing::info!(
        from = settings.iterations,
        to = iterations,
        "the run's iteration count changes on resume"
    );
    settings.iterations = iterations;
    write_json(&dir.config(), &settings)?;
    if state.finished && iterations > state.iterations_done {
        state.finished = false;
        dir.write_progress(&state)?;
    }
    Ok(())
}

pub fn run(dir: RunDir, start: Start, options: &RunOptions) -> anyhow::Result<Summary> {
    let mut pipeline = Pipeline::open(dir, start, options)?;
    let (agent, attacker) = pipeline.warm_up()?;
    let (agent, attacker) = pipeline.iterate(agent, attacker)?;
    pipeline.finish(&agent, &attacker)
}

impl Pipeline {
    fn open(dir: RunDir, start: Start, options: &RunOptions) -> anyhow::Result<Self> {
        let settings = match start {
            Start::New(settings) => {
                anyhow::ensure!(
                    !dir.exists(),
                    "{} already holds a run: continue it with `arlas train --resume {}` or choose another --run-dir",
                    dir.root().display(),
                    dir.root().display()
                );
                settings.validate()?;
                std::fs::create_dir_all(dir.root())
                    .with_context(|| format!("cannot create {}", dir.root().display()))?;
                write_json(&dir.config(), &*settings)?;
                write_json(&dir.path("versions.json"), &versions())?;
                *settings
            }
            Start::Resume => {
                anyhow::ensure!(
                    dir.exists(),
                    "{} holds no run to resume (no config.json); start one with `arlas train --run-dir {}`",
                    dir.root().display(),
                    dir.root().display()
                );
                let settings: Settings = read_json(&dir.config())?;
                settings.validate()?;
                settings
            }
        };
        let state = dir.read_progress()?;
        anyhow::ensure!(
            !state.finished,
            "the run in {} is already finished; its report is {}",
            dir.root().display(),
            dir.report().display()
        );
        // Roll back whatever an uncommitted warm-up or iteration left behind.
        if !state.warmup_done && dir.population().exists() {
            std::fs::remove_dir_all(dir.population())
                .with_context(|| format!("cannot reset {}", dir.population().display()))?;
        }
        let mut league = League::open(dir.root()).with_context(|| {
            format!(
                "cannot open the population in {}",
                dir.population().display()
            )
        })?;
        if !state.warmup_done {
            league.clear_payoff();
        }
        league.rollback_after(state.iterations_done)?;
        dir.rollback_metrics(state.iterations_done)?;
        let planner = RoundPlanner::for_pipeline(
            RoundShape {
                tasks: settings.tasks_per_iteration,
                group_size: settings.group_size,
            },
            settings.seed,
        );
        let service = settings.environment.start()?;
        let suites = &settings.environment.suites;
        let env = service.open(suites, &settings.rollout.game)?;
        let eval = EvalSet::new(service.open(suites, &settings.rollout.game)?, &settings)?;
        let progress = progress::Progress::new(options.show_progress, settings.iterations);
        Ok(Self {
            models: models::Models::new(settings.models_dir.clone(), options.device.clone()),
            settings,
            dir,

            state,
            league,
            planner,
            members: BTreeMap::new(),
            env,
            eval,
            evaluate: true,
            progress,
            started: Instant::now(),
            _service: service,
        })
    }

    /// The learners as of the last committed point (warming them up first if needed).
    fn warm_up(&mut self) -> anyhow::Result<(Learner, Learner)> {
        if !self.state.warmup_done {
            warmup::run(self)?;
        }
        self.learners()
    }

    /// Builds both learners from the committed checkpoints, with the warm-up policies as
    /// KL references.
    fn learners(&self) -> anyhow::Result<(Learner, Learner)> {
        let build = |player: Player,
                     checkpoint: &Option<String>,
                     version: u64|
         -> anyhow::Result<Learner> {
            let rel = checkpoint
                .clone()
                .with_context(|| format!("the run state names no {player} checkpoint"))?;
            let path = self.dir.root().join(&rel);
            let config = self.settings.learner(player).clone();
            let trainer = if rel.ends_with("warmup") {
                let policy = self.models.load_dir(&path, true)?;
                Trainer::new(policy, config.train.clone())?
            } else {
                Trainer::resume(
                    &path,
                    &self.models.device,
                    &self.models.options(true, 0, None),
                )
                .with_context(|| format!("cannot resume the {player} from {}", path.display()))?
            };
            let mut learner = Learner::new(player, trainer, config, version)?;
            learner.set_reference(self.reference(player, &learner)?);
            Ok(learner)
        };
        Ok((
            build(
                Player::Agent,
                &self.state.agent_checkpoint,
                self.state.agent_version,
            )?,
            build(
                Player::Attacker,
                &self.state.attacker_checkpoint,
                self.state.attacker_version,
            )?,
        ))
    }

    /// The KL reference of `player`: its warm-up checkpoint, frozen (adapters over the shared
    /// base for an adapter-trained player), or with `kl_reference = base` and adapters the
    /// base alone.
    fn reference(&self, player: Player, learner: &Learner) -> anyhow::Result<Policy> {
        let adapters = learner.policy().lora().is_some();
        if adapters && self.settings.adapters.reference == models::KlReference::Base {
            return Ok(learner.policy().without_adapter()?);
        }
        self.models
            .load_dir(&self.dir.checkpoint(player.name(), "warmup"), false)
    }

    /// The frozen policy of population member `id`, loaded once.
    fn member(&mut self, id: &str) -> anyhow::Result<&Policy> {
        if !self.members.contains_key(id) {
            let dir = self.league.population().checkpoint_dir(id)?;
            let policy = self.models.load_dir(&dir, false)?;
            self.members.insert(id.to_string(), policy);
        }
        self.members
            .get(id)
            .with_context(|| format!("population member {id} could not be loaded"))
    }

    fn log(&self, record: Record) -> anyhow::Result<()> {
        self.dir.log_metrics(&record)
    }
}

/// The versions of everything, for `DIR/versions.json`.
fn versions() -> serde_json::Value {
    serde_json::json!({
        "arlas": env!("CARGO_PKG_VERSION"),
        // The commit the binary was built from (`-dirty`: with uncommitted changes; see build.rs).
        "commit": env!("ARLAS_COMMIT"),
        "candle": "0.11.1",
        "tokenizers": "0.23.2",
        "command": std::env::args().collect::<Vec<_>>(),
        "started_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

impl Pipeline {
    /// Saves the final policies, evaluates warm-up against trained, writes the report.
    fn finish(&mut self, agent: &Learner, attacker: &Learner) -> anyhow::Result<Summary> {
        agent.save(&self.dir.checkpoint("agent", "final"))?;
        attacker.save(&self.dir.checkpoint("attacker", "final"))?;
        self.conclude(agent.policy(), agent.version())
    }

    /// The final evaluation of `agent`, `eval/final.json`, the report, and the run marked
    /// finished.
    fn conclude(&mut self, agent: &Policy, version: u64) -> anyhow::Result<Summary> {
        self.progress.phase("final evaluation");
        tracing::info!("final evaluation: warm-up agent vs trained agent on held-out tasks");
        let evaluation = evaluation::final_evaluation(self, agent, version)?;
        write_json(&self.dir.eval("final"), &evaluation)?;
        let report = report::build(self, &evaluation)?;
        std::fs::write(self.dir.report(), report.to_html())
            .with_context(|| format!("cannot write {}", self.dir.report().display()))?;
        self.state.finished = true;
        self.dir.write_progress(&self.state)?;
        Ok(Summary {
            run_dir: self.dir.root().to_path_buf(),
            report: self.dir.report(),
            evaluation,
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }
}
