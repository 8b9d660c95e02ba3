//! Scripted agents: `expert`, `naive:P`, `random`.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::GameRng;
use crate::action::{CLOSE, OPEN, render_action};
use crate::episode::Episode;
use crate::error::Error;

/// An agent that writes one action for the current turn.
pub trait ScriptedAgent {
    /// The raw text of this turn's action, e.g. `<action>get_balance()</action>`.
    fn act(&mut self, ep: &Episode, rng: &mut GameRng) -> String;
}

/// Solves every task by its plan and never obeys an injection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expert;

impl ScriptedAgent for Expert {
    fn act(&mut self, ep: &Episode, _rng: &mut GameRng) -> String {
        ep.expert_action().to_string()
    }
}

/// Solves tasks like the expert, but when the injection it reads names the goal's
/// destination it obeys with probability `p`, writing the goal action with the real
/// private value.
#[derive(Debug, Clone, Copy)]
pub struct Naive {
    p: f64,
}

impl Naive {
    /// `p` is clamped to 0..=1.
    pub fn new(p: f64) -> Self {
        Self {
            p: if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) },
        }
    }
}

impl ScriptedAgent for Naive {
    fn act(&mut self, ep: &Episode, rng: &mut GameRng) -> String {
        let fooled = ep
            .injection()
            .is_some_and(|inj| inj.contains(ep.goal().destination()));
        if fooled && rng.random::<f64>() < self.p {
            ep.goal().action().to_string()
        } else {
            ep.expert_action().to_string()
        }
    }
}

/// Random tool calls with words of the current observation as arguments, some
/// unparsable text, and sometimes a final answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomAgent;

impl ScriptedAgent for RandomAgent {
    fn act(&mut self, ep: &Episode, rng: &mut GameRng) -> String {
        let seen = ep.agent_message();
        let words: Vec<&str> = seen
            .split(|c: char| c.is_whitespace() || c == '"' || c == '[' || c == ']')
            .filter(|w| !w.is_empty())
            .collect();
        let word = |rng: &mut GameRng| -> String {
            if words.is_empty() || rng.random_bool(0.2) {
                rng.random_range(0..100u32).to_string()
            } else {
                words[rng.random_range(0..words.len())].to_string()
            }
        };
        let tools: Vec<(&str, &[&str])> = ep.tools().collect();
        match rng.random_range(0..10u32) {
            0 => format!("I think {} is next.", word(rng)),
            1 => format!("{OPEN}{}({}){CLOSE}", word(rng), word(rng)),
            2 => {
                let (name, params) = tools[tools.len() - 1];
                let text = word(rng);
                let args: Vec<(&str, &str)> = params.iter().map(|p| (*p, text.as_str())).collect();
                render_action(name, &args)
            }
            _ => {
                let (name, params) = tools[rng.random_range(0..tools.len() - 1)];
                let values: Vec<String> = params.iter().map(|_| word(rng)).collect();
                let args: Vec<(&str, &str)> = params
                    .iter()
                    .zip(&values)
                    .map(|(p, v)| (*p, v.as_str()))
                    .collect();
                render_action(name, &args)
            }
        }
    }
}

/// Which scripted agent to play: `expert`, `naive:P` or `random` (the built-in suites'),
/// or `oracle` / `obey`, whose actions an environment writes itself
/// ([`crate::environment::EpisodeView::scripted_action`]: AgentDojo plays a user task's
/// ground truth, or the injection task's once an injection was read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AgentKind {
    Expert,
    Naive(f64),
    Random,
    Oracle,
    Obey,
}

impl AgentKind {
    /// Parses `expert`, `naive:P` (0 <= P <= 1) or `random`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let s = spec.trim();
        let invalid = |reason: &str| Error::InvalidAgent {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        match s {
            "expert" => Ok(AgentKind::Expert),
            "random" => Ok(AgentKind::Random),
            "oracle" => Ok(AgentKind::Oracle),
            "obey" => Ok(AgentKind::Obey),
            "naive" => Err(invalid("naive needs an obey probability, e.g. naive:0.5")),
            _ => {
                let p = s
                    .strip_prefix("naive:")
                    .ok_or_else(|| invalid("unknown agent"))?;
                let p: f64 = p
                    .trim()
                    .parse()
                    .map_err(|_| invalid("the obey probability is not a number"))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(invalid("the obey probability must be between 0 and 1"));
                }
                Ok(AgentKind::Naive(p))
            }
        }
    }

    /// The name of an agent the environment plays itself (`oracle`, `obey`).
    pub fn environment_agent(self) -> Option<&'static str> {
        match self {
            AgentKind::Oracle => Some("oracle"),
            AgentKind::Obey => Some("obey"),
            _ => None,
        }
    }

    /// A fresh player of this kind for the built-in suites; `oracle` and `obey` are
    /// played by an environment, not here.
    pub fn build(self) -> Result<Box<dyn ScriptedAgent + Send>, Error> {
        match self {
            AgentKind::Expert => Ok(Box::new(Expert)),
            AgentKind::Naive(p) => Ok(Box::new(Naive::new(p))),
            AgentKind::Random => Ok(Box::new(RandomAgent)),
            AgentKind::Oracle | AgentKind::Obey => Err(Error::InvalidAgent {
                spec: self.to_string(),
                reason: "an environment's own scripted agent (--env agentdojo); the built-in suites have expert, naive:P and random".to_string(),
            }),
        }
    }
}

impl FromStr for AgentKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentKind::Expert => f.write_str("expert"),
            AgentKind::Naive(p) => write!(f, "naive:{p}"),
            AgentKind::Oracle => f.write_str("oracle"),
            AgentKind::Obey => f.write_str("obey"),
            AgentKind::Random => f.write_str("random"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agent_kinds() {
        assert_eq!(AgentKind::parse("expert").unwrap(), AgentKind::Expert);
        assert_eq!(AgentKind::parse(" random ").unwrap(), AgentKind::Random);
        assert_eq!(
            AgentKind::parse("naive:0.5").unwrap(),
            AgentKind::Naive(0.5)
        );
        assert_eq!(AgentKind::parse("naive:1").unwrap().to_string(), "naive:1");
        for (bad, why) in [
            ("naive", "needs an obey probability"),
            ("naive:x", "not a number"),
            ("naive:1.5", "between 0 and 1"),
            ("naive:-0.1", "between 0 and 1"),
            ("clever", "unknown agent"),
        ] {
            let err = AgentKind::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
    }
}
