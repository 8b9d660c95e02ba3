//! `arlas experiment`: per seed, an ARLAS run, the `--opponents latest` ablation from the
//! same warm-up and three paired evaluations, each a child `arlas` process; then one summary
//! across seeds (`arlas::experiment`). Every step whose output is on disk is skipped, so a
//! stopped experiment continues where it stopped when run again with the same flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use arlas::experiment::{self, seed_dir};
use arlas::pipeline::run_dir::read_json;
use clap::Args;

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Settings of every run (TOML or JSON with the keys of a run's config.json, as
    /// `arlas train --config`); the seed is set per run.
    #[arg(long)]
    pub config: PathBuf,
    /// Experiment directory: seed-S/ per seed, summary.json and summary.md.
    #[arg(long)]
    pub out: PathBuf,
    /// How many seeds: FIRST_SEED, FIRST_SEED + 1, ...
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Held-out episodes per attacker (and without attack) in each paired evaluation.
    #[arg(long, default_value_t = 100)]
    pub episodes: usize,
    /// The evaluations of seed S play the held-out episodes of seed EVAL_SEED + S (the same
    /// episodes for every agent of that seed).
    #[arg(long, default_value_t = 1000)]
    pub eval_seed: u64,
    /// An attack file (JSONL: {"id", "family", "template"}) the evaluations also play;
    /// repeat for several.
    #[arg(long)]
    pub attacks: Vec<PathBuf>,
    /// Write the summary from what is on disk, running nothing.
    #[arg(long)]
    pub summarize: bool,
}

pub fn run(args: ExperimentArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.seeds > 0, "--seeds must be at least 1");
    anyhow::ensure!(args.episodes > 0, "--episodes must be at least 1");
    anyhow::ensure!(
        args.config.is_file(),
        "--config {}: no such file",
        args.config.display()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
    let exe = std::env::current_exe().context("cannot find the arlas binary")?;
    if !args.summarize {
        for &seed in &seeds {
            run_seed(&exe, &args, seed)?;
        }
    }
    let binary = format!(
        "arlas {} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("ARLAS_COMMIT")
    );
    let summary = experiment::summarize(&args.out, &seeds, binary)?;
    let json = args.out.join("summary.json");
    std::fs::write(&json, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let md = experiment::markdown(&summary);
    std::fs::write(args.out.join("summary.md"), &md)
        .with_context(|| format!("cannot write summary.md in {}", args.out.display()))?;
    println!("{md}");
    eprintln!("experiment: wrote {} and summary.md", json.display());
    Ok(())
}

/// The chain of one seed: ARLAS, the ablation, the three paired evaluations.
fn run_seed(exe: &Path, args: &ExperimentArgs, seed: u64) -> anyhow::Result<()> {
    let dir = seed_dir(&args.out, seed);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (population, latest) = (dir.join("population"), dir.join("latest"));
    train(exe, args, seed, &population, &[])?;
    let warm_agent = population.join("agent").join("warmup");
    let warm_attacker = population.join("attacker").join("warmup");
    train(
        exe,
        args,
        seed,
        &latest,
        &[
            "--opponents".into(),
            "latest".into(),
            "--agent".into(),
            warm_agent.display().to_string(),
            "--attacker".into(),
            warm_attacker.display().to_string(),
        ],
    )?;
    let final_agent = |run: &Path| run.join("agent").join("final");
    let pairs = [
        (final_agent(&population), warm_agent.clone()),
        (final_agent(&latest), warm_agent),
        (final_agent(&population), final_agent(&latest)),
    ];
    for ((file, _), (agent, baseline)) in experiment::EVALS.iter().zip(pairs) {
        evaluate(exe, args, seed, &dir, file, &agent, &baseline)?;
    }
    Ok(())
}

/// One `arlas train` run in `run` (skipped when it finished, resumed when it stopped).
fn train(
    exe: &Path,
    args: &ExperimentArgs,
    seed: u64,
    run: &Path,
    extra: &[String],
) -> anyhow::Result<()> {
    if run.join("eval").join("final.json").is_file() {
        eprintln!("experiment: seed {seed}: {} is done", run.display());
        return Ok(());
    }
    let mut cmd = Command::new(exe);
    cmd.arg("train").arg("--quiet");
    if run.join("state.json").is_file() {
        eprintln!("experiment: seed {seed}: resuming {}", run.display());
        cmd.arg("--resume").arg(run);
    } else {
        eprintln!("experiment: seed {seed}: training {}", run.display());
        cmd.arg("--config")
            .arg(&args.config)
            .arg("--seed")
            .arg(seed.to_string())
            .arg("--run-dir")
            .arg(run)
            .args(extra);
    }
    let log = run.with_extension("log");
    spawn(cmd, &log, Stdio::null())
}

/// One paired `arlas eval` into `dir/file` (skipped when the file is there).
fn evaluate(
    exe: &Path,
    args: &ExperimentArgs,
    seed: u64,
    dir: &Path,
    file: &str,
    agent: &Path,
    baseline: &Path,
) -> anyhow::Result<()> {
    let out = dir.join(file);
    if out.is_file() {
        return Ok(());
    }
    eprintln!(
        "experiment: seed {seed}: {} against {} on {} episodes per attacker",
        agent.display(),
        baseline.display(),
        args.episodes
    );
    let config: serde_json::Value = read_json(&dir.join("population").join("config.json"))?;
    let game = &config["rollout"]["game"];
    let mut cmd = Command::new(exe);
    cmd.arg("eval")
        .arg("--json")
        .arg("--agent")
        .arg(agent)
        .arg("--baseline")
        .arg(baseline)
        .arg("--episodes")
        .arg(args.episodes.to_string())
        .arg("--seed")
        .arg((args.eval_seed + seed).to_string());
    if let Some(models) = config["models_dir"].as_str() {
        cmd.arg("--models-dir").arg(models);
    }
    if let Some(turns) = game["max_turns"].as_u64() {
        cmd.arg("--max-turns").arg(turns.to_string());
    }
    let suites: Vec<&str> = game["suites"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if !suites.is_empty() {
        cmd.arg("--suites").arg(suites.join(","));
    }
    for run in ["population", "latest"] {
        cmd.arg("--attacker")
            .arg(dir.join(run).join("attacker").join("final"));
    }
    for attacks in &args.attacks {
        cmd.arg("--attacks").arg(attacks);
    }
    let partial = out.with_extension("json.partial");
    let stdout = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    spawn(cmd, &out.with_extension("log"), Stdio::from(stdout))?;
    std::fs::rename(&partial, &out).with_context(|| format!("cannot write {}", out.display()))
}

/// Runs `cmd` to the end with its stderr in `log`.
fn spawn(mut cmd: Command, log: &Path, stdout: Stdio) -> anyhow::Result<()> {
    let err =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = cmd
        .stdout(stdout)
        .stderr(Stdio::from(err))
        .status()
        .context("cannot start arlas")?;
    anyhow::ensure!(
        status.success(),
        "{cmd:?} failed ({status}); its log is {}",
        log.display()
    );
    Ok(())
}
