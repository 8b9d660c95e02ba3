//! `arlas train`, `arlas demo`: the one-machine ARLAS pipeline.

use std::path::PathBuf;

use anyhow::Context as _;
use arlas::pipeline::{self, RunDir, RunOptions, Settings, Start, Summary};
use arlas_coordinator::{OpponentPool, OpponentSampling};
use arlas_learner::Player;
use clap::Args;
use serde::Serialize;

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
    /// Continue the stopped run in this directory, with its own settings; `--iterations N`
    /// (the only setting that can change) extends a finished run to N iterations.
    #[arg(long, env = "ARLAS_RESUME")]
    pub resume: Option<PathBuf>,
    /// Settings file: TOML with the keys of a run's config.json (a JSON file named *.json
    /// also reads); it changes only what it names, and flags override it.
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
    /// Device the models sample and train on: cpu, cuda or cuda:N (a build with
    /// `--features cuda`). With --processes, every role uses it.
    #[arg(long, env = "ARLAS_DEVICE", default_value = "cpu")]
    pub device: String,
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

/// Settings of a run, each flag a key of the settings (`config.json`'s layout) that it
/// overrides: `--agent-lr` is `agent.train.learning_rate`, `--clip-low` sets both players'.
#[derive(Debug, Args, Default, Serialize)]
pub struct SettingsArgs {
    /// Base model of both players: tiny, tiny-2m, tiny-20m, smollm2, or a model directory.
    #[arg(long, env = "ARLAS_MODEL")]
    pub model: Option<String>,
    /// Where tiny models are built and smollm2 is fetched.
    #[arg(long, env = "ARLAS_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// LoRA adapters over one shared frozen base (`on`), every weight (`off`), or `auto`:
    /// adapters for pretrained bases (smollm2, a model directory), full fine-tuning for the
    /// random-init tiny presets. Decided per player, by the model it starts from.
    #[arg(long, env = "ARLAS_ADAPTERS")]
    #[serde(rename = "adapters.mode")]
    pub adapters: Option<arlas::pipeline::models::AdapterMode>,
    /// Rank of the adapters.
    #[arg(long)]
    #[serde(rename = "adapters.lora.rank")]
    pub lora_rank: Option<usize>,
    /// Alpha of the adapters (their output is scaled by alpha / rank).
    #[arg(long)]
    #[serde(rename = "adapters.lora.alpha")]
    pub lora_alpha: Option<f64>,
    /// Projections that get adapters (comma-separated: q_proj, k_proj, v_proj, o_proj,
    /// gate_proj, up_proj, down_proj; default all).
    #[arg(long, value_delimiter = ',')]
    #[serde(
        rename = "adapters.lora.targets",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lora_targets: Vec<String>,
    /// The KL reference of an adapter-trained player: warmup (its imitation adapters,
    /// frozen) or base (the adapters switched off). Neither copies the base.
    #[arg(long)]
    #[serde(rename = "adapters.reference")]
    pub kl_reference: Option<arlas::pipeline::models::KlReference>,
    /// Start the agent from this checkpoint (skips its warm-up).
    #[arg(long)]
    #[serde(rename = "agent_init")]
    pub agent: Option<PathBuf>,
    /// Start the attacker from this checkpoint (skips its warm-up).
    #[arg(long)]
    #[serde(rename = "attacker_init")]
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
    #[serde(rename = "agent.train.clip_low,attacker.train.clip_low")]
    pub clip_low: Option<f64>,
    /// GRPO upper clip bound of the policy ratio (both players).
    #[arg(long)]
    #[serde(rename = "agent.train.clip_high,attacker.train.clip_high")]
    pub clip_high: Option<f64>,
    /// Coefficient of the KL penalty to the warm-up policy (both players).
    #[arg(long)]
    #[serde(rename = "agent.train.kl_coef,attacker.train.kl_coef")]
    pub kl_coef: Option<f64>,
    /// Learning rate of the agent's GRPO updates.
    #[arg(long)]
    #[serde(rename = "agent.train.learning_rate")]
    pub agent_lr: Option<f64>,
    /// Learning rate of the attacker's GRPO updates.
    #[arg(long)]
    #[serde(rename = "attacker.train.learning_rate")]
    pub attacker_lr: Option<f64>,
    /// Scripted episodes demonstrated in the warm-up.
    #[arg(long)]
    #[serde(rename = "warmup.episodes")]
    pub warmup_episodes: Option<usize>,
    /// Passes over the demonstrations.
    #[arg(long)]
    #[serde(rename = "warmup.epochs")]
    pub warmup_epochs: Option<usize>,
    /// Demonstrations per optimizer step in the warm-up.
    #[arg(long)]
    #[serde(rename = "warmup.minibatch_size")]
    pub warmup_batch: Option<usize>,
    /// Learning rate of the warm-up.
    #[arg(long)]
    #[serde(rename = "warmup.train.learning_rate")]
    pub warmup_lr: Option<f64>,
    /// Fraction of the agent's demonstrations played by the gullible naive:1.0 agent.
    #[arg(long)]
    #[serde(rename = "warmup.naive_fraction")]
    pub naive_fraction: Option<f64>,
    /// Agent turns per episode.
    #[arg(long)]
    #[serde(rename = "rollout.game.max_turns")]
    pub max_turns: Option<u32>,
    /// Play only these suites (comma-separated; built-in: web,email,banking,travel;
    /// agentdojo: workspace,travel,banking,slack; default all) in the warm-up, the iterations
    /// and the evaluation: the small-scale setting.
    #[arg(long, value_delimiter = ',')]
    #[serde(rename = "environment.suites", skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<String>,
    /// Where episodes are played: builtin (in process) or agentdojo (an environment
    /// service, started locally from envs/agentdojo unless --env-url names one).
    #[arg(long = "env")]
    #[serde(rename = "environment.kind")]
    pub env: Option<arlas::environments::EnvKind>,
    /// A running environment service (http://HOST:PORT), e.g. from `arlas env agentdojo`.
    #[arg(long)]
    #[serde(rename = "environment.url")]
    pub env_url: Option<String>,
    /// The file holding the environment service's token.
    #[arg(long)]
    #[serde(rename = "environment.token_file")]
    pub env_token_file: Option<PathBuf>,
    /// New tokens an agent action may take.
    #[arg(long)]
    #[serde(rename = "rollout.agent_sampling.max_new_tokens")]
    pub agent_max_tokens: Option<usize>,
    /// New tokens an injection may take.
    #[arg(long)]
    #[serde(rename = "rollout.attacker_sampling.max_new_tokens")]
    pub attacker_max_tokens: Option<usize>,
    /// Sampling temperature of both players during training rollouts.
    #[arg(long)]
    #[serde(rename = "rollout.agent_sampling.temperature,rollout.attacker_sampling.temperature")]
    pub temperature: Option<f32>,
    /// Episodes played at once by the actor.
    #[arg(long)]
    #[serde(rename = "rollout.batch_size")]
    pub batch_size: Option<usize>,
    /// Held-out episodes per attacker in evaluations.
    #[arg(long)]
    #[serde(rename = "eval.episodes")]
    pub eval_episodes: Option<usize>,
    /// Evaluate every this many iterations (0 = only after the warm-up and at the end).
    #[arg(long)]
    #[serde(rename = "eval.every")]
    pub eval_every: Option<u32>,
}
/// `--resume` takes the run's own settings: anything given besides `--iterations` is an error,
/// not silently ignored.
fn resume_changes(args: &TrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.config.is_none(),
        "--resume continues a run with its own settings (its config.json); --config cannot change them"
    );
    let given = serde_json::to_value(&args.settings)?;
    let changed: Vec<&String> = given
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, value)| {
            key.as_str() != "iterations"
                && !value.is_null()
                && value.as_array().is_none_or(|a| !a.is_empty())
        })
        .map(|(key, _)| key)
        .collect();
    anyhow::ensure!(
        changed.is_empty(),
        "--resume continues a run with its own settings (its config.json); only --iterations \
         can change, but these were given: {}",
        changed
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    let (dir, start) = match (&args.resume, &args.run_dir) {
        (Some(dir), _) => {
            resume_changes(&args)?;
            if let Some(n) = args.settings.iterations {
                pipeline::set_iterations(&RunDir::new(dir), n)?;
            }
            (dir.clone(), Start::Resume)
        }
        (None, Some(dir)) => {
            let mut settings =
                arlas::config::load(&Settings::default(), args.config.as_deref(), &args.settings)?;
            settings.resolve_environment()?;
            if let Some(actors) = args.processes {
                let options = super::processes::Options {
                    actors,
                    sync: args.sync,
                    quiet: args.quiet,
                    json: args.json,
                    device: args.device.clone(),
                };
                return super::processes::run(dir, settings, &options);
            }
            (dir.clone(), Start::New(Box::new(settings)))
        }
        (None, None) => anyhow::bail!("give --run-dir DIR for a new run or --resume DIR"),
    };
    let options = RunOptions {
        show_progress: !args.quiet,
        device: device(&args.device)?,
    };
    let summary = pipeline::run(RunDir::new(dir), start, &options)?;
    print_summary(&summary, args.json)
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
    let options = RunOptions {
        show_progress: !args.quiet,
        device: arlas_policy::Device::Cpu,
    };
    let summary = pipeline::run(RunDir::new(dir), Start::New(Box::new(settings)), &options)?;
    print_summary(&summary, args.json)
}

/// The device of `--device`, with the flag named in the error.
fn device(name: &str) -> anyhow::Result<arlas_policy::Device> {
    arlas_policy::device_from_name(name).with_context(|| format!("--device {name}"))
}

pub fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
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
        "\nTrained minus warm-up on the same episodes (paired, 95% intervals, exact McNemar p):\n"
    );
    super::eval::print_comparison(&summary.evaluation.paired);
    println!(
        "\n{}",
        super::eval::effect_sentence(&summary.evaluation.paired)
    );
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
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SettingsArgs,
    }

    fn load(file: &std::path::Path, flags: &[&str]) -> anyhow::Result<Settings> {
        let args = Cli::try_parse_from(std::iter::once("arlas").chain(flags.iter().copied()))?.args;
        arlas::config::load(&Settings::default(), Some(file), &args)
    }

    #[test]
    fn a_settings_file_overrides_only_what_it_names_and_flags_override_it() {
        let tmp = tempfile::tempdir().unwrap();
        let json = tmp.path().join("s.json");
        std::fs::write(
            &json,
            r#"{"agent": {"train": {"micro_batch_size": 1}}, "rollout": {"game": {"suites": ["banking"]}}}"#,
        )
        .unwrap();
        let s = load(&json, &["--clip-low", "0.2"]).unwrap();
        let d = Settings::default();
        assert_eq!(s.agent.train.micro_batch_size, 1);
        assert!((s.agent.train.learning_rate - d.agent.train.learning_rate).abs() < 1e-12);
        assert_eq!(s.agent.minibatch_size, d.agent.minibatch_size);
        assert_eq!(s.rollout.game.max_turns, d.rollout.game.max_turns);
        assert_eq!(s.rollout.game.suites, vec![arlas_game::Suite::Banking]);
        assert!((s.agent.train.clip_low - 0.2).abs() < 1e-12);
        assert!(
            (s.attacker.train.clip_low - 0.2).abs() < 1e-12,
            "--clip-low sets both"
        );

        let toml = tmp.path().join("s.toml");
        std::fs::write(&toml, "iterations = 3\n[warmup]\nepisodes = 8\n").unwrap();
        let s = load(&toml, &["--iterations", "5"]).unwrap();
        assert_eq!((s.iterations, s.warmup.episodes), (5, 8));

        std::fs::write(&json, r#"{"agent": {"train": {"micro_batch": 1}}}"#).unwrap();
        let err = load(&json, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("micro_batch"), "{err:#}");
    }
}
