//! `arlas train`, `arlas demo`: the one-machine ARLAS pipeline.

use std::path::PathBuf;

use anyhow::Context as _;
use arlas::pipeline::{self, RunDir, Settings, Start, Summary};
use arlas_coordinator::{OpponentPool, OpponentSampling};
use arlas_learner::Player;
use clap::Args;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run directory for a new run (config, checkpoints, population, metrics, report).
    #[arg(
        long,
        env = "ARLAS_RUN_DIR",
        required_unless_present = "resume",
        conflicts_with = "resume"
    )]
    pub run_dir: Option<PathBuf>,
    /// Continue the stopped run in this directory, with its own settings.
    #[arg(long, env = "ARLAS_RESUME")]
    pub resume: Option<PathBuf>,
    /// Settings file (JSON, the format of a run's config.json); flags override it.
    #[arg(long, env = "ARLAS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// No progress bar.
    #[arg(long, env = "ARLAS_QUIET")]
    pub quiet: bool,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run the adversarial iterations as a cluster on this machine: a coordinator, one
    /// learner per player and this many actor processes on loopback (after the warm-up,
    /// which runs in-process). Roles' data and logs go to RUN_DIR/cluster/.
    #[arg(long, env = "ARLAS_PROCESSES", conflicts_with = "resume")]
    pub processes: Option<usize>,
    /// With --processes: lock-step training (actors wait for new versions after each round;
    /// learners train only on the current version's trajectories), for comparison with the
    /// default asynchronous mode.
    #[arg(long, requires = "processes")]
    pub sync: bool,
}

/// Settings of a run; each flag overrides the config file or the defaults.
#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// Base model of both players: tiny, tiny-2m, tiny-20m, smollm2, or a model directory.
    #[arg(long, env = "ARLAS_MODEL")]
    pub model: Option<String>,
    /// Where tiny models are built and smollm2 is fetched.
    #[arg(long, env = "ARLAS_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Start the agent from this checkpoint (skips its warm-up).
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Start the attacker from this checkpoint (skips its warm-up).
    #[arg(long)]
    pub attacker: Option<PathBuf>,
    /// Seed of everything random in the run.
    #[arg(long, env = "ARLAS_SEED")]
    pub seed: Option<u64>,
    /// Adversarial iterations after the warm-up.
    #[arg(long)]
    pub iterations: Option<u32>,
    /// Tasks per iteration and player.
    #[arg(long)]
    pub tasks_per_iteration: Option<usize>,
    /// Rollouts per task (a GRPO group).
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Opponents of the agent: all (every past attacker, ARLAS) or latest (ablation).
    #[arg(long)]
    pub opponents: Option<OpponentPool>,
    /// How past attackers are weighted: uniform, recent or pfsp (by how often each still wins).
    #[arg(long)]
    pub opponent_sampling: Option<OpponentSampling>,
    /// Do not train this player: attacker or agent.
    #[arg(long)]
    pub freeze: Option<Player>,
    /// GRPO lower clip bound of the policy ratio (both players).
    #[arg(long)]
    pub clip_low: Option<f64>,
    /// GRPO upper clip bound of the policy ratio (both players).
    #[arg(long)]
    pub clip_high: Option<f64>,
    /// Coefficient of the KL penalty to the warm-up policy (both players).
    #[arg(long)]
    pub kl_coef: Option<f64>,
    /// Learning rate of the agent's GRPO updates.
    #[arg(long)]
    pub agent_lr: Option<f64>,
    /// Learning rate of the attacker's GRPO updates.
    #[arg(long)]
    pub attacker_lr: Option<f64>,
    /// Scripted episodes demonstrated in the warm-up.
    #[arg(long)]
    pub warmup_episodes: Option<usize>,
    /// Passes over the demonstrations.
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Demonstrations per optimizer step in the warm-up.
    #[arg(long)]
    pub warmup_batch: Option<usize>,
    /// Learning rate of the warm-up.
    #[arg(long)]
    pub warmup_lr: Option<f64>,
    /// Fraction of the agent's demonstrations played by the gullible naive:1.0 agent.
    #[arg(long)]
    pub naive_fraction: Option<f64>,
    /// Agent turns per episode.
    #[arg(long)]
    pub max_turns: Option<u32>,
    /// Play only these suites (comma-separated: web,email,banking,travel; default all) in
    /// the warm-up, the iterations and the evaluation: the small-scale setting.
    #[arg(long, value_delimiter = ',')]
    pub suites: Vec<arlas_game::Suite>,
    /// New tokens an agent action may take.
    #[arg(long)]
    pub agent_max_tokens: Option<usize>,
    /// New tokens an injection may take.
    #[arg(long)]
    pub attacker_max_tokens: Option<usize>,
    /// Sampling temperature of both players during training rollouts.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Episodes played at once by the actor.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Held-out episodes per attacker in evaluations.
    #[arg(long)]
    pub eval_episodes: Option<usize>,
    /// Evaluate every this many iterations (0 = only after the warm-up and at the end).
    #[arg(long)]
    pub eval_every: Option<u32>,
}

impl SettingsArgs {
    /// Applies every given flag to `s`.
    pub fn apply(&self, s: &mut Settings) {
        macro_rules! set {
            ($flag:expr, $field:expr) => {
                if let Some(v) = $flag.clone() {
                    $field = v;
                }
            };
        }
        set!(self.model, s.model);
        set!(self.models_dir, s.models_dir);
        if self.agent.is_some() {
            s.agent_init = self.agent.clone();
        }
        if self.attacker.is_some() {
            s.attacker_init = self.attacker.clone();
        }
        set!(self.seed, s.seed);
        set!(self.iterations, s.iterations);
        set!(self.tasks_per_iteration, s.tasks_per_iteration);
        set!(self.group_size, s.group_size);
        set!(self.opponents, s.opponents);
        set!(self.opponent_sampling, s.opponent_sampling);
        if self.freeze.is_some() {
            s.freeze = self.freeze;
        }
        for learner in [&mut s.agent, &mut s.attacker] {
            set!(self.clip_low, learner.train.clip_low);
            set!(self.clip_high, learner.train.clip_high);
            set!(self.kl_coef, learner.train.kl_coef);
        }
        set!(self.agent_lr, s.agent.train.learning_rate);
        set!(self.attacker_lr, s.attacker.train.learning_rate);
        set!(self.warmup_episodes, s.warmup.episodes);
        set!(self.warmup_epochs, s.warmup.epochs);
        set!(self.warmup_lr, s.warmup.train.learning_rate);
        set!(self.warmup_batch, s.warmup.minibatch_size);
        set!(self.naive_fraction, s.warmup.naive_fraction);
        set!(self.max_turns, s.rollout.game.max_turns);
        if !self.suites.is_empty() {
            s.rollout.game.suites.clone_from(&self.suites);
        }
        set!(self.batch_size, s.rollout.batch_size);
        set!(
            self.agent_max_tokens,
            s.rollout.agent_sampling.max_new_tokens
        );
        set!(
            self.attacker_max_tokens,
            s.rollout.attacker_sampling.max_new_tokens
        );
        set!(self.temperature, s.rollout.agent_sampling.temperature);
        set!(self.temperature, s.rollout.attacker_sampling.temperature);
        set!(self.eval_episodes, s.eval.episodes);
        set!(self.eval_every, s.eval.every);
    }
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let (dir, start) = match (&args.resume, &args.run_dir) {
        (Some(dir), _) => (dir.clone(), Start::Resume),
        (None, Some(dir)) => {
            let mut settings = match &args.config {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read the config file {}", path.display())
                    })?;
                    settings_from_json(&text).with_context(|| {
                        format!("{} is not a valid settings file", path.display())
                    })?
                }
                None => Settings::default(),
            };
            args.settings.apply(&mut settings);
            if let Some(actors) = args.processes {
                return super::processes::run(dir, settings, actors, args.sync, args.quiet);
            }
            (dir.clone(), Start::New(Box::new(settings)))
        }
        (None, None) => anyhow::bail!("give --run-dir DIR for a new run or --resume DIR"),
    };
    let summary = pipeline::run(RunDir::new(dir), start, !args.quiet)?;
    print_summary(&summary, args.json)
}

/// A settings file is a partial override of the defaults: every table it names is merged
/// key by key into the default settings, so `{"agent": {"train": {"micro_batch_size": 1}}}`
/// changes that one value and keeps the agent's default learning rate (deserializing the
/// file alone would fill the rest of `train` from `TrainConfig`'s defaults, not the run's).
fn settings_from_json(text: &str) -> anyhow::Result<Settings> {
    fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
        match (base, over) {
            (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
                for (key, value) in over {
                    match base.get_mut(&key) {
                        Some(slot) => merge(slot, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (slot, value) => *slot = value,
        }
    }
    let over: serde_json::Value = serde_json::from_str(text)?;
    let mut merged = serde_json::to_value(Settings::default())?;
    merge(&mut merged, over);
    Ok(serde_json::from_value(merged)?)
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run directory (default: runs/demo, or runs/demo-N if that is taken).
    #[arg(long, env = "ARLAS_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Seed of the demo run.
    #[arg(long, env = "ARLAS_SEED", default_value_t = 0)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long, env = "ARLAS_QUIET")]
    pub quiet: bool,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.run_dir {
        Some(d) => d,
        None => {
            let base = PathBuf::from("runs");
            let mut candidate = base.join("demo");
            let mut n = 2;
            while candidate.exists() {
                candidate = base.join(format!("demo-{n}"));
                n += 1;
            }
            candidate
        }
    };
    let mut settings = Settings::demo();
    settings.seed = args.seed;
    eprintln!(
        "arlas demo: the whole ARLAS pipeline on the built-in tiny model ({} iterations), writing {}",
        settings.iterations,
        dir.display()
    );
    let summary = pipeline::run(
        RunDir::new(dir),
        Start::New(Box::new(settings)),
        !args.quiet,
    )?;
    print_summary(&summary, args.json)
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
        return Ok(());
    }
    println!("\nWarm-up agent vs trained agent, held-out tasks:\n");
    println!("| {:<42} | {:>8} | {:>8} |", "metric", "warm-up", "trained");
    println!("|{:-<44}|{:-<10}|{:-<10}|", "", "", "");
    for row in &summary.evaluation.table {
        println!(
            "| {:<42} | {:>8.3} | {:>8.3} |",
            row.metric, row.warmup, row.trained
        );
    }
    println!(
        "\nfinished in {:.0} s; report: {}",
        summary.seconds,
        summary.report.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_overrides_only_what_it_names() {
        let s = settings_from_json(
            r#"{"agent": {"train": {"micro_batch_size": 1}}, "rollout": {"game": {"suites": ["banking"]}}}"#,
        )
        .unwrap();
        let d = Settings::default();
        assert_eq!(s.agent.train.micro_batch_size, 1);
        assert!((s.agent.train.learning_rate - d.agent.train.learning_rate).abs() < 1e-12);
        assert_eq!(s.agent.minibatch_size, d.agent.minibatch_size);
        assert_eq!(s.rollout.game.max_turns, d.rollout.game.max_turns);
        assert_eq!(s.rollout.game.suites, vec![arlas_game::Suite::Banking]);
        let err = settings_from_json(r#"{"agent": {"train": {"micro_batch": 1}}}"#).unwrap_err();
        assert!(format!("{err:#}").contains("micro_batch"), "{err:#}");
    }
}
