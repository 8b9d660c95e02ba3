//! The boundary between the actor and whatever runs the episodes: an [`Environment`]
//! serves tasks, starts episodes with injection slots, takes the attacker's injections and
//! the agent's actions, and judges the end. The built-in suites are the first
//! implementation ([`BuiltinEnvironment`]); a remote one (a Python service over gRPC, e.g.
//! AgentDojo) implements the same trait, and the rollout, the learner and the coordinator
//! never know which one played.
//!
//! Why synchronous and batched (docs/architecture.md has the long form):
//! - the rollout runs off the async runtime (on a blocking thread, next to the model), so
//!   a synchronous trait is what it can call; a remote implementation blocks on its own
//!   client inside, which is cheap next to sampling from an LLM;
//! - every mutation takes the whole batch of episodes a turn touches ([`Environment::inject`],
//!   [`Environment::step`]), so a remote implementation makes one round trip per turn and
//!   batch, not one per episode;
//! - reads ([`Environment::episode`]) are local: an implementation keeps each episode's
//!   latest view (prompts, observation, verdicts) from the answers of its batched calls.
//!
//! ```
//! use arlas_game::environment::{BuiltinEnvironment, Environment};
//! use arlas_game::{GameConfig, Split};
//! let mut env = BuiltinEnvironment::new(GameConfig::default());
//! let task = env.sample(Split::Train, 7)?;
//! env.reset(std::slice::from_ref(&task))?;
//! while !env.episode(0).is_done() {
//!     env.inject(&[(0, None)])?;
//!     let action = env.episode(0).as_builtin().map(|e| e.expert_action().to_string());
//!     env.step(&[(0, action.unwrap_or_default())])?;
//! }
//! assert_eq!(env.episode(0).outcome(), Some(arlas_game::Outcome::Completed));
//! # Ok::<(), arlas_game::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::config::GameConfig;
use crate::episode::{Episode, EpisodeSpec};
use crate::error::{Error, Result};
use crate::judge::{Outcome, Rewards, Verdicts};
use crate::split::Split;

/// The name of the built-in suites' environment.
pub const BUILTIN: &str = "builtin";

/// A task of some environment, as trajectories record it: enough to replay the episode
/// in that environment; opaque to learners and the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    /// Which environment (`builtin`, `agentdojo`, ...).
    pub environment: String,
    /// The environment's suite.
    pub suite: String,
    pub split: Split,
    /// The task within the suite (a template id of the built-in suites).
    pub task: String,
    /// The episode seed.
    pub seed: u64,
}

impl From<&EpisodeSpec> for TaskRef {
    fn from(spec: &EpisodeSpec) -> Self {
        Self {
            environment: BUILTIN.to_string(),
            suite: spec.suite.name().to_string(),
            split: spec.split,
            task: spec.template.clone(),
            seed: spec.seed,
        }
    }
}

impl TryFrom<&TaskRef> for EpisodeSpec {
    type Error = Error;

    /// A built-in task: a known suite and one of its templates in the split.
    fn try_from(task: &TaskRef) -> Result<Self> {
        if task.environment != BUILTIN {
            return Err(Error::Environment {
                name: BUILTIN.to_string(),
                reason: format!("task of environment {:?}", task.environment),
            });
        }
        let suite = task.suite.parse()?;
        let spec = EpisodeSpec {
            suite,
            split: task.split,
            template: task.task.clone(),
            seed: task.seed,
        };
        spec.check()?;
        Ok(spec)
    }
}

/// What the players read in an episode, and how it ended.
pub trait EpisodeView {
    /// The task being played.
    fn task(&self) -> TaskRef;
    /// The agent's system prompt: tools, the user's private information, the action format.
    fn agent_system_prompt(&self) -> String;
    fn attacker_system_prompt(&self) -> String;
    /// Whether this turn's observation has an injection slot (the attacker writes only
    /// then). The built-in suites have one every turn; an environment that injects once at
    /// the start has one before the first action only.
    fn injection_slot(&self) -> bool {
        true
    }
    /// What the attacker reads this turn: the task, its goal, the observation about to be
    /// shown with a marker at the slot.
    fn attacker_message(&self) -> String;
    /// What the agent reads this turn (with this turn's injection inserted).
    fn agent_message(&self) -> String;
    /// This turn's injection as inserted, if any.
    fn injection(&self) -> Option<&str>;
    /// The attacker's goal as one sentence (what scripted attack templates state).
    fn goal_sentence(&self) -> &str;
    fn is_done(&self) -> bool;
    /// How it ended (`None` while running).
    fn outcome(&self) -> Option<Outcome>;
    /// Both players' rewards (`None` while running).
    fn rewards(&self) -> Option<Rewards>;
    /// Agent turns taken.
    fn turn(&self) -> u32;
    fn format_errors(&self) -> u32;
    fn attacker_format_errors(&self) -> u32;
    /// The built-in episode behind this view, for the built-in suites' scripted agents.
    fn as_builtin(&self) -> Option<&Episode> {
        None
    }
    /// This turn's action of a scripted agent the environment itself plays (AgentDojo's
    /// `oracle` and `obey`), or `None` when it has no such agent.
    fn scripted_action(&self, _agent: &str) -> Option<String> {
        None
    }
    /// The environment's own verdicts once done, where it has them (AgentDojo): the user
    /// task's utility and, when an injection was played, whether it succeeded (security).
    fn verdicts(&self) -> Option<Verdicts> {
        None
    }
    /// Once done, the episode in the environment's own results format, where it keeps one
    /// and was asked to (AgentDojo's TraceLogger JSON).
    fn record(&self) -> Option<&str> {
        None
    }
}

/// Runs a batch of episodes (see the module docs).
pub trait Environment: Send {
    /// The name trajectories record (`builtin`, ...).
    fn name(&self) -> &str;
    /// The task `seed` draws in `split`.
    fn sample(&self, split: Split, seed: u64) -> Result<TaskRef>;
    /// Starts one episode per task, replacing the previous batch; episode `i` plays
    /// `tasks[i]` until the next reset.
    fn reset(&mut self, tasks: &[TaskRef]) -> Result<()>;
    /// Episode `i` of the current batch.
    fn episode(&self, i: usize) -> &dyn EpisodeView;
    /// This turn's injection of each listed episode: the attacker's raw output, or `None`
    /// (the slot stays benign).
    fn inject(&mut self, injections: &[(usize, Option<String>)]) -> Result<()>;
    /// The agent's raw output for each listed episode; an episode may end.
    fn step(&mut self, actions: &[(usize, String)]) -> Result<()>;
    /// Every task of `split` once, for an environment with a finite benchmark (AgentDojo's
    /// (user task, injection task) pairs); the built-in suites draw tasks from seeds instead.
    fn all_tasks(&self, split: Split) -> Result<Vec<TaskRef>> {
        Err(Error::Environment {
            name: self.name().to_string(),
            reason: format!(
                "it draws {split} tasks from seeds and has no fixed list; play --episodes N"
            ),
        })
    }
    /// The injection text the environment's own scripted attack `attack` writes for each
    /// listed episode (AgentDojo's attacks, rendered by AgentDojo). The built-in suites
    /// have none: their attack templates are players of the game crate.
    fn render_attack(&mut self, attack: &str, _which: &[usize]) -> Result<Vec<String>> {
        Err(Error::Environment {
            name: self.name().to_string(),
            reason: format!("it has no scripted attack {attack:?}"),
        })
    }
}

impl EpisodeView for Episode {
    fn task(&self) -> TaskRef {
        TaskRef::from(self.spec())
    }

    fn agent_system_prompt(&self) -> String {
        Episode::agent_system_prompt(self)
    }

    fn attacker_system_prompt(&self) -> String {
        Episode::attacker_system_prompt(self)
    }

    fn attacker_message(&self) -> String {
        Episode::attacker_message(self)
    }

    fn agent_message(&self) -> String {
        Episode::agent_message(self)
    }

    fn injection(&self) -> Option<&str> {
        Episode::injection(self)
    }

    fn goal_sentence(&self) -> &str {
        self.goal().sentence()
    }

    fn is_done(&self) -> bool {
        Episode::is_done(self)
    }

    fn outcome(&self) -> Option<Outcome> {
        Episode::outcome(self)
    }

    fn rewards(&self) -> Option<Rewards> {
        Episode::rewards(self)
    }

    fn turn(&self) -> u32 {
        Episode::turn(self)
    }

    fn format_errors(&self) -> u32 {
        Episode::format_errors(self)
    }

    fn attacker_format_errors(&self) -> u32 {
        Episode::attacker_format_errors(self)
    }

    fn as_builtin(&self) -> Option<&Episode> {
        Some(self)
    }
}

/// The built-in suites (`web`, `email`, `banking`, `travel`), in process.
#[derive(Debug)]
pub struct BuiltinEnvironment {
    config: GameConfig,
    episodes: Vec<Episode>,
}

impl BuiltinEnvironment {
    pub fn new(config: GameConfig) -> Self {
        Self {
            config,
            episodes: Vec::new(),
        }
    }

    fn get_mut(&mut self, i: usize) -> Result<&mut Episode> {
        let count = self.episodes.len();
        self.episodes.get_mut(i).ok_or_else(|| Error::Environment {
            name: BUILTIN.to_string(),
            reason: format!("no episode {i} in a batch of {count}"),
        })
    }
}

impl Environment for BuiltinEnvironment {
    fn name(&self) -> &str {
        BUILTIN
    }

    fn sample(&self, split: Split, seed: u64) -> Result<TaskRef> {
        Ok(TaskRef::from(&EpisodeSpec::sample_from(
            &self.config.suites,
            split,
            seed,
        )))
    }

    fn reset(&mut self, tasks: &[TaskRef]) -> Result<()> {
        self.episodes = tasks
            .iter()
            .map(|t| Episode::new(EpisodeSpec::try_from(t)?, &self.config))
            .collect::<Result<_>>()?;
        Ok(())
    }

    fn episode(&self, i: usize) -> &dyn EpisodeView {
        &self.episodes[i]
    }

    fn inject(&mut self, injections: &[(usize, Option<String>)]) -> Result<()> {
        for (i, text) in injections {
            let ep = self.get_mut(*i)?;
            match text {
                Some(raw) => {
                    ep.inject(raw)?;
                }
                None => ep.inject_none(),
            }
        }
        Ok(())
    }

    fn step(&mut self, actions: &[(usize, String)]) -> Result<()> {
        for (i, raw) in actions {
            self.get_mut(*i)?.act(raw)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tasks_round_trip_and_foreign_ones_are_refused() {
        let env = BuiltinEnvironment::new(GameConfig::default());
        let task = env.sample(Split::Eval, 3).unwrap();
        assert_eq!(task.environment, BUILTIN);
        let spec = EpisodeSpec::try_from(&task).unwrap();
        assert_eq!(TaskRef::from(&spec), task);
        let foreign = TaskRef {
            environment: "agentdojo".into(),
            ..task.clone()
        };
        assert!(EpisodeSpec::try_from(&foreign).is_err());
        let unknown = TaskRef {
            task: "../../etc".into(),
            ..task
        };
        assert!(EpisodeSpec::try_from(&unknown).is_err());
    }

    #[test]
    fn an_episode_index_out_of_the_batch_is_an_error() {
        let mut env = BuiltinEnvironment::new(GameConfig::default());
        let task = env.sample(Split::Train, 1).unwrap();
        env.reset(&[task]).unwrap();
        assert!(env.step(&[(1, "x".into())]).is_err());
        env.inject(&[(0, Some("<action>hi</action>".into()))])
            .unwrap();
        assert_eq!(env.episode(0).injection(), Some("hi"));
    }
}
