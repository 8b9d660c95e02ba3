//! Held-out evaluation during and after a run.

use std::collections::BTreeMap;

use arlas_actor::eval::{Comparison, EvalReport, Evaluation, compare, evaluate};
use arlas_actor::{AgentPlayer, Diversity, Opponent, RolloutConfig, diversity};
use arlas_coordinator::League;
use arlas_game::{Environment, Split, TaskRef, play::episode_seed};
use arlas_policy::Policy;
use serde::Serialize;

use super::{Pipeline, Settings};

/// At most this many population members are evaluated against at the end (evenly spread,
/// always including the first and the last).
pub const MAX_FINAL_MEMBERS: usize = 8;

/// Salt of the held-out evaluation episodes' seeds.
const EVAL_SALT: u64 = 0x0e7a_1000;

/// A run's held-out evaluation: its environment, its tasks (the same at every
/// evaluation, so that comparisons are paired) and how they are played.
pub(super) struct EvalSet {
    env: Box<dyn Environment>,
    tasks: Vec<TaskRef>,
    config: RolloutConfig,
}

impl EvalSet {
    /// The held-out tasks of `settings` in `env`; the agent samples with the eval
    /// temperature.
    pub(super) fn new(env: Box<dyn Environment>, settings: &Settings) -> anyhow::Result<Self> {
        let tasks = (0..settings.eval.episodes)
            .map(|k| {
                env.sample(
                    Split::Eval,
                    episode_seed(settings.seed ^ EVAL_SALT, k as u64),
                )
            })
            .collect::<Result<_, _>>()?;
        let mut config = settings.rollout.clone();
        config.agent_sampling.temperature = settings.eval.agent_temperature;
        config.seed = settings.seed ^ 0xe7a1;
        Ok(Self { env, tasks, config })
    }

    /// `agent` on the held-out tasks with no attack and against each opponent.
    fn run(
        &mut self,
        agent: &Policy,
        version: u64,
        opponents: &mut Vec<Opponent<'_>>,
    ) -> anyhow::Result<Evaluation> {
        evaluate_agent(
            &mut *self.env,
            agent,
            version,
            opponents,
            &self.tasks,
            &self.config,
        )
    }
}

/// Evaluates `agent` on `tasks` in `env` with no attack and against each opponent.
pub fn evaluate_agent(
    env: &mut dyn Environment,
    agent: &Policy,
    version: u64,
    opponents: &mut Vec<Opponent<'_>>,
    tasks: &[TaskRef],
    config: &RolloutConfig,
) -> anyhow::Result<Evaluation> {
    let mut player = AgentPlayer::Policy {
        policy: agent,
        version,
    };
    Ok(evaluate(env, &mut player, opponents, tasks, config)?)
}

/// The evaluation of an iteration: against the templates and, if given, a learned attacker.
pub(super) fn quick(
    eval: &mut EvalSet,
    agent: &Policy,
    version: u64,
    learned: Option<(&Policy, &str)>,
) -> anyhow::Result<EvalReport> {
    let mut opponents = vec![Opponent::templates()?];
    if let Some((policy, id)) = learned {
        opponents.push(Opponent::policy(id, policy, 0));
    }
    Ok(eval.run(agent, version, &mut opponents)?.report)
}

/// One row of the before/after table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub warmup: f64,
    pub trained: f64,
}

/// Everything measured at the end of a run (`DIR/eval/final.json`).
#[derive(Debug, Clone, Serialize)]
pub struct FinalEvaluation {
    /// The warm-up agent.
    pub warmup: EvalReport,
    /// The trained agent.
    #[serde(rename = "final")]
    pub trained: EvalReport,
    /// The trained agent minus the warm-up agent, paired on the same episodes.
    pub paired: Comparison,
    /// Injection diversity: `templates`, and `learned` (the population's attackers).
    pub diversity: BTreeMap<String, Diversity>,
    pub table: Vec<Row>,
}

/// The templates and the given population members, as opponents.
fn opponents_for<'a>(
    loaded: &'a BTreeMap<String, Policy>,
    league: &League,
    members: &[String],
) -> anyhow::Result<Vec<Opponent<'a>>> {
    let mut opponents = vec![Opponent::templates()?];
    for id in members {
        if let (Some(policy), Ok(m)) = (loaded.get(id), league.population().get(id)) {
            opponents.push(Opponent::policy(id.clone(), policy, m.attacker_version));
        }
    }
    Ok(opponents)
}

/// Population members evaluated against at the end.
fn final_members(ids: &[String]) -> Vec<String> {
    if ids.len() <= MAX_FINAL_MEMBERS {
        return ids.to_vec();
    }
    let last = ids.len() - 1;
    let mut picked: Vec<String> = (0..MAX_FINAL_MEMBERS)
        .map(|k| ids[k * last / (MAX_FINAL_MEMBERS - 1)].clone())
        .collect();
    picked.dedup();
    picked
}

/// Mean of a rate over the learned attackers of a report.
fn learned_mean(
    report: &EvalReport,
    members: &[String],
    rate: impl Fn(&arlas_actor::EvalRates) -> f64,
) -> f64 {
    let values: Vec<f64> = members
        .iter()
        .filter_map(|m| report.by_attacker.get(m))
        .map(&rate)
        .collect();
    #[allow(clippy::cast_precision_loss)]
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The warm-up agent and the trained agent against the templates and the population.
pub(super) fn final_evaluation(
    p: &mut Pipeline,
    trained: &Policy,
    trained_version: u64,
) -> anyhow::Result<FinalEvaluation> {
    let ids: Vec<String> = p
        .league
        .population()
        .members()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let members = final_members(&ids);
    for id in &members {
        p.member(id)?;
    }
    let warmup_agent = p
        .models
        .load_dir(&p.dir.checkpoint("agent", "warmup"), false)?;
    let build = || opponents_for(&p.members, &p.league, &members);
    let before = p.eval.run(&warmup_agent, 0, &mut build()?)?;
    let after = p.eval.run(trained, trained_version, &mut build()?)?;
    let paired = compare(&after, &before)?;
    let (warmup, trained_report, attacked) = (before.report, after.report, after.attacked);

    let mut by_source: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for t in &attacked {
        let source = if t.opponent == "templates" {
            "templates"
        } else {
            "learned"
        };
        by_source
            .entry(source.to_string())
            .or_default()
            .extend(t.injections.iter().map(String::as_str));
    }
    let diversity = by_source
        .into_iter()
        .map(|(k, v)| (k, diversity(&v)))
        .collect();

    let rows = vec![
        Row {
            metric: "task success rate (no attack)".into(),
            warmup: warmup.task_success_rate,
            trained: trained_report.task_success_rate,
        },
        Row {
            metric: "attack success rate (templates)".into(),
            warmup: warmup
                .by_attacker
                .get("templates")
                .map_or(0.0, |r| r.attack_success_rate),
            trained: trained_report
                .by_attacker
                .get("templates")
                .map_or(0.0, |r| r.attack_success_rate),
        },
        Row {
            metric: "attack success rate (learned attackers)".into(),
            warmup: learned_mean(&warmup, &members, |r| r.attack_success_rate),
            trained: learned_mean(&trained_report, &members, |r| r.attack_success_rate),
        },
        Row {
            metric: "task success rate under attack".into(),
            warmup: warmup.task_success_rate_under_attack,
            trained: trained_report.task_success_rate_under_attack,
        },
    ];
    Ok(FinalEvaluation {
        warmup,
        trained: trained_report,
        paired,
        diversity,
        table: rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_members_are_spread_and_keep_both_ends() {
        let ids: Vec<String> = (0..20).map(|i| format!("attacker-{i:04}")).collect();
        let picked = final_members(&ids);
        assert_eq!(picked.len(), MAX_FINAL_MEMBERS);
        assert_eq!(picked.first(), ids.first());
        assert_eq!(picked.last(), ids.last());
        assert_eq!(final_members(&ids[..3]), ids[..3].to_vec());
    }
}
