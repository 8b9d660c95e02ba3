//! Plans rounds: which tasks, which groups, which opponents, which seeds. The one planner
//! of both modes: the actor node (`arlas actor`) and the one-machine pipeline
//! (`arlas train`) play the same plans.
//!
//! A round has two phases:
//! - the **attacker phase**: `tasks` train tasks × `group_size` episodes of the current
//!   agent against the current attacker (opponent [`CURRENT`]), for the attacker's update;
//! - the **agent phase**: `tasks` other train tasks × `group_size` episodes of the current
//!   agent against population members (one member per task, as assigned; every episode of a
//!   group faces the same member), for the agent's update. A task with no assigned member
//!   (an empty population, a coordinator that did not answer) faces the current attacker.
//!
//! The rules, chosen once for both modes:
//! - **Seeds.** A round's seed is `mix(base, round)`; `base` is the user's seed in the
//!   pipeline and `mix(seed, salt)` in an actor (so two actors with one `--seed` differ).
//!   Everything in the round derives from it with the labels of [`label`].
//! - **Group ids** are `mix(salt, n)`, `n` counting the groups of the process from 1
//!   (`mix` is a bijection of `n` for a fixed salt): distinct within a process, and across
//!   actors because each draws its salt at random when it starts. The pipeline's salt is
//!   derived from its seed. Learners order groups by first appearance, never by id.
//! - **Opponents** of a phase are listed sorted by name; a job's opponent indexes that list.

use arlas_game::seed::{episode_seed, mix};
use arlas_game::{Environment, Split, TaskRef};

use crate::error::Result;
use crate::rollout::{EpisodeJob, jobs_from};

/// The opponent name of the current attacker.
pub const CURRENT: &str = "current";

/// Labels of the seeds derived from a round's seed: `mix(round_seed, label)`.
pub mod label {
    /// Tasks of the attacker phase.
    pub const ATTACKER_TASKS: u64 = 1;
    /// Sampling and scripted players of the attacker phase.
    pub const ATTACKER_ROLLOUT: u64 = 2;
    /// The attacker's update (shuffling) in the pipeline.
    pub const ATTACKER_UPDATE: u64 = 3;
    /// Tasks of the agent phase.
    pub const AGENT_TASKS: u64 = 4;
    /// Opponent draws in the pipeline (the coordinator draws its own in a cluster).
    pub const OPPONENTS: u64 = 5;
    /// Sampling of the agent phase.
    pub const AGENT_ROLLOUT: u64 = 6;
    /// The agent's update (shuffling) in the pipeline.
    pub const AGENT_UPDATE: u64 = 7;
}

/// How big a round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundShape {
    /// Train tasks per phase.
    pub tasks: usize,
    /// Episodes per task (a GRPO group).
    pub group_size: usize,
}

/// One phase's episodes: jobs whose `opponent` indexes `opponents` ([`CURRENT`] or member ids).
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
    /// Counts rounds from 1.
    pub round: u64,
    /// The round's seed; [`RoundPlan::seed`] derives the others.
    pub round_seed: u64,
    pub attacker_phase: Phase,
    pub agent_phase: Phase,
}

impl RoundPlan {
    /// Episodes in both phases.
    pub fn episodes(&self) -> usize {
        self.attacker_phase.jobs.len() + self.agent_phase.jobs.len()
    }

    /// The seed of `label` (see [`label`]) in this round.
    pub fn seed(&self, label: u64) -> u64 {
        mix(self.round_seed, label)
    }
}

/// Makes round plans; the environment draws the tasks.
#[derive(Debug, Clone)]
pub struct RoundPlanner {
    shape: RoundShape,
    base: u64,
    salt: u64,
}

impl RoundPlanner {
    /// `base`: the seed rounds derive from; `salt`: the seed of group ids (see the module
    /// docs for how each mode chooses them).
    pub fn new(shape: RoundShape, base: u64, salt: u64) -> Self {
        Self { shape, base, salt }
    }

    /// An actor's planner: `seed` is the user's `--seed`, `salt` a random number drawn at
    /// process start.
    pub fn for_actor(shape: RoundShape, seed: u64, salt: u64) -> Self {
        Self::new(shape, mix(seed, salt), salt)
    }

    /// The pipeline's planner: everything derives from the run's seed.
    pub fn for_pipeline(shape: RoundShape, seed: u64) -> Self {
        Self::new(shape, seed, mix(seed, GROUP_SALT))
    }

    pub fn shape(&self) -> RoundShape {
        self.shape
    }

    /// The seed of round `round`.
    pub fn round_seed(&self, round: u64) -> u64 {
        mix(self.base, round)
    }

    /// Round `round` (from 1) against `assigned`: one population member id per agent-phase
    /// task; missing entries are played by the current attacker. `env` draws the tasks.
    pub fn plan(
        &self,
        round: u64,
        assigned: &[String],
        env: &dyn Environment,
    ) -> Result<RoundPlan> {
        let round_seed = self.round_seed(round);
        let seed = |label| mix(round_seed, label);
        let attacker_phase = self.phase(
            round,
            0,
            &self.tasks(env, seed(label::ATTACKER_TASKS))?,
            &[],
            seed(label::ATTACKER_ROLLOUT),
        );
        let agent_phase = self.phase(
            round,
            1,
            &self.tasks(env, seed(label::AGENT_TASKS))?,
            assigned,
            seed(label::AGENT_ROLLOUT),
        );
        Ok(RoundPlan {
            round,
            round_seed,
            attacker_phase,
            agent_phase,
        })
    }

    /// One phase: task `k` plays `assigned[k]` (or the current attacker).
    fn phase(
        &self,
        round: u64,
        phase: u64,
        tasks: &[TaskRef],
        assigned: &[String],
        seed: u64,
    ) -> Phase {
        let names: Vec<&str> = (0..tasks.len())
            .map(|k| assigned.get(k).map_or(CURRENT, String::as_str))
            .collect();
        let mut opponents: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
        opponents.sort_unstable();
        opponents.dedup();
        let g = self.shape.group_size;
        let mut jobs = Vec::with_capacity(tasks.len() * g);
        for (k, (task, name)) in tasks.iter().zip(&names).enumerate() {
            let index = opponents.iter().position(|o| o == name).unwrap_or(0);
            let group = self.group_id(round, phase, k as u64);
            jobs.extend(jobs_from(std::slice::from_ref(task), g, index, group));
        }
        Phase {
            jobs,
            opponents,
            seed,
        }
    }

    /// The phase's train tasks: task `k` is drawn from `episode_seed(seed, k)`.
    fn tasks(&self, env: &dyn Environment, seed: u64) -> Result<Vec<TaskRef>> {
        (0..self.shape.tasks)
            .map(|k| Ok(env.sample(Split::Train, episode_seed(seed, k as u64))?))
            .collect()
    }

    /// `mix(salt, n)` with `n` the group's number in the process, from 1.
    fn group_id(&self, round: u64, phase: u64, k: u64) -> u64 {
        let tasks = self.shape.tasks as u64;
        let n = (round.saturating_sub(1) * 2 + phase) * tasks + k + 1;
        mix(self.salt, n)
    }
}

/// Label of the pipeline's group-id salt.
const GROUP_SALT: u64 = 0x6a09_e667;

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_game::{BuiltinEnvironment, GameConfig};
    use std::collections::{BTreeMap, BTreeSet};

    fn env() -> BuiltinEnvironment {
        BuiltinEnvironment::new(GameConfig::default())
    }

    const SHAPE: RoundShape = RoundShape {
        tasks: 3,
        group_size: 4,
    };

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_string()).collect()
    }

    #[test]
    fn groups_are_consecutive_share_task_and_opponent_and_never_repeat() {
        let planner = RoundPlanner::for_actor(SHAPE, 7, 99);
        let assigned = ids(&["m1", "m0", "m1"]);
        let mut all_groups = BTreeSet::new();
        for round in 1..=3 {
            let plan = planner.plan(round, &assigned, &env()).unwrap();
            assert_eq!(plan.episodes(), 2 * 3 * 4);
            assert_eq!(plan.attacker_phase.opponents, [CURRENT]);
            assert_eq!(plan.agent_phase.opponents, ["m0", "m1"], "sorted by name");
            let agent_opponents: Vec<usize> = plan
                .agent_phase
                .jobs
                .chunks(4)
                .map(|c| c[0].opponent)
                .collect();
            assert_eq!(agent_opponents, [1, 0, 1], "one member per task, in order");
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
        let other = RoundPlanner::for_actor(SHAPE, 7, 100);
        for j in other
            .plan(1, &assigned, &env())
            .unwrap()
            .attacker_phase
            .jobs
        {
            assert!(!all_groups.contains(&j.group));
        }
    }

    #[test]
    fn a_missing_member_is_played_by_the_current_attacker() {
        let planner = RoundPlanner::for_actor(SHAPE, 1, 2);
        let plan = planner.plan(1, &[], &env()).unwrap();
        assert_eq!(plan.agent_phase.opponents, [CURRENT]);
        assert!(plan.agent_phase.jobs.iter().all(|j| j.opponent == 0));
        let plan = planner.plan(2, &ids(&["m3"]), &env()).unwrap();
        assert_eq!(plan.agent_phase.opponents, [CURRENT, "m3"]);
    }

    #[test]
    fn seeds_depend_on_seed_salt_and_round() {
        let a = RoundPlanner::for_actor(SHAPE, 1, 2)
            .plan(1, &[], &env())
            .unwrap();
        let b = RoundPlanner::for_actor(SHAPE, 1, 2)
            .plan(1, &[], &env())
            .unwrap();
        assert_eq!(a, b, "same seed and salt, same round");
        let c = RoundPlanner::for_actor(SHAPE, 1, 3)
            .plan(1, &[], &env())
            .unwrap();
        assert_ne!(a.attacker_phase.seed, c.attacker_phase.seed);
        let p = RoundPlanner::for_actor(SHAPE, 1, 2);
        assert_ne!(
            p.plan(2, &[], &env()).unwrap().attacker_phase.seed,
            a.attacker_phase.seed
        );
        // The pipeline's round seeds are mix(seed, round), as its iterations always were.
        let pipeline = RoundPlanner::for_pipeline(SHAPE, 5)
            .plan(3, &[], &env())
            .unwrap();
        assert_eq!(pipeline.round_seed, mix(5, 3));
        assert_eq!(
            pipeline.attacker_phase.seed,
            mix(mix(5, 3), label::ATTACKER_ROLLOUT)
        );
    }
}
