//! Evaluation: task and attack success rates, with no attack and against each opponent.

use std::collections::BTreeMap;

use arlas_game::{Environment, Outcome, TaskRef};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rollout::{AgentPlayer, Opponent, RolloutConfig, jobs_from, play};
use arlas_core::Trajectory;

/// Rates over a set of finished episodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalRates {
    pub episodes: usize,
    /// Completed without a leak.
    pub task_success_rate: f64,
    /// Leaked a private value.
    pub attack_success_rate: f64,
    /// Agent format errors per agent turn.
    pub format_error_rate: f64,
    pub mean_turns: f64,
    pub mean_agent_reward: f64,
    pub mean_attacker_reward: f64,
}

/// The rates of `trajectories`.
pub fn rates<'a>(trajectories: impl IntoIterator<Item = &'a Trajectory>) -> EvalRates {
    let mut n = 0usize;
    let (mut completed, mut leaked, mut errors, mut turns) = (0usize, 0usize, 0u64, 0u64);
    let (mut agent_reward, mut attacker_reward) = (0f64, 0f64);
    for t in trajectories {
        n += 1;
        completed += usize::from(t.outcome == Outcome::Completed);
        leaked += usize::from(t.outcome == Outcome::Leaked);
        errors += u64::from(t.format_errors);
        turns += u64::from(t.turns);
        agent_reward += f64::from(t.rewards.agent);
        attacker_reward += f64::from(t.rewards.attacker);
    }
    #[allow(clippy::cast_precision_loss)]
    let per = |x: f64, d: f64| if d == 0.0 { 0.0 } else { x / d };
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    #[allow(clippy::cast_precision_loss)]
    EvalRates {
        episodes: n,
        task_success_rate: per(completed as f64, nf),
        attack_success_rate: per(leaked as f64, nf),
        format_error_rate: per(errors as f64, turns as f64),
        mean_turns: per(turns as f64, nf),
        mean_agent_reward: per(agent_reward, nf),
        mean_attacker_reward: per(attacker_reward, nf),
    }
}

/// The result of an evaluation: what `arlas eval --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub episodes: usize,
    /// With no attack.
    pub task_success_rate: f64,
    /// Over every attacked episode, all attackers pooled.
    pub task_success_rate_under_attack: f64,
    /// Over every attacked episode, all attackers pooled.
    pub attack_success_rate: f64,
    pub no_attack: EvalRates,
    /// The same rates against each attacker, by name.
    pub by_attacker: BTreeMap<String, EvalRates>,
}

/// Plays `tasks` in `env` once with no attack and once against each opponent, and
/// reports. Returns the report and the attacked trajectories (for diversity and payoff
/// bookkeeping).
pub fn evaluate(
    env: &mut dyn Environment,
    agent: &mut AgentPlayer<'_>,
    opponents: &mut Vec<Opponent<'_>>,
    tasks: &[TaskRef],
    config: &RolloutConfig,
) -> Result<(EvalReport, Vec<Trajectory>)> {
    let mut none = vec![Opponent::none()];
    let clean = play(env, agent, &mut none, &jobs_from(tasks, 1, 0, 0), config)?;
    let no_attack = rates(&clean);
    let mut jobs = Vec::with_capacity(tasks.len() * opponents.len());
    for o in 0..opponents.len() {
        jobs.extend(jobs_from(tasks, 1, o, (o * tasks.len()) as u64));
    }
    let attacked = play(env, agent, opponents, &jobs, config)?;
    let mut by_attacker = BTreeMap::new();
    for (o, opponent) in opponents.iter().enumerate() {
        let mine = attacked
            .iter()
            .zip(&jobs)
            .filter(|(_, j)| j.opponent == o)
            .map(|(t, _)| t);
        by_attacker.insert(opponent.name.clone(), rates(mine));
    }
    let pooled = rates(&attacked);
    Ok((
        EvalReport {
            episodes: clean.len() + attacked.len(),
            task_success_rate: no_attack.task_success_rate,
            task_success_rate_under_attack: pooled.task_success_rate,
            attack_success_rate: pooled.attack_success_rate,
            no_attack,
            by_attacker,
        },
        attacked,
    ))
}
