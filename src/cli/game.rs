//! `arlas game ...` and `arlas bench game`: thin front ends over `arlas-game`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use arlas_game::{
    AgentKind, AttackerKind, CorpusOptions, EpisodeSpec, GameConfig, PlayOptions, PlayReport,
    Split, Suite,
};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum GameCommand {
    /// Print one whole episode between the expert agent and the template attacker.
    Sample(SampleArgs),
    /// Play many episodes between scripted players and print success rates.
    Play(PlayArgs),
    /// Export game text (prompts, observations, actions, injections) for tokenizer training.
    Corpus(CorpusArgs),
}

/// Game rules shared by the subcommands that play episodes.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// Agent turns before an episode ends at the turn limit.
    #[arg(long, env = "ARLAS_GAME_MAX_TURNS", default_value_t = GameConfig::default().max_turns)]
    pub max_turns: u32,
    /// Reward subtracted per format error of a player.
    #[arg(long, env = "ARLAS_GAME_FORMAT_ERROR_PENALTY", default_value_t = GameConfig::default().format_error_penalty)]
    pub format_error_penalty: f32,
}

impl RuleArgs {
    fn config(&self) -> GameConfig {
        GameConfig {
            max_turns: self.max_turns,
            format_error_penalty: self.format_error_penalty,
            ..GameConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Suite: web, email, banking or travel (drawn from the seed when omitted).
    #[arg(long, env = "ARLAS_GAME_SUITE")]
    pub suite: Option<Suite>,
    /// Episode seed; the same seed prints the same bytes.
    #[arg(long, env = "ARLAS_GAME_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Split the task comes from: train or eval.
    #[arg(long, env = "ARLAS_GAME_SPLIT", default_value = "train")]
    pub split: Split,
    /// Task template id (drawn from the seed when omitted); see docs/game.md.
    #[arg(long)]
    pub template: Option<String>,
    /// Agent: expert, naive:P or random.
    #[arg(long, default_value = "expert")]
    pub agent: AgentKind,
    /// Attacker: none, templates or file:PATH.
    #[arg(long, default_value = "templates")]
    pub attacker: AttackerKind,
    /// Print the transcript as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub rules: RuleArgs,
}

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// Agent: expert, naive:P (obeys injections with probability P) or random.
    #[arg(long, env = "ARLAS_GAME_AGENT", default_value = "expert")]
    pub agent: AgentKind,
    /// Attacker: none, templates (built-in) or file:PATH (a JSONL attack file).
    #[arg(long, env = "ARLAS_GAME_ATTACKER", default_value = "templates")]
    pub attacker: AttackerKind,
    /// Number of episodes.
    #[arg(long, env = "ARLAS_GAME_EPISODES", default_value_t = 1000)]
    pub episodes: u64,
    /// Split: train or eval.
    #[arg(long, env = "ARLAS_GAME_SPLIT", default_value = "train")]
    pub split: Split,
    /// Run seed; episode i uses a seed derived from it.
    #[arg(long, env = "ARLAS_GAME_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Play only this suite (all four when omitted).
    #[arg(long, env = "ARLAS_GAME_SUITE")]
    pub suite: Option<Suite>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub rules: RuleArgs,
}

#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Number of episodes to export.
    #[arg(long, env = "ARLAS_GAME_EPISODES", default_value_t = 1000)]
    pub episodes: u64,
    /// Run seed.
    #[arg(long, env = "ARLAS_GAME_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Split: train or eval.
    #[arg(long, env = "ARLAS_GAME_SPLIT", default_value = "train")]
    pub split: Split,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GameBenchArgs {
    /// Number of episodes to play.
    #[arg(long, default_value_t = 20_000)]
    pub episodes: u64,
    /// Agent: expert, naive:P or random.
    #[arg(long, default_value = "expert")]
    pub agent: AgentKind,
    /// Attacker: none, templates or file:PATH.
    #[arg(long, default_value = "templates")]
    pub attacker: AttackerKind,
    /// Split: train or eval.
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// Run seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: GameCommand) -> anyhow::Result<()> {
    match cmd {
        GameCommand::Sample(args) => sample(args),
        GameCommand::Play(args) => play(args),
        GameCommand::Corpus(args) => corpus(args),
    }
}

fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let spec = match (args.suite, args.template) {
        (suite, Some(template)) => EpisodeSpec {
            suite: suite.context("--template needs --suite")?,
            split: args.split,
            template,
            seed: args.seed,
        },
        (Some(suite), None) => EpisodeSpec::sample_in(suite, args.split, args.seed),
        (None, None) => EpisodeSpec::sample(args.split, args.seed),
    };
    let transcript =
        arlas_game::sample_episode(spec, args.agent, &args.attacker, &args.rules.config())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &transcript)?;
        writeln!(out)?;
    } else {
        write!(out, "{transcript}")?;
    }
    Ok(())
}

fn play(args: PlayArgs) -> anyhow::Result<()> {
    let opts = PlayOptions {
        agent: args.agent,
        attacker: args.attacker,
        episodes: args.episodes,
        split: args.split,
        seed: args.seed,
        suite: args.suite,
        config: args.rules.config(),
    };
    let report = arlas_game::play(&opts)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report)?;
    }
    Ok(())
}

fn print_table(out: &mut impl std::io::Write, r: &PlayReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "agent {} vs attacker {}, split {}, {} episodes",
        r.agent, r.attacker, r.split, r.episodes
    )?;
    writeln!(
        out,
        "{:<8} {:>8} {:>6} {:>6} {:>8} {:>6}",
        "suite", "episodes", "TSR", "ASR", "fmt-err", "turns"
    )?;
    let rows = r.by_suite.iter().map(|(name, s)| {
        (
            name.as_str(),
            s.episodes,
            s.task_success_rate,
            s.attack_success_rate,
            s.format_error_rate,
            s.mean_turns,
        )
    });
    let all = std::iter::once((
        "all",
        r.episodes,
        r.task_success_rate,
        r.attack_success_rate,
        r.format_error_rate,
        r.mean_turns,
    ));
    for (name, n, tsr, asr, fer, turns) in rows.chain(all) {
        writeln!(
            out,
            "{name:<8} {n:>8} {tsr:>6.3} {asr:>6.3} {fer:>8.3} {turns:>6.2}"
        )?;
    }
    Ok(())
}

fn corpus(args: CorpusArgs) -> anyhow::Result<()> {
    let texts = arlas_game::corpus(&CorpusOptions {
        episodes: args.episodes,
        seed: args.seed,
        split: args.split,
    })?;
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for text in &texts {
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if let Some(path) = &args.out {
        tracing::info!(episodes = texts.len(), path = %path.display(), "wrote corpus");
    }
    Ok(())
}

/// The output of `arlas bench game --json`.
#[derive(Debug, serde::Serialize)]
struct BenchReport {
    episodes: u64,
    seconds: f64,
    episodes_per_sec: f64,
    threads: u32,
    agent: String,
    attacker: String,
    mean_turns: f64,
}

pub fn bench(args: GameBenchArgs) -> anyhow::Result<()> {
    let opts = PlayOptions {
        agent: args.agent,
        attacker: args.attacker,
        episodes: args.episodes,
        split: args.split,
        seed: args.seed,
        suite: None,
        config: GameConfig::default(),
    };
    let start = Instant::now();
    let report = arlas_game::play(&opts)?;
    let seconds = start.elapsed().as_secs_f64();
    let per_sec = if seconds > 0.0 {
        report.episodes as f64 / seconds
    } else {
        0.0
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = BenchReport {
            episodes: report.episodes,
            seconds,
            episodes_per_sec: per_sec,
            threads: 1,
            agent: report.agent,
            attacker: report.attacker,
            mean_turns: report.mean_turns,
        };
        serde_json::to_writer(&mut out, &value)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} episodes in {seconds:.3} s: {per_sec:.0} episodes/s on one thread",
            report.episodes
        )?;
    }
    Ok(())
}
