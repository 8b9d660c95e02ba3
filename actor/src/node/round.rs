//! Plays a planned round with the loaded policies (blocking: run it on a dedicated thread
//! or `spawn_blocking`), and turns the agent phase's outcomes into payoff results.

use std::collections::BTreeMap;

use arlas_coordinator::service::{MatchResult, Player};

use super::planner::{CURRENT, Phase, RoundPlan};
use super::policies::Policies;
use crate::error::{Error, Result};
use crate::rollout::{AgentPlayer, Opponent, RolloutConfig, play};
use crate::trajectory::Trajectory;

/// Both phases' trajectories, in job order.
#[derive(Debug, Default)]
pub struct RoundOutput {
    /// Current agent vs current attacker: for the attacker learner.
    pub attacker_phase: Vec<Trajectory>,
    /// Current agent vs population members: for the agent learner and the payoff matrix.
    pub agent_phase: Vec<Trajectory>,
}

/// Plays both phases of `plan`.
pub fn play_round(
    policies: &Policies,
    plan: &RoundPlan,
    rollout: &RolloutConfig,
) -> Result<RoundOutput> {
    Ok(RoundOutput {
        attacker_phase: play_phase(policies, &plan.attacker_phase, rollout)?,
        agent_phase: play_phase(policies, &plan.agent_phase, rollout)?,
    })
}

fn play_phase(
    policies: &Policies,
    phase: &Phase,
    rollout: &RolloutConfig,
) -> Result<Vec<Trajectory>> {
    if phase.jobs.is_empty() {
        return Ok(Vec::new());
    }
    let not_loaded = |what: &'static str, name: &str| Error::NotLoaded {
        what,
        name: name.to_string(),
    };
    let agent = policies
        .current(Player::Agent)
        .ok_or_else(|| not_loaded("the agent", "current"))?;
    let mut opponents = Vec::with_capacity(phase.opponents.len());
    for name in &phase.opponents {
        let loaded = if name == CURRENT {
            policies.current(Player::Attacker)
        } else {
            policies.member(name)
        };
        let loaded = loaded.ok_or_else(|| not_loaded("opponent", name))?;
        opponents.push(Opponent::policy(
            name.clone(),
            &loaded.policy,
            loaded.version,
        ));
    }
    let mut player = AgentPlayer::Policy {
        policy: &agent.policy,
        version: agent.version,
    };
    let config = RolloutConfig {
        seed: phase.seed,
        ..rollout.clone()
    };
    play(&mut player, &mut opponents, &phase.jobs, &config)
}

/// Games and attacker wins per (agent version, population member), for `ReportResults`.
/// Episodes against the current attacker (no member) are not payoff results.
pub fn match_results(agent_phase: &[Trajectory]) -> Vec<MatchResult> {
    let mut tally: BTreeMap<(u64, &str), (u64, u64)> = BTreeMap::new();
    for t in agent_phase.iter().filter(|t| t.opponent != CURRENT) {
        let entry = tally
            .entry((t.agent_version, t.opponent.as_str()))
            .or_default();
        entry.0 += 1;
        entry.1 += u64::from(t.leaked());
    }
    tally
        .into_iter()
        .map(
            |((agent_version, id), (games, attacker_wins))| MatchResult {
                agent_version,
                attacker_id: id.to_string(),
                games,
                attacker_wins,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_game::{EpisodeSpec, Outcome, Rewards, Split};

    fn played(opponent: &str, agent_version: u64, outcome: Outcome) -> Trajectory {
        Trajectory {
            spec: EpisodeSpec::sample(Split::Train, 1),
            group: 0,
            agent_version,
            opponent: opponent.into(),
            attacker_version: 1,
            agent: vec![],
            attacker: vec![],
            injections: vec![],
            outcome,
            rewards: Rewards {
                attacker: 1.0,
                agent: -1.0,
            },
            turns: 1,
            format_errors: 0,
            truncated: false,
        }
    }

    #[test]
    fn results_count_games_and_leaks_per_version_and_member() {
        let results = match_results(&[
            played("m0", 1, Outcome::Leaked),
            played("m0", 1, Outcome::Completed),
            played("m1", 1, Outcome::Leaked),
            played("m0", 2, Outcome::TurnLimit),
            played(CURRENT, 2, Outcome::Leaked),
        ]);
        let got: Vec<(u64, &str, u64, u64)> = results
            .iter()
            .map(|r| {
                (
                    r.agent_version,
                    r.attacker_id.as_str(),
                    r.games,
                    r.attacker_wins,
                )
            })
            .collect();
        assert_eq!(got, [(1, "m0", 2, 1), (1, "m1", 1, 1), (2, "m0", 1, 0)]);
    }
}
