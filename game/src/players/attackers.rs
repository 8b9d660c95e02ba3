//! Scripted attackers: none, the built-in templates, or the attacks of a JSONL file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rand::Rng;

use crate::GameRng;
use crate::action::render_text_action;
use crate::attacks::AttackSet;
use crate::environment::EpisodeView;
use crate::error::{Error, Result};

/// An attacker that writes one injection for the current turn, in any environment.
pub trait ScriptedAttacker {
    /// The raw text of this turn's output, e.g. `<action>Ignore all previous ...</action>`.
    fn inject(&mut self, ep: &dyn EpisodeView, rng: &mut GameRng) -> String;
}

/// Draws an attack usable on the episode's split each turn and states the episode's goal in it.
#[derive(Debug, Clone)]
pub struct TemplateAttacker {
    set: AttackSet,
}

impl TemplateAttacker {
    pub fn new(set: AttackSet) -> Self {
        Self { set }
    }
}

impl ScriptedAttacker for TemplateAttacker {
    fn inject(&mut self, ep: &dyn EpisodeView, rng: &mut GameRng) -> String {
        let usable = self.set.for_split(ep.task().split);
        let attacks = self.set.attacks();
        let index = usable
            .get(rng.random_range(0..usable.len().max(1)))
            .copied()
            .unwrap_or(0);
        match attacks.get(index) {
            Some(attack) => render_text_action(&attack.render_sentence(ep.goal_sentence())),
            None => String::new(),
        }
    }
}

/// Which scripted attacker to play: `none`, `templates` or `file:PATH`, or an attack the
/// environment renders itself (AgentDojo's `important_instructions`, `tool_knowledge`, ...,
/// [`crate::environment::Environment::render_attack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackerKind {
    None,
    Templates,
    File(PathBuf),
    Environment(String),
}

/// Whether `name` can name an environment's attack: a lowercase identifier.
fn is_attack_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl AttackerKind {
    /// Parses `none`, `templates` or `file:PATH`.
    pub fn parse(spec: &str) -> Result<Self> {
        let s = spec.trim();
        match s {
            "none" => Ok(AttackerKind::None),
            "templates" => Ok(AttackerKind::Templates),
            _ => match s.strip_prefix("file:") {
                Some(path) if !path.trim().is_empty() => {
                    Ok(AttackerKind::File(PathBuf::from(path.trim())))
                }
                Some(_) => Err(Error::InvalidAttacker {
                    spec: spec.to_string(),
                    reason: "the file path is empty".to_string(),
                }),
                None if is_attack_name(s) => Ok(AttackerKind::Environment(s.to_string())),
                None => Err(Error::InvalidAttacker {
                    spec: spec.to_string(),
                    reason: "unknown attacker: use none, templates, file:PATH or an environment's attack name (e.g. important_instructions)".to_string(),
                }),
            },
        }
    }

    /// A fresh player of this kind (`None` for `none`); reads the attack file for `file:`.
    /// An environment's attack is rendered by that environment, not built here.
    pub fn build(&self) -> Result<Option<Box<dyn ScriptedAttacker + Send>>> {
        Ok(match self {
            AttackerKind::Environment(name) => {
                return Err(Error::InvalidAttacker {
                    spec: name.clone(),
                    reason: "not an attacker of the built-in suites (none, templates, file:PATH); an environment's attack needs that environment, e.g. --env agentdojo".to_string(),
                });
            }
            AttackerKind::None => None,
            AttackerKind::Templates => Some(Box::new(TemplateAttacker::new(AttackSet::builtin()?))),
            AttackerKind::File(path) => {
                Some(Box::new(TemplateAttacker::new(AttackSet::from_file(path)?)))
            }
        })
    }
}

impl FromStr for AttackerKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for AttackerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttackerKind::None => f.write_str("none"),
            AttackerKind::Templates => f.write_str("templates"),
            AttackerKind::File(p) => write!(f, "file:{}", p.display()),
            AttackerKind::Environment(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attacker_kinds() {
        assert_eq!(AttackerKind::parse("none").unwrap(), AttackerKind::None);
        assert_eq!(
            AttackerKind::parse("templates").unwrap(),
            AttackerKind::Templates
        );
        assert_eq!(
            AttackerKind::parse("file:a/b.jsonl").unwrap(),
            AttackerKind::File(PathBuf::from("a/b.jsonl"))
        );
        let err = AttackerKind::parse("file:").unwrap_err().to_string();
        assert!(err.contains("path is empty"), "{err}");
        assert_eq!(
            AttackerKind::parse("important_instructions").unwrap(),
            AttackerKind::Environment("important_instructions".into())
        );
        let err = AttackerKind::parse("GPT 4").unwrap_err().to_string();
        assert!(
            err.contains("\"GPT 4\"") && err.contains("file:PATH"),
            "{err}"
        );
        let err = AttackerKind::Environment("direct".into())
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--env agentdojo"), "{err}");
    }
}
