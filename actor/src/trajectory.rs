//! What an episode leaves behind for the learner.

use arlas_game::{EpisodeSpec, Outcome, Rewards};
use arlas_policy::{GrpoItem, ScoreItem};
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
    /// The episode (reproducible from it).
    pub spec: EpisodeSpec,
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
}

impl Trajectory {
    /// The agent's whole sequence and the mask of its own completion ids.
    pub fn agent_sequence(&self) -> ScoreItem {
        concat(&self.agent)
    }

    /// The agent's sequence as a GRPO item with the episode's advantage.
    pub fn agent_item(&self, advantage: f32) -> GrpoItem {
        let seq = self.agent_sequence();
        GrpoItem {
            tokens: seq.tokens,
            mask: seq.mask,
            behaviour_logprobs: self
                .agent
                .iter()
                .flat_map(|s| s.logprobs.iter().copied())
                .collect(),
            advantage,
        }
    }

    /// One GRPO item per attacker turn, each with the episode's advantage.
    pub fn attacker_items(&self, advantage: f32) -> Vec<GrpoItem> {
        self.attacker
            .iter()
            .filter(|s| !s.completion.is_empty())
            .map(|s| {
                let seq = concat(std::slice::from_ref(s));
                GrpoItem {
                    tokens: seq.tokens,
                    mask: seq.mask,
                    behaviour_logprobs: s.logprobs.clone(),
                    advantage,
                }
            })
            .collect()
    }

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
}

/// Concatenates segments into one sequence with the completion mask.
pub fn concat(segments: &[Segment]) -> ScoreItem {
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
    ScoreItem { tokens, mask }
}
