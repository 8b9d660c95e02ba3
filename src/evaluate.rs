//! Evaluating an agent on held-out tasks, with no attack and against attackers: what
//! `arlas eval` prints and `arlas train --processes` runs on its final agent.

use std::path::PathBuf;

use crate::environments::{EnvArgs, EnvKind};
use crate::pipeline::models::Models;
use anyhow::Context as _;
use arlas_actor::AgentPlayer;
use arlas_actor::eval::{Comparison, EvalReport, compare};
use arlas_actor::{Diversity, EvalRates};
use arlas_actor::{Opponent, RolloutConfig, diversity};
use arlas_coordinator::Population;
use arlas_core::stats::Proportion;
use arlas_game::players::{AgentKind, AttackerKind};
use arlas_game::{Split, play::episode_seed};
use arlas_policy::Policy;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The agent: a checkpoint or model directory (e.g. RUN/agent/final), a --model value,
    /// or a scripted agent (expert, naive:P, random on the built-in suites; oracle, obey on
    /// agentdojo).
    #[arg(long, env = "ARLAS_AGENT")]
    pub agent: String,
    #[command(flatten)]
    pub env: EnvArgs,
    /// An attack the environment renders itself (agentdojo: important_instructions,
    /// tool_knowledge, ignore_previous, system_message, direct); repeat for several. With
    /// --env agentdojo and none given: important_instructions.
    #[arg(long = "attack")]
    pub env_attacks: Vec<String>,
    /// Tasks to play: eval (held out) or train.
    #[arg(long, default_value = "eval")]
    pub split: Split,
    /// An attack file (JSONL: {"id", "family", "template"}); repeat for several.
    #[arg(long = "attacks")]
    pub attacks: Vec<PathBuf>,
    /// A population directory (RUN/population): play against every member.
    #[arg(long)]
    pub population: Option<PathBuf>,
    /// An attacker checkpoint directory; repeat for several.
    #[arg(long = "attacker")]
    pub attackers: Vec<PathBuf>,
    /// Leave out the built-in template attacker.
    #[arg(long)]
    pub no_templates: bool,
    /// Episodes per attacker (and without attack).
    #[arg(long, default_value_t = DEFAULT_EPISODES)]
    pub episodes: usize,
    /// Play every task of the environment's benchmark once instead of --episodes drawn
    /// ones (agentdojo: every (user task, injection task) pair of the chosen suites, both
    /// splits: the benchmark as published).
    #[arg(long)]
    pub all_tasks: bool,
    /// Seed of the episodes and the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Agent sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Agent turns per episode (default 8 on the built-in suites, 20 on agentdojo).
    #[arg(long)]
    pub max_turns: Option<u32>,
    /// Play only these suites (comma-separated; built-in: web,email,banking,travel;
    /// agentdojo: workspace,travel,banking,slack; default all).
    #[arg(long, value_delimiter = ',')]
    pub suites: Vec<String>,
    /// Where tiny models are built and smollm2 is fetched.
    #[arg(long, env = "ARLAS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Device the models run on: cpu, cuda or cuda:N (a build with `--features cuda`).
    #[arg(long, env = "ARLAS_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Also write every attacked episode to this JSON Lines file: task, attacker, the
    /// injections, the agent's actions as it wrote them, outcome — to see what it does.
    #[arg(long)]
    pub transcripts: Option<PathBuf>,
    /// Write every episode in the environment's own results layout under this directory
    /// (agentdojo: DIR/PIPELINE/SUITE/USER_TASK/ATTACK/INJECTION_TASK.json, `none/none.json`
    /// without attack, as AgentDojo's TraceLogger writes them; PIPELINE is `arlas-` and the
    /// agent's name).
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// A second agent (checkpoint or model directory, or a --model value), e.g. the warm-up
    /// agent RUN/agent/warmup: played on the same episodes, against the same attackers,
    /// with the same seeds; the report adds the paired difference of each rate (agent minus
    /// baseline) with its 95% interval and an exact McNemar p-value.
    #[arg(long)]
    pub baseline: Option<String>,
}

/// Episodes per attacker unless `--episodes` says otherwise.
pub const DEFAULT_EPISODES: usize = 100;

impl EvalArgs {
    /// The defaults of every flag, for `agent`.
    pub fn new(agent: impl Into<String>) -> Self {
        Self {
            agent: agent.into(),
            env: EnvArgs::default(),
            env_attacks: Vec::new(),
            split: Split::Eval,
            attacks: Vec::new(),
            population: None,
            attackers: Vec::new(),
            no_templates: false,
            episodes: DEFAULT_EPISODES,
            all_tasks: false,
            seed: 0,
            temperature: 0.0,
            max_turns: None,
            suites: Vec::new(),
            models_dir: PathBuf::from("models"),
            device: "cpu".to_string(),
            transcripts: None,
            results_dir: None,
            baseline: None,
        }
    }
}

/// The agent: a checkpoint or model directory as it is, or a `--model` value.
fn load(spec: &str, models: &Models) -> anyhow::Result<Policy> {
    let path = std::path::Path::new(spec);
    if path.is_dir() {
        models.load_dir(path, false)
    } else {
        models.load(spec, false, 0, None)
    }
}

/// An agent to evaluate: scripted (by name) or a policy.
enum Agent {
    Scripted(AgentKind),
    Policy(Box<Policy>),
}

impl Agent {
    fn load(spec: &str, models: &Models) -> anyhow::Result<Self> {
        if !std::path::Path::new(spec).exists()
            && let Ok(kind) = AgentKind::parse(spec)
        {
            return Ok(Self::Scripted(kind));
        }
        load(spec, models).map(|p| Self::Policy(Box::new(p)))
    }

    fn player(&self) -> anyhow::Result<AgentPlayer<'_>> {
        Ok(match self {
            Self::Scripted(kind) => AgentPlayer::scripted(*kind)?,
            Self::Policy(policy) => AgentPlayer::Policy { policy, version: 0 },
        })
    }

    fn policy(&self) -> Option<&Policy> {
        match self {
            Self::Policy(p) => Some(p),
            Self::Scripted(_) => None,
        }
    }
}

/// Plays the agent of `args` and reports (see [`EvalArgs`]).
pub fn evaluate(args: &EvalArgs) -> anyhow::Result<EvalOutput> {
    let device = arlas_policy::device_from_name(&args.device)
        .with_context(|| format!("--device {}", args.device))?;
    anyhow::ensure!(args.episodes > 0, "--episodes must be at least 1");
    // One pool of frozen bases: an adapter agent and a population of adapters share one base.
    let models = Models::new(args.models_dir.clone(), device);
    let agent = Agent::load(&args.agent, &models)?;

    // Learned attackers: population members and checkpoints, loaded once.
    let mut learned: Vec<(String, Policy, u64)> = Vec::new();
    if let Some(dir) = &args.population {
        let population = Population::open(dir)
            .with_context(|| format!("cannot open the population at {}", dir.display()))?;
        for m in population.members() {
            let policy = models.load_dir(&population.checkpoint_dir(&m.id)?, false)?;
            learned.push((m.id.clone(), policy, m.attacker_version));
        }
    }
    for dir in &args.attackers {
        let policy = models.load_dir(dir, false)?;
        learned.push((format!("attacker:{}", dir.display()), policy, 0));
    }

    let env_attacks = match (args.env.env, args.env_attacks.is_empty()) {
        (EnvKind::Agentdojo, true) => vec!["important_instructions".to_string()],
        _ => args.env_attacks.clone(),
    };
    // Built afresh for each agent, so that both meet the same attackers in the same state.
    let opponents = || -> anyhow::Result<Vec<Opponent<'_>>> {
        let mut opponents = Vec::new();
        if !args.no_templates {
            opponents.push(Opponent::templates()?);
        }
        for path in &args.attacks {
            let kind = AttackerKind::File(path.clone());
            opponents.push(
                Opponent::scripted(&kind)
                    .with_context(|| format!("cannot load the attack file {}", path.display()))?,
            );
        }
        for name in &env_attacks {
            opponents.push(Opponent::scripted(&AttackerKind::Environment(
                name.clone(),
            ))?);
        }
        for (name, policy, version) in &learned {
            opponents.push(Opponent::policy(name.clone(), policy, *version));
        }
        Ok(opponents)
    };

    let mut config = RolloutConfig {
        seed: args.seed,
        ..RolloutConfig::default()
    };
    config.agent_sampling.temperature = args.temperature;
    if let Some(t) = args.max_turns.or(args.env.default_max_turns()) {
        config.game.max_turns = t;
    }
    let service = args.env.settings().start()?;
    anyhow::ensure!(
        args.results_dir.is_none()
            || args.env.env != EnvKind::Builtin
            || args.env.env_url.is_some(),
        "--results-dir writes an environment service's own records (--env agentdojo); the \
         built-in suites keep none: use --transcripts"
    );
    let mut env = service.open_with(&args.suites, &config.game, args.results_dir.is_some())?;
    let env = env.as_mut();
    let tasks = if args.all_tasks {
        let mut all = env.all_tasks(Split::Train)?;
        all.extend(env.all_tasks(Split::Eval)?);
        all
    } else {
        (0..args.episodes)
            .map(|k| env.sample(args.split, episode_seed(args.seed, k as u64)))
            .collect::<Result<Vec<_>, _>>()?
    };
    let played = arlas_actor::eval::evaluate(
        env,
        &mut agent.player()?,
        &mut opponents()?,
        &tasks,
        &config,
    )?;
    if let (Some(path), Some(policy)) = (&args.transcripts, agent.policy()) {
        write_transcripts(path, policy, &played.attacked)?;
    }
    let verdicts = EnvironmentVerdicts::of(&played);
    if let Some(dir) = &args.results_dir {
        let written = write_records(dir, &pipeline_name(&args.agent), &played)?;
        tracing::info!(written, dir = %dir.display(), "episode records written");
    }
    let baseline = match &args.baseline {
        Some(spec) => {
            let theirs_agent =
                Agent::load(spec, &models).with_context(|| format!("--baseline {spec}"))?;
            let theirs = arlas_actor::eval::evaluate(
                env,
                &mut theirs_agent.player()?,
                &mut opponents()?,
                &tasks,
                &config,
            )?;
            Some(BaselineEval {
                agent: spec.clone(),
                paired: compare(&played, &theirs)?,
                report: theirs.report,
            })
        }
        None => None,
    };
    let (report, attacked) = (played.report, played.attacked);
    // Each attacker's rates and the diversity of what it wrote.
    let by_attacker = report
        .by_attacker
        .iter()
        .map(|(name, rates)| {
            let injections: Vec<&str> = attacked
                .iter()
                .filter(|t| &t.opponent == name)
                .flat_map(|t| t.injections.iter().map(String::as_str))
                .collect();
            let entry = AttackerEval {
                rates: *rates,
                diversity: diversity(&injections),
            };
            (name.clone(), entry)
        })
        .collect();
    Ok(EvalOutput {
        agent: args.agent.clone(),
        split: args.split,
        seed: args.seed,
        episodes: report.episodes,
        episodes_per_attacker: tasks.len(),
        all_tasks: args.all_tasks,
        task_success_rate: report.task_success_rate,
        task_success_rate_under_attack: report.task_success_rate_under_attack,
        attack_success_rate: report.attack_success_rate,
        task_success: report.no_attack.task_success,
        task_success_under_attack: report.task_success_under_attack,
        attack_success: report.attack_success,
        no_attack: report.no_attack,
        by_attacker,
        baseline,
        environment: env.name().to_string(),
        verdicts,
    })
}

/// What an evaluation found (`arlas eval --json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutput {
    pub agent: String,
    pub split: Split,
    pub seed: u64,
    pub episodes: usize,
    pub episodes_per_attacker: usize,
    /// Every task of the benchmark was played once (`--all-tasks`), both splits.
    pub all_tasks: bool,
    pub task_success_rate: f64,
    pub task_success_rate_under_attack: f64,
    pub attack_success_rate: f64,
    /// The three rates above as counts with their 95% Wilson intervals.
    pub task_success: Proportion,
    pub task_success_under_attack: Proportion,
    pub attack_success: Proportion,
    pub no_attack: EvalRates,
    pub by_attacker: BTreeMap<String, AttackerEval>,
    /// With `--baseline`: the baseline's own report and the paired differences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineEval>,
    /// The environment that played (`builtin`, `agentdojo`).
    pub environment: String,
    /// The environment's own verdicts, where it judges by its own code (AgentDojo's
    /// `utility`, `utility_under_attack`, `targeted_asr`, `by_suite`, `by_task`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<EnvironmentVerdicts>,
}

/// Rates in AgentDojo's terms, from the environment's own verdicts: utility with no attack,
/// utility under attack and targeted attack success (security check true), each a count
/// with its 95% interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerdictRates {
    pub utility: Proportion,
    pub utility_under_attack: Proportion,
    pub targeted_asr: Proportion,
}

/// One episode's verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskVerdict {
    pub suite: String,
    pub user_task: String,
    pub injection_task: String,
    /// `none` for the episodes with no attack.
    pub attack: String,
    pub utility: bool,
    /// Whether the attack succeeded (absent with no attack).
    pub security: Option<bool>,
}

/// [`VerdictRates`] overall and by suite, and every episode's verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentVerdicts {
    #[serde(flatten)]
    pub rates: VerdictRates,
    pub by_suite: BTreeMap<String, VerdictRates>,
    pub by_task: Vec<TaskVerdict>,
}

#[derive(Default)]
struct VerdictTally {
    clean: (u64, u64),
    useful: (u64, u64),
    attacked: (u64, u64),
}

impl VerdictTally {
    fn add(&mut self, attacked: bool, v: arlas_game::Verdicts) {
        if attacked {
            self.useful.0 += u64::from(v.utility);
            self.useful.1 += 1;
            self.attacked.0 += u64::from(v.security == Some(true));
            self.attacked.1 += 1;
        } else {
            self.clean.0 += u64::from(v.utility);
            self.clean.1 += 1;
        }
    }

    fn rates(&self) -> VerdictRates {
        VerdictRates {
            utility: Proportion::new(self.clean.0, self.clean.1),
            utility_under_attack: Proportion::new(self.useful.0, self.useful.1),
            targeted_asr: Proportion::new(self.attacked.0, self.attacked.1),
        }
    }
}

impl EnvironmentVerdicts {
    /// The verdicts of an evaluation's episodes; `None` when the environment gave none.
    pub fn of(e: &arlas_actor::eval::Evaluation) -> Option<Self> {
        let episodes = e
            .clean
            .iter()
            .map(|t| (false, t))
            .chain(e.attacked.iter().map(|t| (true, t)));
        let mut all = VerdictTally::default();
        let mut by_suite: BTreeMap<String, VerdictTally> = BTreeMap::new();
        let mut by_task = Vec::new();
        for (attacked, t) in episodes {
            let Some(v) = t.verdicts else { continue };
            all.add(attacked, v);
            by_suite
                .entry(t.spec.suite.clone())
                .or_default()
                .add(attacked, v);
            let (user, injection) = t.spec.task.split_once('/').unwrap_or((&t.spec.task, ""));
            by_task.push(TaskVerdict {
                suite: t.spec.suite.clone(),
                user_task: user.to_string(),
                injection_task: injection.to_string(),
                attack: if attacked {
                    t.opponent.clone()
                } else {
                    "none".into()
                },
                utility: v.utility,
                security: v.security,
            });
        }
        if by_task.is_empty() {
            return None;
        }
        Some(Self {
            rates: all.rates(),
            by_suite: by_suite.into_iter().map(|(s, t)| (s, t.rates())).collect(),
            by_task,
        })
    }
}

/// The baseline agent on the same episodes, and this agent minus the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineEval {
    pub agent: String,
    pub report: EvalReport,
    pub paired: Comparison,
}

/// One attacker's rates and how varied its injections were.
#[derive(Debug, Clone, Serialize)]
pub struct AttackerEval {
    #[serde(flatten)]
    pub rates: EvalRates,
    pub diversity: Diversity,
}

/// One JSON line per episode: what the attacker injected and what the agent wrote.
fn write_transcripts(
    path: &std::path::Path,
    agent: &Policy,
    episodes: &[arlas_core::Trajectory],
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    for t in episodes {
        let actions = t
            .agent
            .iter()
            .map(|s| agent.tokenizer().decode(&s.completion, true))
            .collect::<Result<Vec<_>, _>>()?;
        let line = serde_json::json!({
            "environment": t.spec.environment,
            "suite": t.spec.suite,
            "template": t.spec.task,
            "seed": t.spec.seed,
            "attacker": t.opponent,
            "injections": t.injections,
            "agent_actions": actions,
            "outcome": t.outcome,
            "turns": t.turns,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// The pipeline name of an agent in a results directory: `arlas-` and its name, with every
/// character other than letters, digits, `.`, `-` and `_` replaced (a path becomes one name).
fn pipeline_name(agent: &str) -> String {
    let name: String = agent
        .trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("arlas-{name}")
}

/// A path component from a name the environment or an opponent gave: refused if it could
/// leave the directory.
fn component(name: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\', '\0'])
            && name.len() <= 255,
        "{name:?} cannot name a results file"
    );
    Ok(name)
}

/// Writes each episode's record as `DIR/PIPELINE/SUITE/USER_TASK/ATTACK/INJECTION_TASK.json`
/// (`none/none.json` with no attack; of the episodes of one path, the first is written,
/// replacing a file of an earlier evaluation), with the pipeline and attack names of this
/// evaluation. Returns how many files were written.
fn write_records(
    dir: &std::path::Path,
    pipeline: &str,
    e: &arlas_actor::eval::Evaluation,
) -> anyhow::Result<usize> {
    let mut written = 0;
    let mut paths = std::collections::HashSet::new();
    let episodes = e.clean.iter().map(|t| (None, t)).chain(
        e.attacked
            .iter()
            .map(|t| (Some(t.opponent.replace(['/', ':'], "_")), t)),
    );
    for (attack, t) in episodes {
        let Some(record) = &t.record else { continue };
        let mut record: serde_json::Value = serde_json::from_str(record)
            .with_context(|| format!("the environment's record of {} is not JSON", t.spec.task))?;
        let (user, injection) = t.spec.task.split_once('/').unwrap_or((&t.spec.task, ""));
        record["pipeline_name"] = pipeline.into();
        record["attack_type"] = attack.clone().map_or(serde_json::Value::Null, Into::into);
        if attack.is_none() {
            record["injection_task_id"] = serde_json::Value::Null;
        }
        let path = dir
            .join(component(pipeline)?)
            .join(component(&t.spec.suite)?)
            .join(component(user)?)
            .join(component(attack.as_deref().unwrap_or("none"))?)
            .join(format!(
                "{}.json",
                component(if attack.is_some() { injection } else { "none" })?
            ));
        if !paths.insert(path.clone()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written += 1;
    }
    Ok(written)
}
