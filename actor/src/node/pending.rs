//! Match results the coordinator has not accepted yet.

use std::collections::BTreeMap;

use arlas_core::MatchResult;
use arlas_core::wire::MAX_RESULTS;

/// One report: its id (the coordinator counts an id once, so a retry after a lost answer
/// is harmless) and its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: u64,
    pub results: Vec<MatchResult>,
}

/// Match results the coordinator has not accepted yet, merged by (agent version, attacker),
/// so that a round played while the coordinator is down or restarting still reaches the
/// payoff matrix with a later report. A report that was sent is frozen with its id until it
/// is acknowledged: it is re-sent unchanged (never merged with newer results, which go in the
/// next report), so the coordinator can tell a retry from new games. Bounded: past
/// [`MAX_RESULTS`] entries (one report's limit) the results of the oldest agent versions
/// are dropped.
#[derive(Debug)]
pub struct PendingResults {
    tally: BTreeMap<(u64, String), (u64, u64)>,
    dropped: u64,
    sent: Option<Report>,
    next_id: u64,
}

impl Default for PendingResults {
    fn default() -> Self {
        Self::starting_at(rand::random::<u64>() | 1)
    }
}

impl PendingResults {
    /// Report ids count up from `first` (random by default: ids of different actors and
    /// restarts do not meet). Never 0, which means "no id".
    pub fn starting_at(first: u64) -> Self {
        Self {
            tally: BTreeMap::new(),
            dropped: 0,
            sent: None,
            next_id: first.max(1),
        }
    }

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

    /// The report to send now: the unacknowledged one again, else everything pending under
    /// a new id; `None` when nothing is pending.
    pub fn next_report(&mut self) -> Option<Report> {
        if self.sent.is_none() && !self.tally.is_empty() {
            let results = std::mem::take(&mut self.tally)
                .into_iter()
                .map(
                    |((agent_version, attacker_id), (games, attacker_wins))| MatchResult {
                        agent_version,
                        attacker_id,
                        games,
                        attacker_wins,
                    },
                )
                .collect();
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            self.sent = Some(Report { id, results });
        }
        self.sent.clone()
    }

    /// The coordinator acknowledged the report `next_report` gave.
    pub fn delivered(&mut self) {
        self.sent = None;
    }

    pub fn is_empty(&self) -> bool {
        self.tally.is_empty() && self.sent.is_none()
    }

    /// Result entries waiting, the sent report's included.
    pub fn len(&self) -> usize {
        self.tally.len() + self.sent.as_ref().map_or(0, |r| r.results.len())
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
        let mut pending = PendingResults::starting_at(7);
        pending.add(vec![result(3, "attacker-0001", 4, 1)]);
        pending.add(vec![
            result(3, "attacker-0001", 4, 3),
            result(3, "attacker-0000", 2, 0),
        ]);
        let report = pending.next_report().unwrap();
        assert_eq!(report.id, 7);
        assert_eq!(
            report.results,
            vec![
                result(3, "attacker-0000", 2, 0),
                result(3, "attacker-0001", 8, 4)
            ]
        );
        pending.delivered();
        assert!(pending.is_empty());
        assert_eq!(pending.next_report(), None);
        pending.add(
            (0..MAX_RESULTS as u64 + 5)
                .map(|v| result(v, "m", 1, 0))
                .collect(),
        );
        assert_eq!(pending.len(), MAX_RESULTS);
        assert_eq!(pending.dropped(), 5);
        let report = pending.next_report().unwrap();
        assert_eq!(report.id, 8);
        assert_eq!(
            report.results[0].agent_version, 5,
            "the oldest versions go first"
        );
    }

    #[test]
    fn an_unacknowledged_report_is_resent_unchanged_and_new_games_wait_for_the_next() {
        let mut pending = PendingResults::starting_at(1);
        pending.add(vec![result(1, "a", 2, 1)]);
        let first = pending.next_report().unwrap();
        // The answer was lost; another round played meanwhile.
        pending.add(vec![result(1, "a", 3, 0)]);
        assert_eq!(
            pending.next_report().unwrap(),
            first,
            "the same id and games"
        );
        pending.delivered();
        let second = pending.next_report().unwrap();
        assert_eq!(second.id, 2);
        assert_eq!(second.results, vec![result(1, "a", 3, 0)]);
    }
}
