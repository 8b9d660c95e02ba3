//! Match results: games of agent versions against population members, the payoff
//! matrix's input.

use std::collections::BTreeMap;

use crate::trajectory::Trajectory;

/// Games of one agent version against one population member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchResult {
    pub agent_version: u64,
    pub attacker_id: String,
    pub games: u64,
    pub attacker_wins: u64,
}

/// Games and attacker wins per (agent version, opponent) of `trajectories`, in that order.
/// Episodes against opponents `is_member` rejects (the current attacker, scripted ones) are
/// not payoff results.
pub fn match_results<'a>(
    trajectories: impl IntoIterator<Item = &'a Trajectory>,
    is_member: impl Fn(&str) -> bool,
) -> Vec<MatchResult> {
    let mut tally: BTreeMap<(u64, &str), (u64, u64)> = BTreeMap::new();
    for t in trajectories {
        if !is_member(&t.opponent) {
            continue;
        }
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
