//! Plans an actor's rounds: which tasks, which groups, which opponents, which seeds.
//!
//! A round has two phases, like one iteration of the one-machine pipeline:
//! - the **attacker phase**: `tasks` train tasks × `group_size` episodes of the current
//!   agent against the current attacker (opponent `current`), sent to the attacker learner;
//! - the **agent phase**: `tasks` other train tasks × `group_size` episodes of the current
//!   agent against population members from `AssignOpponents` (one member per task; every
//!   episode of a group faces the same member), sent to the agent learner. With an empty
//!   population the agent phase faces the current attacker instead.
//!
//! Group ids are `mix(salt, counter)`: `salt` is drawn at random when the process starts,
//! so ids do not collide across actors or restarts, and the counter makes them distinct
//! within a process (`mix` is a bijection of the counter for a fixed salt).

use arlas_coordinator::service::Member;
use arlas_game::play::episode_seed;
use arlas_game::{EpisodeSpec, Split, Suite};

use crate::rollout::{EpisodeJob, jobs_from};

/// The opponent name of the current attacker.
pub const CURRENT: &str = "current";

/// A well-mixed u64 from two (splitmix64 finaliser; a bijection of `b` for a fixed `a`).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How big a round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundShape {
    /// Train tasks per phase.
    pub tasks: usize,
    /// Episodes per task (a GRPO group).
    pub group_size: usize,
}

/// One phase's episodes: jobs whose `opponent` indexes `opponents` (`current` or member ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub jobs: Vec<EpisodeJob>,
    pub opponents: Vec<String>,
    /// Seed of the rollout (sampling and scripted players).
    pub seed: u64,
}

/// What one round plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundPlan {
    /// Counts rounds from 1 within the process.
    pub round: u64,
    pub attacker_phase: Phase,
    pub agent_phase: Phase,
}

impl RoundPlan {
    /// Episodes in both phases.
    pub fn episodes(&self) -> usize {
        self.attacker_phase.jobs.len() + self.agent_phase.jobs.len()
    }
}

/// Makes round plans; one per actor process.
#[derive(Debug, Clone)]
pub struct RoundPlanner {
    shape: RoundShape,
    /// Suites tasks are drawn from (empty: all).
    suites: Vec<Suite>,
    seed: u64,
    salt: u64,
    rounds: u64,
    groups: u64,
}

impl RoundPlanner {
    /// `seed` is the user's `--seed`; `salt` a random number drawn at process start (both
    /// enter every seed and group id).
    pub fn new(shape: RoundShape, seed: u64, salt: u64) -> Self {
        Self {
            shape,
            suites: Vec::new(),
            seed: mix(seed, salt),
            salt,
            rounds: 0,
            groups: 0,
        }
    }

    /// Draws tasks from `suites` only (the game config's `suites`; empty: all).
    #[must_use]
    pub fn with_suites(mut self, suites: Vec<Suite>) -> Self {
        self.suites = suites;
        self
    }

    pub fn shape(&self) -> RoundShape {
        self.shape
    }

    /// The next round against `assigned` (one member per agent-phase task, as returned by
    /// `AssignOpponents(count = tasks)`; empty or short: the current attacker fills in).
    pub fn plan(&mut self, assigned: &[Member]) -> RoundPlan {
        self.rounds += 1;
        let round_seed = mix(self.seed, self.rounds);
        let g = self.shape.group_size;
        let attacker_specs = self.specs(mix(round_seed, 1));
        let mut attacker_jobs = Vec::with_capacity(attacker_specs.len() * g);
        for spec in &attacker_specs {
            let group = self.next_group();
            attacker_jobs.extend(jobs_from(std::slice::from_ref(spec), g, 0, group));
        }

        let agent_specs = self.specs(mix(round_seed, 2));
        let mut opponents: Vec<String> = Vec::new();
        let mut agent_jobs = Vec::with_capacity(agent_specs.len() * g);
        for (k, spec) in agent_specs.iter().enumerate() {
            let name = assigned.get(k).map_or(CURRENT, |m| m.id.as_str());
            let index = match opponents.iter().position(|o| o == name) {
                Some(i) => i,
                None => {
                    opponents.push(name.to_string());
                    opponents.len() - 1
                }
            };
            let group = self.next_group();
            agent_jobs.extend(jobs_from(std::slice::from_ref(spec), g, index, group));
        }
        RoundPlan {
            round: self.rounds,
            attacker_phase: Phase {
                jobs: attacker_jobs,
                opponents: vec![CURRENT.to_string()],
                seed: mix(round_seed, 3),
            },
            agent_phase: Phase {
                jobs: agent_jobs,
                opponents,
                seed: mix(round_seed, 4),
            },
        }
    }

    fn specs(&self, seed: u64) -> Vec<EpisodeSpec> {
        (0..self.shape.tasks)
            .map(|k| {
                EpisodeSpec::sample_from(&self.suites, Split::Train, episode_seed(seed, k as u64))
            })
            .collect()
    }

    fn next_group(&mut self) -> u64 {
        self.groups += 1;
        mix(self.salt, self.groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_coordinator::service::{BlobId, BlobRef};
    use std::collections::{BTreeMap, BTreeSet};

    fn member(id: &str) -> Member {
        Member {
            id: id.to_string(),
            iteration: 0,
            attacker_version: 1,
            checkpoint: BlobRef {
                id: BlobId::parse(&"a".repeat(64)).unwrap(),
                size: 1,
            },
        }
    }

    const SHAPE: RoundShape = RoundShape {
        tasks: 3,
        group_size: 4,
    };

    #[test]
    fn groups_are_consecutive_share_task_and_opponent_and_never_repeat() {
        let mut planner = RoundPlanner::new(SHAPE, 7, 99);
        let assigned = [member("m0"), member("m1"), member("m0")];
        let mut all_groups = BTreeSet::new();
        for _ in 0..3 {
            let plan = planner.plan(&assigned);
            assert_eq!(plan.episodes(), 2 * 3 * 4);
            assert_eq!(plan.attacker_phase.opponents, [CURRENT]);
            assert_eq!(plan.agent_phase.opponents, ["m0", "m1"]);
            let agent_opponents: Vec<usize> = plan
                .agent_phase
                .jobs
                .chunks(4)
                .map(|c| c[0].opponent)
                .collect();
            assert_eq!(agent_opponents, [0, 1, 0], "one member per task, in order");
            for phase in [&plan.attacker_phase, &plan.agent_phase] {
                let mut by_group: BTreeMap<u64, Vec<&EpisodeJob>> = BTreeMap::new();
                for chunk in phase.jobs.chunks(4) {
                    // The G episodes of a group are consecutive and identical.
                    assert!(chunk.iter().all(|j| j == &chunk[0]));
                    assert!(all_groups.insert(chunk[0].group), "group id repeated");
                    by_group.entry(chunk[0].group).or_default().extend(chunk);
                }
                assert_eq!(by_group.len(), 3);
            }
        }
        // Another process (another salt) never reuses these ids.
        let mut other = RoundPlanner::new(SHAPE, 7, 100);
        for j in other.plan(&assigned).attacker_phase.jobs {
            assert!(!all_groups.contains(&j.group));
        }
    }

    #[test]
    fn an_empty_population_falls_back_to_the_current_attacker() {
        let mut planner = RoundPlanner::new(SHAPE, 1, 2);
        let plan = planner.plan(&[]);
        assert_eq!(plan.agent_phase.opponents, [CURRENT]);
        assert!(plan.agent_phase.jobs.iter().all(|j| j.opponent == 0));
        let plan = planner.plan(&[member("m3")]);
        assert_eq!(plan.agent_phase.opponents, ["m3", CURRENT]);
    }

    #[test]
    fn seeds_depend_on_seed_salt_and_round() {
        let a = RoundPlanner::new(SHAPE, 1, 2).plan(&[]);
        let b = RoundPlanner::new(SHAPE, 1, 2).plan(&[]);
        assert_eq!(a, b, "same seed and salt, same round");
        let c = RoundPlanner::new(SHAPE, 1, 3).plan(&[]);
        assert_ne!(a.attacker_phase.seed, c.attacker_phase.seed);
        let mut p = RoundPlanner::new(SHAPE, 1, 2);
        p.plan(&[]);
        assert_ne!(p.plan(&[]).attacker_phase.seed, a.attacker_phase.seed);
    }
}
