//! Whether a valid trajectory fits the learner's model: token ids inside its vocabulary,
//! sequences inside its context, nothing the trainer would refuse. Checked at the edge, so
//! one bad trajectory is dropped as INVALID instead of failing a whole update.

use arlas_core::{Segment, Trajectory};
use arlas_policy::LlamaConfig;

use crate::Player;

/// The model's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFit {
    pub player: Player,
    pub vocab_size: usize,
    pub max_tokens: usize,
}

impl ModelFit {
    pub fn of(player: Player, config: &LlamaConfig) -> Self {
        Self {
            player,
            vocab_size: config.vocab_size,
            max_tokens: config.max_position_embeddings,
        }
    }

    fn ids(&self, side: &str, segments: &[Segment]) -> Result<(), String> {
        for (k, s) in segments.iter().enumerate() {
            if let Some(bad) = s
                .prompt
                .iter()
                .chain(&s.completion)
                .find(|&&t| t as usize >= self.vocab_size)
            {
                return Err(format!(
                    "{side} segment {k} has token id {bad}, outside the learner's vocabulary of {}",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// Why `t` cannot be trained by this learner, if it cannot.
    pub fn check(&self, t: &Trajectory) -> Result<(), String> {
        match self.player {
            Player::Agent => {
                self.ids("agent", &t.agent)?;
                let total: usize = t
                    .agent
                    .iter()
                    .map(|s| s.prompt.len() + s.completion.len())
                    .sum();
                if total > self.max_tokens {
                    return Err(format!(
                        "the agent's sequence has {total} tokens; the learner's model context is {}",
                        self.max_tokens
                    ));
                }
                if t.agent.first().is_some_and(|s| s.prompt.is_empty()) {
                    return Err("the agent's first segment has no prompt".into());
                }
            }
            Player::Attacker => {
                self.ids("attacker", &t.attacker)?;
                for (k, s) in t.attacker.iter().enumerate() {
                    let len = s.prompt.len() + s.completion.len();
                    if len > self.max_tokens {
                        return Err(format!(
                            "attacker segment {k} has {len} tokens; the learner's model context is {}",
                            self.max_tokens
                        ));
                    }
                    if s.prompt.is_empty() && !s.completion.is_empty() {
                        return Err(format!("attacker segment {k} has no prompt"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::trajectory;

    #[test]
    fn out_of_vocabulary_and_over_long_trajectories_do_not_fit() {
        let fit = ModelFit {
            player: Player::Agent,
            vocab_size: 300,
            max_tokens: 1000,
        };
        let mut t = trajectory(1, 1);
        assert_eq!(fit.check(&t), Ok(()));
        t.agent[1].completion[0] = 300;
        assert!(
            fit.check(&t)
                .is_err_and(|r| r.contains("vocabulary of 300"))
        );
        let attacker = ModelFit {
            player: Player::Attacker,
            ..fit
        };
        assert_eq!(attacker.check(&t), Ok(()), "the attacker's side is fine");
        let short = ModelFit {
            max_tokens: 40,
            ..fit
        };
        let t = trajectory(1, 1);
        assert!(short.check(&t).is_err_and(|r| r.contains("context is 40")));
    }
}
