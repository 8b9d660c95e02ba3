//! Plays a planned round (blocking: run it on a dedicated thread or `spawn_blocking`),
//! with whatever holds the policies: the actor node's checkpoint-loaded [`Policies`] or the
//! pipeline's learners and population.
//!
//! [`Policies`]: crate::node::Policies

use arlas_core::{MatchResult, Player, Trajectory, match_results};
use arlas_game::{Environment, PerPlayer};
use arlas_policy::Policy;

use super::plan::{CURRENT, Phase, RoundPlan};
use crate::error::{Error, Result};
use crate::prefill::PrefillCount;
use crate::rollout::{AgentPlayer, Opponent, Played, RolloutConfig, play_counted};

/// Where a round finds its policies: the current version of each player and the
/// population members by id, each with its version.
pub trait RoundPolicies {
    fn current(&self, player: Player) -> Option<(&Policy, u64)>;
    fn member(&self, id: &str) -> Option<(&Policy, u64)>;
}

/// Both phases' trajectories, in job order.
#[derive(Debug, Default)]
pub struct RoundOutput {
    /// Current agent vs current attacker: for the attacker learner.
    pub attacker_phase: Vec<Trajectory>,
    /// Current agent vs population members: for the agent learner and the payoff matrix.
    pub agent_phase: Vec<Trajectory>,
    /// Prompt tokens both phases' sampling prefilled, per player (see `prefill.rs`).
    pub prefill: PerPlayer<PrefillCount>,
}

impl RoundOutput {
    /// The round of two played phases, their prefill counts summed per player.
    pub fn from_phases(attacker_phase: Played, agent_phase: Played) -> Self {
        let mut prefill = attacker_phase.prefill_total();
        let more = agent_phase.prefill_total();
        prefill.agent += more.agent;
        prefill.attacker += more.attacker;
        Self {
            attacker_phase: attacker_phase.trajectories,
            agent_phase: agent_phase.trajectories,
            prefill,
        }
    }

    /// Games and attacker wins per (agent version, population member) of the agent phase:
    /// the payoff matrix's input. Episodes against the current attacker are not results.
    pub fn match_results(&self) -> Vec<MatchResult> {
        match_results(&self.agent_phase, |name| name != CURRENT)
    }

    /// The trajectories that train `player`.
    pub fn for_player(&self, player: Player) -> &[Trajectory] {
        match player {
            Player::Agent => &self.agent_phase,
            Player::Attacker => &self.attacker_phase,
        }
    }
}

/// Plays both phases of `plan` in `env` (an empty phase is skipped).
pub fn play_round(
    env: &mut dyn Environment,
    policies: &impl RoundPolicies,
    plan: &RoundPlan,
    rollout: &RolloutConfig,
) -> Result<RoundOutput> {
    let attacker_phase = play_phase_counted(env, policies, &plan.attacker_phase, rollout)?;
    let agent_phase = play_phase_counted(env, policies, &plan.agent_phase, rollout)?;
    Ok(RoundOutput::from_phases(attacker_phase, agent_phase))
}

/// Plays one phase of a plan (an empty phase is skipped): the attacker phase needs only
/// the current versions, the agent phase also the population members it names.
pub fn play_phase(
    env: &mut dyn Environment,
    policies: &impl RoundPolicies,
    phase: &Phase,
    rollout: &RolloutConfig,
) -> Result<Vec<Trajectory>> {
    Ok(play_phase_counted(env, policies, phase, rollout)?.trajectories)
}

/// [`play_phase`], also counting the prompt tokens each episode prefilled.
pub fn play_phase_counted(
    env: &mut dyn Environment,
    policies: &impl RoundPolicies,
    phase: &Phase,
    rollout: &RolloutConfig,
) -> Result<Played> {
    if phase.jobs.is_empty() {
        return Ok(Played::default());
    }
    let not_loaded = |what: &'static str, name: &str| Error::NotLoaded {
        what,
        name: name.to_string(),
    };
    let (agent, agent_version) = policies
        .current(Player::Agent)
        .ok_or_else(|| not_loaded("the agent", CURRENT))?;
    let mut opponents = Vec::with_capacity(phase.opponents.len());
    for name in &phase.opponents {
        let loaded = if name == CURRENT {
            policies.current(Player::Attacker)
        } else {
            policies.member(name)
        };
        let (policy, version) = loaded.ok_or_else(|| not_loaded("opponent", name))?;
        opponents.push(Opponent::policy(name.clone(), policy, version));
    }
    let mut player = AgentPlayer::Policy {
        policy: agent,
        version: agent_version,
    };
    let config = RolloutConfig {
        seed: phase.seed,
        ..rollout.clone()
    };
    play_counted(env, &mut player, &mut opponents, &phase.jobs, &config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_game::{EpisodeSpec, Outcome, Rewards, Split};

    fn played(opponent: &str, agent_version: u64, outcome: Outcome) -> Trajectory {
        Trajectory {
            spec: arlas_game::TaskRef::from(&EpisodeSpec::sample(Split::Train, 1)),
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
            verdicts: None,
            record: None,
        }
    }

    #[test]
    fn results_count_games_and_leaks_per_version_and_member() {
        let out = RoundOutput {
            prefill: PerPlayer::default(),
            attacker_phase: Vec::new(),
            agent_phase: vec![
                played("m0", 1, Outcome::Leaked),
                played("m0", 1, Outcome::Completed),
                played("m1", 1, Outcome::Leaked),
                played("m0", 2, Outcome::TurnLimit),
                played(CURRENT, 2, Outcome::Leaked),
            ],
        };
        let results = out.match_results();
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
