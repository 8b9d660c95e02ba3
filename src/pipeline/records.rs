//! The records of `metrics.jsonl`: one serde-tagged type, written by the pipeline and read
//! back by resume and the report. The `kind` field names the variant.

use arlas_actor::eval::EvalReport;
use arlas_actor::{EvalRates, PrefillCount};
use arlas_game::PerPlayer;
use arlas_learner::{GroupStats, Player, StepMeans, UpdateReport};
use arlas_policy::StepStats;
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// The warm-up's scripted demonstrations.
    Demonstrations(Demonstrations),
    /// One imitation step of the warm-up.
    Warmup(WarmupStep),
    /// One player's GRPO update in an iteration.
    Update(Update),
    /// A held-out evaluation (after the warm-up or an iteration).
    Eval(Eval),
    /// An iteration, once played and trained.
    Iteration(Iteration),
}

impl Record {
    /// The iteration a record belongs to; `None` for the warm-up's own records.
    pub fn iteration(&self) -> Option<u32> {
        match self {
            Self::Demonstrations(_) | Self::Warmup(_) => None,
            Self::Update(u) => Some(u.iteration),
            Self::Eval(e) => Some(e.iteration),
            Self::Iteration(i) => Some(i.iteration),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Demonstrations {
    pub episodes: usize,
    pub naive_fraction: f64,
    pub agent_items: usize,
    pub attacker_items: usize,
    pub agent_tokens: usize,
    pub attacker_tokens: usize,
    pub leaked: usize,
    pub completed: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupStep {
    pub player: Player,
    pub epoch: usize,
    pub step: usize,
    pub stats: StepStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub iteration: u32,
    pub player: Player,
    /// The policy version after the update.
    pub version: u64,
    pub trajectories: usize,
    pub dropped_stale: usize,
    pub items: usize,
    pub groups: GroupStats,
    pub logprob_mismatch: f64,
    pub means: StepMeans,
    /// Optimizer steps taken.
    pub steps: usize,
}

impl Update {
    pub fn new(iteration: u32, report: &UpdateReport) -> Self {
        Self {
            iteration,
            player: report.player,
            version: report.version,
            trajectories: report.trajectories,
            dropped_stale: report.dropped_stale,
            items: report.items,
            groups: report.groups,
            logprob_mismatch: report.logprob_mismatch,
            means: report.means(),
            steps: report.steps.len(),
        }
    }
}

/// When an evaluation ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Warmup,
    Iteration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub iteration: u32,
    pub stage: Stage,
    pub report: EvalReport,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Iteration {
    pub iteration: u32,
    pub agent_version: u64,
    pub attacker_version: u64,
    /// Population members after the iteration.
    pub population: usize,
    pub episodes: usize,
    pub sampled_tokens: usize,
    /// Prompt tokens run through the models to sample (what a KV cache carried between
    /// turns saves); `None` in records written before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefilled_tokens: Option<usize>,
    /// Per player, the prompt tokens its sampling calls prefilled and the prompt tokens they
    /// held (`prompt`: what prefilling every prompt whole, without the KV cache kept between
    /// turns, would have prefilled); `None` in records written before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<PerPlayer<PrefillCount>>,
    pub seconds: f64,
    /// Where `seconds` went; `None` in records written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_seconds: Option<PhaseSeconds>,
    pub episodes_per_sec: f64,
    /// Rates of the attacker phase (`None` when the attacker is frozen).
    pub attacker_phase: Option<EvalRates>,
    /// Rates of the agent phase (`None` when the agent is frozen).
    pub agent_phase: Option<EvalRates>,
}

/// Wall seconds of an iteration's phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSeconds {
    /// Both rollout phases (sampling both players, playing the game).
    pub rollout: f64,
    /// GRPO update of the attacker (0 when it is frozen).
    pub attacker_update: f64,
    /// GRPO update of the agent (0 when it is frozen).
    pub agent_update: f64,
    /// Checkpoints, the new population member and the payoff matrix.
    pub commit: f64,
    /// The held-out evaluation (0 when none was due).
    pub evaluation: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_tagged_by_kind_and_read_back() {
        let record = Record::Demonstrations(Demonstrations {
            episodes: 4,
            naive_fraction: 0.5,
            agent_items: 4,
            attacker_items: 9,
            agent_tokens: 100,
            attacker_tokens: 50,
            leaked: 2,
            completed: 2,
        });
        let line = serde_json::to_string(&record).unwrap_or_default();
        assert!(line.starts_with(r#"{"kind":"demonstrations","#), "{line}");
        let back: Record = serde_json::from_str(&line)
            .ok()
            .unwrap_or(Record::Eval(Eval {
                iteration: 9,
                stage: Stage::Warmup,
                report: EvalReport::default(),
            }));
        assert_eq!(back, record);
        assert_eq!(back.iteration(), None);
    }
}
