//! Plays a planned round with the loaded policies (blocking: run it on a dedicated thread
//! or `spawn_blocking`), and turns the agent phase's outcomes into payoff results.

use std::collections::BTreeMap;

use arlas_coordinator::service::convert::MAX_RESULTS;
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

/// Match results the coordinator has not accepted yet, merged by (agent version, attacker),
/// so that a round played while the coordinator is down or restarting still reaches the
/// payoff matrix with the next report. Bounded: past [`MAX_RESULTS`] entries (one report's
/// limit) the results of the oldest agent versions are dropped.
#[derive(Debug, Default)]
pub struct PendingResults {
    tally: BTreeMap<(u64, String), (u64, u64)>,
    dropped: u64,
}

impl PendingResults {
    pub fn add(&mut self, results: Vec<MatchResult>) {
        for r in results {
            let entry = self
                .tally
                .entry((r.agent_version, r.attacker_id))
                .or_default();
            entry.0 += r.games;
            entry.1 += r.attacker_wins;
        }
        while self.tally.len() > MAX_RESULTS {
            if let Some(((_, _), (games, _))) = self.tally.pop_first() {
                self.dropped += games;
            }
        }
    }

    /// Everything pending, for one report.
    pub fn to_report(&self) -> Vec<MatchResult> {
        self.tally
            .iter()
            .map(
                |((agent_version, id), (games, attacker_wins))| MatchResult {
                    agent_version: *agent_version,
                    attacker_id: id.clone(),
                    games: *games,
                    attacker_wins: *attacker_wins,
                },
            )
            .collect()
    }

    /// The report was accepted.
    pub fn clear(&mut self) {
        self.tally.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.tally.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tally.len()
    }

    /// Games dropped because too much was pending.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_game::{EpisodeSpec, Outcome, Rewards, Split};

    fn result(agent_version: u64, id: &str, games: u64, wins: u64) -> MatchResult {
        MatchResult {
            agent_version,
            attacker_id: id.to_string(),
            games,
            attacker_wins: wins,
        }
    }

    #[test]
    fn pending_results_merge_and_stay_bounded() {
        let mut pending = PendingResults::default();
        pending.add(vec![result(3, "attacker-0001", 4, 1)]);
        pending.add(vec![
            result(3, "attacker-0001", 4, 3),
            result(3, "attacker-0000", 2, 0),
        ]);
        assert_eq!(
            pending.to_report(),
            vec![
                result(3, "attacker-0000", 2, 0),
                result(3, "attacker-0001", 8, 4)
            ]
        );
        pending.clear();
        assert!(pending.is_empty());
        pending.add(
            (0..MAX_RESULTS as u64 + 5)
                .map(|v| result(v, "m", 1, 0))
                .collect(),
        );
        assert_eq!(pending.len(), MAX_RESULTS);
        assert_eq!(pending.dropped(), 5);
        assert_eq!(
            pending.to_report()[0].agent_version,
            5,
            "the oldest versions go first"
        );
    }

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
