//! What an episode leaves behind for the learner: token-exact segments, the outcome and
//! the policy versions that played.

use arlas_game::{Outcome, Player, Rewards, TaskRef, Verdicts};
use serde::{Deserialize, Serialize};

/// One turn of one player: the prompt ids fed before the completion, the completion's ids
/// and the sampler's log-prob of each completion id (empty for demonstrations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
    pub logprobs: Vec<f32>,
}

/// A finished episode: token-exact, tagged with the policy versions that played it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// The task played, in its environment (the episode is reproducible from it).
    pub spec: TaskRef,
    /// Rollouts of the same group share task and opponent; advantages are relative to it.
    pub group: u64,
    /// The agent policy version that played (0 for scripted agents).
    pub agent_version: u64,
    /// Who attacked: `none`, `templates`, `file:...`, a population member id, `current`.
    pub opponent: String,
    /// The attacker policy version (0 for scripted attackers).
    pub attacker_version: u64,
    /// The agent's turns; concatenated they are one sequence (the agent sees its history).
    pub agent: Vec<Segment>,
    /// The attacker's turns, each its own sequence (the attacker sees one turn at a time).
    /// Empty when the attacker is scripted or absent.
    pub attacker: Vec<Segment>,
    /// The injection text of each turn, as inserted (for diversity and reports).
    pub injections: Vec<String>,
    pub outcome: Outcome,
    pub rewards: Rewards,
    pub turns: u32,
    pub format_errors: u32,
    /// The episode stopped because the agent's context was full; scored as a turn limit.
    pub truncated: bool,
    /// The environment's own verdicts (AgentDojo's utility and security), where it has them.
    #[serde(default)]
    pub verdicts: Option<Verdicts>,
    /// The environment's own record of the episode (AgentDojo's results JSON), when asked
    /// for; kept in the process, never sent to learners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

impl Trajectory {
    /// Whether the attacker won (private data leaked).
    pub fn leaked(&self) -> bool {
        self.outcome == Outcome::Leaked
    }

    /// Sampled tokens of both players.
    pub fn sampled_tokens(&self) -> usize {
        self.agent
            .iter()
            .chain(&self.attacker)
            .map(|s| s.completion.len())
            .sum()
    }

    /// The version of `player`'s policy that played (0 for a scripted player).
    pub fn version(&self, player: Player) -> u64 {
        match player {
            Player::Agent => self.agent_version,
            Player::Attacker => self.attacker_version,
        }
    }

    /// `player`'s reward.
    pub fn reward(&self, player: Player) -> f32 {
        match player {
            Player::Agent => self.rewards.agent,
            Player::Attacker => self.rewards.attacker,
        }
    }
}

/// A token sequence and the mask of the ids a player sampled (its own completions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub mask: Vec<bool>,
}

/// Concatenates segments into one sequence with the completion mask.
pub fn concat(segments: &[Segment]) -> Sequence {
    let len: usize = segments
        .iter()
        .map(|s| s.prompt.len() + s.completion.len())
        .sum();
    let mut tokens = Vec::with_capacity(len);
    let mut mask = Vec::with_capacity(len);
    for s in segments {
        tokens.extend_from_slice(&s.prompt);
        mask.extend(std::iter::repeat_n(false, s.prompt.len()));
        tokens.extend_from_slice(&s.completion);
        mask.extend(std::iter::repeat_n(true, s.completion.len()));
    }
    Sequence { tokens, mask }
}
