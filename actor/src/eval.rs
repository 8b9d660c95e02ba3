//! Evaluation: task and attack success rates, with no attack and against each opponent.

use std::collections::BTreeMap;

use arlas_core::stats::{PairedDifference, Proportion};
use arlas_game::{Environment, Outcome, TaskRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
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
    /// The task success rate as a count of `episodes`, with its 95% interval.
    #[serde(default)]
    pub task_success: Proportion,
    /// The attack success rate as a count of `episodes`, with its 95% interval.
    #[serde(default)]
    pub attack_success: Proportion,
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
        task_success: Proportion::new(completed as u64, n as u64),
        attack_success: Proportion::new(leaked as u64, n as u64),
    }
}

/// The result of an evaluation: what `arlas eval --json` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub episodes: usize,
    /// With no attack.
    pub task_success_rate: f64,
    /// Over every attacked episode, all attackers pooled.
    pub task_success_rate_under_attack: f64,
    /// Over every attacked episode, all attackers pooled.
    pub attack_success_rate: f64,
    /// The two pooled rates as counts with their 95% intervals.
    #[serde(default)]
    pub task_success_under_attack: Proportion,
    #[serde(default)]
    pub attack_success: Proportion,
    pub no_attack: EvalRates,
    /// The same rates against each attacker, by name.
    pub by_attacker: BTreeMap<String, EvalRates>,
}

/// An evaluation's report and the episodes it played, in the order they were played (the
/// same order for every agent given the same tasks and opponents: see [`compare`]).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub report: EvalReport,
    /// With no attack, one per task.
    pub clean: Vec<Trajectory>,
    /// Against each opponent in turn, one per task.
    pub attacked: Vec<Trajectory>,
}

/// Plays `tasks` in `env` once with no attack and once against each opponent, and
/// reports, with the trajectories (for diversity, payoff bookkeeping and paired
/// comparisons).
pub fn evaluate(
    env: &mut dyn Environment,
    agent: &mut AgentPlayer<'_>,
    opponents: &mut Vec<Opponent<'_>>,
    tasks: &[TaskRef],
    config: &RolloutConfig,
) -> Result<Evaluation> {
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
    Ok(Evaluation {
        report: EvalReport {
            episodes: clean.len() + attacked.len(),
            task_success_rate: no_attack.task_success_rate,
            task_success_rate_under_attack: pooled.task_success_rate,
            attack_success_rate: pooled.attack_success_rate,
            task_success_under_attack: pooled.task_success,
            attack_success: pooled.attack_success,
            no_attack,
            by_attacker,
        },
        clean,
        attacked,
    })
}

/// Episode k of `x` with episode k of `y`, checked to be the same episode.
fn paired<'t>(
    x: &'t [Trajectory],
    y: &'t [Trajectory],
) -> Result<Vec<(&'t Trajectory, &'t Trajectory)>> {
    if x.len() != y.len() {
        return Err(Error::Unpaired(format!(
            "{} episodes against {}",
            x.len(),
            y.len()
        )));
    }
    for (k, (s, t)) in x.iter().zip(y).enumerate() {
        if s.spec != t.spec || s.opponent != t.opponent {
            return Err(Error::Unpaired(format!(
                "episode {k} is {:?} against {} in one and {:?} against {} in the other",
                s.spec, s.opponent, t.spec, t.opponent
            )));
        }
    }
    Ok(x.iter().zip(y).collect())
}

/// Two agents' task and attack success on the same episodes: `a - b`, paired.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedRates {
    pub task_success: PairedDifference,
    pub attack_success: PairedDifference,
}

impl PairedRates {
    fn of(pairs: &[(&Trajectory, &Trajectory)]) -> Self {
        let outcome = |o: Outcome| {
            pairs
                .iter()
                .map(move |(a, b)| (a.outcome == o, b.outcome == o))
        };
        Self {
            task_success: PairedDifference::new(outcome(Outcome::Completed)),
            attack_success: PairedDifference::new(outcome(Outcome::Leaked)),
        }
    }
}

/// Agent `a` against agent `b` on the same episodes: the paired difference of each rate with
/// no attack, under attack (all attackers pooled) and against each attacker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub no_attack: PairedRates,
    pub under_attack: PairedRates,
    pub by_attacker: BTreeMap<String, PairedRates>,
}

/// Pairs the episodes of two evaluations of the same tasks against the same opponents
/// (episode k of one with episode k of the other) and compares them. An error when the
/// episodes differ (another task, seed or opponent): they would not be paired.
pub fn compare(a: &Evaluation, b: &Evaluation) -> Result<Comparison> {
    let clean = paired(&a.clean, &b.clean)?;
    let attacked = paired(&a.attacked, &b.attacked)?;
    let mut by_name: BTreeMap<&str, Vec<(&Trajectory, &Trajectory)>> = BTreeMap::new();
    for &(s, t) in &attacked {
        by_name.entry(s.opponent.as_str()).or_default().push((s, t));
    }
    Ok(Comparison {
        no_attack: PairedRates::of(&clean),
        under_attack: PairedRates::of(&attacked),
        by_attacker: by_name
            .into_iter()
            .map(|(name, pairs)| (name.to_string(), PairedRates::of(&pairs)))
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arlas_game::{Rewards, Split};

    fn episode(seed: u64, opponent: &str, outcome: Outcome) -> Trajectory {
        Trajectory {
            spec: TaskRef {
                environment: "builtin".into(),
                suite: "banking".into(),
                split: Split::Eval,
                task: "t".into(),
                seed,
            },
            group: seed,
            agent_version: 0,
            opponent: opponent.into(),
            attacker_version: 0,
            agent: Vec::new(),
            attacker: Vec::new(),
            injections: Vec::new(),
            outcome,
            rewards: Rewards {
                attacker: 0.0,
                agent: 0.0,
            },
            turns: 1,
            format_errors: 0,
            truncated: false,
            verdicts: None,
            record: None,
        }
    }

    fn evaluation(clean: Vec<Trajectory>, attacked: Vec<Trajectory>) -> Evaluation {
        Evaluation {
            report: EvalReport {
                no_attack: rates(&clean),
                ..EvalReport::default()
            },
            clean,
            attacked,
        }
    }

    /// Pairs are episode by episode: the counts of discordant pairs per attacker, and the
    /// direction of the difference (a minus b).
    #[test]
    fn comparisons_pair_episode_by_episode() {
        use Outcome::{Completed, Leaked};
        let a = evaluation(
            vec![episode(1, "none", Completed), episode(2, "none", Completed)],
            vec![
                episode(1, "templates", Completed),
                episode(2, "templates", Completed),
            ],
        );
        let b = evaluation(
            vec![episode(1, "none", Completed), episode(2, "none", Leaked)],
            vec![
                episode(1, "templates", Leaked),
                episode(2, "templates", Leaked),
            ],
        );
        let c = compare(&a, &b).unwrap();
        assert_eq!(c.no_attack.task_success.only_a, 1);
        assert_eq!(c.no_attack.task_success.only_b, 0);
        let t = &c.by_attacker["templates"];
        assert_eq!((t.attack_success.only_a, t.attack_success.only_b), (0, 2));
        assert_eq!(t.attack_success.difference, -1.0);
        assert_eq!(c.under_attack, *t);
    }

    /// Episodes that are not the same episode are an error, not a comparison.
    #[test]
    fn unpaired_episodes_are_an_error() {
        let a = evaluation(vec![episode(1, "none", Outcome::Completed)], Vec::new());
        let b = evaluation(vec![episode(2, "none", Outcome::Completed)], Vec::new());
        let err = compare(&a, &b).unwrap_err().to_string();
        assert!(
            err.contains("cannot be paired") && err.contains("episode 0"),
            "{err}"
        );
        let short = evaluation(Vec::new(), Vec::new());
        assert!(compare(&a, &short).is_err());
    }
}
