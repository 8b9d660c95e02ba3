//! Which past attackers the agent trains against.
//!
//! - `--opponents all` draws from every population member (ARLAS); `latest` only from the
//!   newest one (the paper's no-population ablation).
//! - `--opponent-sampling uniform` weighs members equally; `recent` halves a member's weight
//!   for every two members that joined after it; `pfsp` (prioritised fictitious self-play)
//!   weighs a member by how often it still beats the agent: its latest known win rate, with
//!   a floor of 0.05 so no member is forgotten, and 0.5 for members never played.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::distr::{Distribution, weighted::WeightedIndex};
use serde::{Deserialize, Serialize};

use super::payoff::PayoffMatrix;

/// Which members are eligible as opponents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpponentPool {
    /// Every past attacker checkpoint (ARLAS).
    #[default]
    All,
    /// Only the newest attacker (ablation: no population).
    Latest,
}

/// How eligible members are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpponentSampling {
    #[default]
    Uniform,
    Recent,
    Pfsp,
}

const PFSP_FLOOR: f64 = 0.05;
const PFSP_UNPLAYED: f64 = 0.5;
const RECENT_HALF_LIFE: f64 = 2.0;

/// Draws `n` opponents (indices into `members`, which are in joining order) for the agent
/// at `agent_version`. Returns an empty list when there are no members.
pub fn sample_opponents<R: Rng + ?Sized>(
    members: &[String],
    payoff: &PayoffMatrix,
    agent_version: u64,
    pool: OpponentPool,
    sampling: OpponentSampling,
    n: usize,
    rng: &mut R,
) -> Vec<usize> {
    let Some(last) = members.len().checked_sub(1) else {
        return Vec::new();
    };
    if pool == OpponentPool::Latest || members.len() == 1 {
        return vec![last; n];
    }
    let weights = weights(members, payoff, agent_version, sampling);
    match WeightedIndex::new(&weights) {
        Ok(dist) => (0..n).map(|_| dist.sample(rng)).collect(),
        // Unreachable with the floors above (all weights are positive); fall back to uniform.
        Err(_) => (0..n).map(|_| rng.random_range(0..members.len())).collect(),
    }
}

/// The sampling weight of each member.
pub fn weights(
    members: &[String],
    payoff: &PayoffMatrix,
    agent_version: u64,
    sampling: OpponentSampling,
) -> Vec<f64> {
    let n = members.len();
    match sampling {
        OpponentSampling::Uniform => vec![1.0; n],
        OpponentSampling::Recent => (0..n)
            .map(|i| {
                #[allow(clippy::cast_precision_loss)]
                let age = (n - 1 - i) as f64;
                0.5f64.powf(age / RECENT_HALF_LIFE)
            })
            .collect(),
        OpponentSampling::Pfsp => members
            .iter()
            .map(|id| {
                payoff
                    .latest_win_rate(id, agent_version)
                    .map_or(PFSP_UNPLAYED, |p| p.max(PFSP_FLOOR))
            })
            .collect(),
    }
}

impl fmt::Display for OpponentPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Latest => "latest",
        })
    }
}

impl FromStr for OpponentPool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "latest" => Ok(Self::Latest),
            other => Err(format!(
                "unknown opponent pool {other:?}: use all or latest"
            )),
        }
    }
}

impl fmt::Display for OpponentSampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Uniform => "uniform",
            Self::Recent => "recent",
            Self::Pfsp => "pfsp",
        })
    }
}

impl FromStr for OpponentSampling {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Self::Uniform),
            "recent" => Ok(Self::Recent),
            "pfsp" => Ok(Self::Pfsp),
            other => Err(format!(
                "unknown opponent sampling {other:?}: use uniform, recent or pfsp"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("attacker-{i:04}")).collect()
    }

    fn counts(picks: &[usize], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &p in picks {
            c[p] += 1;
        }
        c
    }

    #[test]
    fn latest_pool_only_plays_the_newest() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let picks = sample_opponents(
            &ids(5),
            &PayoffMatrix::default(),
            0,
            OpponentPool::Latest,
            OpponentSampling::Uniform,
            50,
            &mut rng,
        );
        assert!(picks.iter().all(|&p| p == 4));
    }

    #[test]
    fn recent_prefers_new_members_and_pfsp_prefers_strong_ones() {
        let members = ids(4);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let recent = sample_opponents(
            &members,
            &PayoffMatrix::default(),
            0,
            OpponentPool::All,
            OpponentSampling::Recent,
            4000,
            &mut rng,
        );
        let c = counts(&recent, 4);
        assert!(c[3] > c[2] && c[2] > c[1] && c[1] > c[0], "{c:?}");

        let mut payoff = PayoffMatrix::default();
        for (i, wins) in [0usize, 1, 9, 2].into_iter().enumerate() {
            for g in 0..10 {
                payoff.record(5, &members[i], g < wins);
            }
        }
        let pfsp = sample_opponents(
            &members,
            &payoff,
            5,
            OpponentPool::All,
            OpponentSampling::Pfsp,
            4000,
            &mut rng,
        );
        let c = counts(&pfsp, 4);
        assert!(c[2] > c[3] && c[3] > c[1] && c[0] > 0, "{c:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn picks_are_always_valid_members(n in 0usize..12, k in 0usize..20, seed: u64, s in 0u8..3) {
            let sampling = [OpponentSampling::Uniform, OpponentSampling::Recent, OpponentSampling::Pfsp][usize::from(s)];
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let picks = sample_opponents(&ids(n), &PayoffMatrix::default(), 0, OpponentPool::All, sampling, k, &mut rng);
            prop_assert_eq!(picks.len(), if n == 0 { 0 } else { k });
            prop_assert!(picks.iter().all(|&p| p < n));
        }
    }
}
