//! Held-out evaluation during and after a run.

use std::collections::BTreeMap;

use arlas_actor::eval::{EvalReport, evaluate};
use arlas_actor::{AgentPlayer, Diversity, Opponent, RolloutConfig, diversity};
use arlas_game::EpisodeSpec;
use arlas_policy::Policy;
use serde::Serialize;

use super::{Pipeline, models};

/// At most this many population members are evaluated against at the end (evenly spread,
/// always including the first and the last).
pub const MAX_FINAL_MEMBERS: usize = 8;

/// The evaluation settings of a run: the agent samples with the eval temperature.
fn eval_rollout(p: &Pipeline) -> RolloutConfig {
    let mut config = p.settings.rollout.clone();
    config.agent_sampling.temperature = p.settings.eval.agent_temperature;
    config.seed = p.settings.seed ^ 0xe7a1;
    config
}

/// Evaluates `agent` on `specs` with no attack and against each opponent.
pub fn evaluate_agent(
    agent: &Policy,
    version: u64,
    opponents: &mut Vec<Opponent<'_>>,
    specs: &[EpisodeSpec],
    config: &RolloutConfig,
) -> anyhow::Result<(EvalReport, Vec<arlas_core::Trajectory>)> {
    let mut player = AgentPlayer::Policy {
        policy: agent,
        version,
    };
    Ok(evaluate(&mut player, opponents, specs, config)?)
}

/// The evaluation of an iteration: against the templates and, if given, a learned attacker.
pub(super) fn quick(
    p: &Pipeline,
    agent: &Policy,
    version: u64,
    learned: Option<(&Policy, &str)>,
) -> anyhow::Result<EvalReport> {
    let mut opponents = vec![Opponent::templates()?];
    if let Some((policy, id)) = learned {
        opponents.push(Opponent::policy(id, policy, 0));
    }
    Ok(evaluate_agent(
        agent,
        version,
        &mut opponents,
        &p.eval_specs,
        &eval_rollout(p),
    )?
    .0)
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
    /// Injection diversity: `templates`, and `learned` (the population's attackers).
    pub diversity: BTreeMap<String, Diversity>,
    pub table: Vec<Row>,
}

/// The templates and the given population members, as opponents.
fn opponents_for<'a>(p: &'a Pipeline, members: &[String]) -> anyhow::Result<Vec<Opponent<'a>>> {
    let mut opponents = vec![Opponent::templates()?];
    for id in members {
        if let (Some(policy), Ok(m)) = (p.members.get(id), p.league.population().get(id)) {
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
    let warmup_agent = models::load_dir(
        &p.dir.checkpoint("agent", "warmup"),
        &p.settings.models_dir,
        false,
        &p.device,
    )?;
    let config = eval_rollout(p);
    let build = || -> anyhow::Result<Vec<Opponent<'_>>> { opponents_for(p, &members) };
    let (warmup, _) = evaluate_agent(&warmup_agent, 0, &mut build()?, &p.eval_specs, &config)?;
    let (trained_report, attacked) = evaluate_agent(
        trained,
        trained_version,
        &mut build()?,
        &p.eval_specs,
        &config,
    )?;

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
