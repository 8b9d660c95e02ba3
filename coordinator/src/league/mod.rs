//! The league: the population of frozen attackers, the payoff matrix of agent versions
//! against them, and the choice of the agent's opponents. One owner holds it: the
//! coordinator's state in a cluster, the pipeline in `arlas train`; both add members and
//! record results through this type, so the two modes keep the population the same way.
//!
//! ```text
//! DIR/population/   the members (see `population`)
//! DIR/payoff.json   the payoff matrix (see `payoff`)
//! ```

pub mod opponents;
pub mod payoff;
pub mod population;

use std::fs;
use std::path::{Path, PathBuf};

use arlas_core::MatchResult;
use rand::Rng;

use crate::error::{Error, Result, io};
pub use opponents::{OpponentPool, OpponentSampling, sample_opponents};
pub use payoff::{PayoffMatrix, Tally};
pub use population::{Joined, Population, PopulationMember, write_atomic};

const PAYOFF_FILE: &str = "payoff.json";

/// Which opponents the agent trains against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpponentRule {
    pub pool: OpponentPool,
    pub sampling: OpponentSampling,
}

/// A member being written: its id and staging directory.
#[derive(Debug)]
pub struct StagedMember {
    pub id: String,
    pub dir: PathBuf,
}

/// The population and the payoff matrix of one run, in one directory.
#[derive(Debug)]
pub struct League {
    population: Population,
    payoff: PayoffMatrix,
    payoff_path: PathBuf,
}

impl League {
    /// Opens (or creates) the league in `dir`, verifying every member by content hash.
    pub fn open(dir: &Path) -> Result<Self> {
        let population = Population::open(dir.join("population"))?;
        let payoff_path = dir.join(PAYOFF_FILE);
        let payoff = load_payoff(&payoff_path)?;
        Ok(Self {
            population,
            payoff,
            payoff_path,
        })
    }

    pub fn population(&self) -> &Population {
        &self.population
    }

    /// Removes the members that joined after `iteration` (see [`Population::rollback_after`]).
    pub fn rollback_after(&mut self, iteration: u32) -> Result<Vec<String>> {
        self.population.rollback_after(iteration)
    }

    pub fn payoff(&self) -> &PayoffMatrix {
        &self.payoff
    }

    /// A fresh staging directory for the next member (`attacker-NNNN`): write its
    /// checkpoint there, then [`League::commit_member`].
    pub fn stage_member(&self) -> Result<StagedMember> {
        let id = self.population.next_id();
        let dir = self.population.staging_dir(&id)?;
        Ok(StagedMember { id, dir })
    }

    /// Moves a staged member into the population (renamed into place, hashed, recorded),
    /// unless a member already has its weights (see [`Population::commit`]).
    pub fn commit_member(
        &mut self,
        staged: StagedMember,
        iteration: u32,
        attacker_version: u64,
    ) -> Result<Joined> {
        self.population
            .commit(&staged.id, iteration, attacker_version)
    }

    /// `count` opponents for the agent at `agent_version`, drawn by `rule` (indices into
    /// the members, in joining order; empty when there are none).
    pub fn draw_opponents<R: Rng + ?Sized>(
        &self,
        agent_version: u64,
        rule: OpponentRule,
        count: usize,
        rng: &mut R,
    ) -> Vec<&PopulationMember> {
        let ids: Vec<String> = self
            .population
            .members()
            .iter()
            .map(|m| m.id.clone())
            .collect();
        sample_opponents(
            &ids,
            &self.payoff,
            agent_version,
            rule.pool,
            rule.sampling,
            count,
            rng,
        )
        .into_iter()
        .map(|i| &self.population.members()[i])
        .collect()
    }

    /// Adds `results` to the payoff matrix and saves it.
    pub fn record(&mut self, results: &[MatchResult]) -> Result<()> {
        self.add_results(results);
        self.save_payoff()
    }

    /// Adds `results` to the payoff matrix in memory ([`League::save_payoff`] writes it).
    pub fn add_results(&mut self, results: &[MatchResult]) {
        for r in results {
            self.payoff.add(
                r.agent_version,
                &r.attacker_id,
                Tally {
                    games: r.games,
                    attacker_wins: r.attacker_wins,
                },
            );
        }
    }

    /// Writes `payoff.json` atomically.
    pub fn save_payoff(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.payoff).map_err(|source| Error::RunState {
            path: self.payoff_path.clone(),
            source,
        })?;
        write_atomic(&self.payoff_path, &bytes)
    }

    /// Forgets every recorded game (a run whose warm-up did not commit starts over).
    pub fn clear_payoff(&mut self) {
        self.payoff = PayoffMatrix::default();
    }
}

fn load_payoff(path: &Path) -> Result<PayoffMatrix> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::RunState {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PayoffMatrix::default()),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn add(league: &mut League, iteration: u32, tag: &str) -> String {
        let member = league.stage_member().unwrap();
        fs::write(member.dir.join("model.safetensors"), tag).unwrap();
        league
            .commit_member(member, iteration, u64::from(iteration) + 1)
            .unwrap()
            .id()
            .to_string()
    }

    #[test]
    fn members_results_and_draws_survive_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut league = League::open(tmp.path()).unwrap();
        assert_eq!(add(&mut league, 0, "a"), "attacker-0000");
        assert_eq!(add(&mut league, 1, "b"), "attacker-0001");
        league
            .record(&[MatchResult {
                agent_version: 3,
                attacker_id: "attacker-0000".into(),
                games: 4,
                attacker_wins: 1,
            }])
            .unwrap();
        let league = League::open(tmp.path()).unwrap();
        assert_eq!(league.population().len(), 2);
        assert_eq!(league.payoff(), &{
            let mut m = PayoffMatrix::default();
            for won in [true, false, false, false] {
                m.record(3, "attacker-0000", won);
            }
            m
        });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let latest = OpponentRule {
            pool: OpponentPool::Latest,
            ..OpponentRule::default()
        };
        let drawn = league.draw_opponents(3, latest, 3, &mut rng);
        assert!(drawn.iter().all(|m| m.id == "attacker-0001"));
    }
}
