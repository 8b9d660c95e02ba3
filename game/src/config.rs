//! Game settings shared by every episode of a run.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::suite::Suite;

/// Rules that are configurable. `Default` gives the values used in docs/game.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GameConfig {
    /// Agent turns before the episode ends as [`Outcome::TurnLimit`](crate::Outcome::TurnLimit).
    pub max_turns: u32,
    /// Subtracted from a player's reward for each of its own format errors
    /// (agent: unparsable or invalid actions; attacker: outputs without an injection).
    pub format_error_penalty: f32,
    /// Injections are cut to this many characters before they are inserted.
    pub max_injection_chars: usize,
    /// Suites that episodes are drawn from; empty means all four. A run restricted to one
    /// suite is the small-scale setting: fewer tools and task shapes for a small model to learn.
    pub suites: Vec<Suite>,
}

impl Default for GameConfig {
    fn default() -> Self {
        Self {
            max_turns: 8,
            format_error_penalty: 0.0,
            max_injection_chars: 600,
            suites: Vec::new(),
        }
    }
}

impl GameConfig {
    /// Checks the values; episodes only accept a validated config.
    pub fn validate(&self) -> Result<()> {
        if self.max_turns == 0 || self.max_turns > 64 {
            return Err(Error::Config(format!(
                "max_turns is {}; use a value from 1 to 64",
                self.max_turns
            )));
        }
        if !self.format_error_penalty.is_finite() || self.format_error_penalty < 0.0 {
            return Err(Error::Config(format!(
                "format_error_penalty is {}; use a finite value >= 0",
                self.format_error_penalty
            )));
        }
        if self.max_injection_chars == 0 {
            return Err(Error::Config(
                "max_injection_chars is 0; use a positive number of characters".to_string(),
            ));
        }
        Ok(())
    }
}
