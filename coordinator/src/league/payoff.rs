//! The payoff matrix: for each agent version and each population member, how many games
//! were played and how many the attacker won (private data leaked).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Games and attacker wins of one (agent version, attacker) cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub games: u64,
    pub attacker_wins: u64,
}

impl Tally {
    /// The attacker's win rate, `None` before any game.
    pub fn win_rate(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.games > 0).then(|| self.attacker_wins as f64 / self.games as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cell {
    agent_version: u64,
    attacker: String,
    #[serde(flatten)]
    tally: Tally,
}

/// Win-rate bookkeeping, agent version × attacker id. Serialises as a list of cells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Cell>", into = "Vec<Cell>")]
pub struct PayoffMatrix {
    cells: BTreeMap<(u64, String), Tally>,
}

impl From<Vec<Cell>> for PayoffMatrix {
    fn from(cells: Vec<Cell>) -> Self {
        let mut matrix = Self::default();
        for c in cells {
            let entry = matrix
                .cells
                .entry((c.agent_version, c.attacker))
                .or_default();
            entry.games += c.tally.games;
            entry.attacker_wins += c.tally.attacker_wins;
        }
        matrix
    }
}

impl From<PayoffMatrix> for Vec<Cell> {
    fn from(m: PayoffMatrix) -> Self {
        m.cells
            .into_iter()
            .map(|((agent_version, attacker), tally)| Cell {
                agent_version,
                attacker,
                tally,
            })
            .collect()
    }
}

impl PayoffMatrix {
    /// Records one finished game.
    pub fn record(&mut self, agent_version: u64, attacker: &str, attacker_won: bool) {
        let tally = self
            .cells
            .entry((agent_version, attacker.to_string()))
            .or_default();
        tally.games += 1;
        tally.attacker_wins += u64::from(attacker_won);
    }

    /// Adds a batch of games of one cell (results reported by actors).
    pub fn add(&mut self, agent_version: u64, attacker: &str, games: Tally) {
        let tally = self
            .cells
            .entry((agent_version, attacker.to_string()))
            .or_default();
        tally.games = tally.games.saturating_add(games.games);
        tally.attacker_wins = tally.attacker_wins.saturating_add(games.attacker_wins);
    }

    /// The tally of one cell (zero if never played).
    pub fn get(&self, agent_version: u64, attacker: &str) -> Tally {
        self.cells
            .get(&(agent_version, attacker.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// The attacker's win rate against the most recent agent version that played it, `None`
    /// if it never played. This is what prioritised opponent sampling looks at: an attacker
    /// evaluated long ago keeps its last known strength until it is played again.
    pub fn latest_win_rate(&self, attacker: &str, up_to_agent_version: u64) -> Option<f64> {
        self.cells
            .iter()
            .filter(|((v, a), t)| a == attacker && *v <= up_to_agent_version && t.games > 0)
            .max_by_key(|((v, _), _)| *v)
            .and_then(|(_, t)| t.win_rate())
    }

    /// Agent versions that appear in the matrix, ascending.
    pub fn agent_versions(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.cells.keys().map(|(v, _)| *v).collect();
        v.dedup();
        v
    }

    /// Every attacker that appears in the matrix, sorted.
    pub fn attackers(&self) -> Vec<String> {
        let mut a: Vec<String> = self.cells.keys().map(|(_, a)| a.clone()).collect();
        a.sort();
        a.dedup();
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_round_trips_through_json() {
        let mut m = PayoffMatrix::default();
        m.record(1, "attacker-0000", true);
        m.record(1, "attacker-0000", false);
        m.record(2, "attacker-0000", false);
        m.record(2, "templates", true);
        assert_eq!(
            m.get(1, "attacker-0000"),
            Tally {
                games: 2,
                attacker_wins: 1
            }
        );
        assert_eq!(m.get(1, "attacker-0000").win_rate(), Some(0.5));
        assert_eq!(m.latest_win_rate("attacker-0000", 9), Some(0.0));
        assert_eq!(m.latest_win_rate("attacker-0000", 1), Some(0.5));
        assert_eq!(m.latest_win_rate("attacker-0007", 9), None);
        let json = serde_json::to_string(&m).unwrap();
        let back: PayoffMatrix = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.agent_versions(), [1, 2]);
        assert_eq!(m.attackers(), ["attacker-0000", "templates"]);
    }
}
