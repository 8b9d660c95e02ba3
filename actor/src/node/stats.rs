//! Rolling statistics of recent episodes (rewards, TSR, ASR) and the actor's metrics.

use std::collections::VecDeque;

use arlas_core::{Player, Trajectory};
use arlas_game::Outcome;
use arlas_runtime::metrics as names;

/// Episodes the rolling gauges average over.
pub const WINDOW: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Recent {
    agent_reward: f32,
    attacker_reward: f32,
    completed: bool,
    leaked: bool,
}

/// The last [`WINDOW`] episodes.
#[derive(Debug, Default)]
pub struct Rolling {
    recent: VecDeque<Recent>,
}

/// Means over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollingMeans {
    pub agent_reward: f64,
    pub attacker_reward: f64,
    /// Task success rate: episodes completed without a leak.
    pub tsr: f64,
    /// Attack success rate: episodes that leaked.
    pub asr: f64,
}

impl Rolling {
    pub fn record(&mut self, t: &Trajectory) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            agent_reward: t.rewards.agent,
            attacker_reward: t.rewards.attacker,
            completed: t.outcome == Outcome::Completed,
            leaked: t.outcome == Outcome::Leaked,
        });
    }

    /// `None` before the first episode.
    #[allow(clippy::cast_precision_loss)]
    pub fn means(&self) -> Option<RollingMeans> {
        let n = self.recent.len();
        if n == 0 {
            return None;
        }
        let mean = |f: &dyn Fn(&Recent) -> f64| self.recent.iter().map(f).sum::<f64>() / n as f64;
        Some(RollingMeans {
            agent_reward: mean(&|r| f64::from(r.agent_reward)),
            attacker_reward: mean(&|r| f64::from(r.attacker_reward)),
            tsr: mean(&|r| f64::from(u8::from(r.completed))),
            asr: mean(&|r| f64::from(u8::from(r.leaked))),
        })
    }
}

/// Counts finished episodes and sampled tokens, and updates the rolling gauges.
pub fn record_episodes(rolling: &mut Rolling, trajectories: &[Trajectory]) {
    for t in trajectories {
        rolling.record(t);
        let agent: usize = t.agent.iter().map(|s| s.completion.len()).sum();
        let attacker: usize = t.attacker.iter().map(|s| s.completion.len()).sum();
        metrics::counter!(names::TOKENS_SAMPLED_TOTAL, "player" => Player::Agent.name())
            .increment(agent as u64);
        metrics::counter!(names::TOKENS_SAMPLED_TOTAL, "player" => Player::Attacker.name())
            .increment(attacker as u64);
    }
    metrics::counter!(names::EPISODES_TOTAL, "role" => "actor")
        .increment(trajectories.len() as u64);
    if let Some(m) = rolling.means() {
        metrics::gauge!(names::EPISODE_REWARD, "player" => Player::Agent.name())
            .set(m.agent_reward);
        metrics::gauge!(names::EPISODE_REWARD, "player" => Player::Attacker.name())
            .set(m.attacker_reward);
        metrics::gauge!(names::TASK_SUCCESS_RATE).set(m.tsr);
        metrics::gauge!(names::ATTACK_SUCCESS_RATE).set(m.asr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_game::{EpisodeSpec, Rewards, Split};

    fn episode(outcome: Outcome, agent: f32) -> Trajectory {
        Trajectory {
            spec: arlas_game::TaskRef::from(&EpisodeSpec::sample(Split::Train, 1)),
            group: 0,
            agent_version: 1,
            opponent: "current".into(),
            attacker_version: 1,
            agent: vec![],
            attacker: vec![],
            injections: vec![],
            outcome,
            rewards: Rewards {
                attacker: -agent,
                agent,
            },
            turns: 1,
            format_errors: 0,
            truncated: false,
            verdicts: None,
            record: None,
        }
    }

    #[test]
    fn means_cover_the_last_window_only() {
        let mut r = Rolling::default();
        assert!(r.means().is_none());
        for _ in 0..WINDOW {
            r.record(&episode(Outcome::Leaked, -1.0));
        }
        for _ in 0..WINDOW / 2 {
            r.record(&episode(Outcome::Completed, 1.0));
        }
        let m = r.means().unwrap();
        assert!(
            (m.tsr - 0.5).abs() < 1e-9 && (m.asr - 0.5).abs() < 1e-9,
            "{m:?}"
        );
        assert!(m.agent_reward.abs() < 1e-9 && m.attacker_reward.abs() < 1e-9);
    }
}
