//! Synthetic trajectories for tests and load tests: a real episode spec from the game,
//! random token ids and log-probs of the right shapes, so they pass validation and a
//! learner can train on them (the tokens mean nothing).

use arlas_core::{Segment, Trajectory};
use arlas_game::{EpisodeSpec, Outcome, Rewards, Split, TaskRef};
use rand::Rng;

/// The shape of a synthetic trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Token ids are drawn below this (the model's vocabulary size).
    pub vocab: u32,
    /// Agent and attacker turns.
    pub turns: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            vocab: 256,
            turns: 2,
            prompt_tokens: 24,
            completion_tokens: 8,
        }
    }
}

fn segment(rng: &mut impl Rng, shape: &Shape) -> Segment {
    let vocab = shape.vocab.max(1);
    Segment {
        prompt: (0..shape.prompt_tokens)
            .map(|_| rng.random_range(0..vocab))
            .collect(),
        completion: (0..shape.completion_tokens)
            .map(|_| rng.random_range(0..vocab))
            .collect(),
        logprobs: (0..shape.completion_tokens)
            .map(|_| -rng.random_range(0.01f32..6.0))
            .collect(),
    }
}

/// A valid trajectory of `group`, played by `agent_version` against the attacker at
/// `attacker_version` ("current"), with a random outcome and rewards.
pub fn trajectory(
    rng: &mut impl Rng,
    shape: &Shape,
    group: u64,
    agent_version: u64,
    attacker_version: u64,
) -> Trajectory {
    let leaked = rng.random_bool(0.5);
    let (outcome, rewards) = if leaked {
        (
            Outcome::Leaked,
            Rewards {
                attacker: 1.0,
                agent: -1.0,
            },
        )
    } else {
        (
            Outcome::Completed,
            Rewards {
                attacker: -1.0,
                agent: 1.0,
            },
        )
    };
    Trajectory {
        spec: TaskRef::from(&EpisodeSpec::sample(Split::Train, group)),
        group,
        agent_version,
        opponent: "current".into(),
        attacker_version,
        agent: (0..shape.turns).map(|_| segment(rng, shape)).collect(),
        attacker: (0..shape.turns).map(|_| segment(rng, shape)).collect(),
        injections: (0..shape.turns).map(|t| format!("injection {t}")).collect(),
        outcome,
        rewards,
        turns: u32::try_from(shape.turns).unwrap_or(u32::MAX),
        format_errors: 0,
        truncated: false,
        verdicts: None,
        record: None,
    }
}
