//! Match results the coordinator has not accepted yet.

use std::collections::BTreeMap;

use arlas_core::MatchResult;
use arlas_core::wire::MAX_RESULTS;

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
}
