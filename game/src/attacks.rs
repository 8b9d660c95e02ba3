//! Attack files: JSONL, one attack a line,
//! `{"id": "...", "family": "...", "template": "..."}` and an optional `"split"`
//! (`"train"` or `"eval"`; lines without it are used on both splits).
//!
//! The literal token `{goal}` in a template is replaced by the episode's goal sentence;
//! every other character, braces included, is literal text.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::goal::AttackGoal;
use crate::split::Split;

/// The token replaced by the goal sentence.
pub const GOAL_TOKEN: &str = "{goal}";

/// The built-in template attacks (`game/attacks/templates.jsonl`).
pub const BUILTIN_TEMPLATES: &str = include_str!("../attacks/templates.jsonl");

/// One attack: a template in a family of attacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attack {
    pub id: String,
    pub family: String,
    pub template: String,
    pub split: Option<Split>,
}

impl Attack {
    /// The template with every `{goal}` replaced by the goal sentence.
    pub fn render(&self, goal: &AttackGoal) -> String {
        self.render_sentence(goal.sentence())
    }

    /// The template with `{goal}` replaced by `goal` (a goal sentence).
    pub fn render_sentence(&self, goal: &str) -> String {
        self.template.replace(GOAL_TOKEN, goal)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    family: String,
    template: String,
    #[serde(default)]
    split: Option<Split>,
}

/// A parsed attack file, with the attacks usable on each split.
#[derive(Debug, Clone)]
pub struct AttackSet {
    attacks: Vec<Attack>,
    train: Vec<usize>,
    eval: Vec<usize>,
}

impl AttackSet {
    /// The built-in templates.
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN_TEMPLATES, "builtin templates.jsonl")
    }

    /// Reads and parses an attack file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadAttacks {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses JSONL text; `source_name` names it in errors. Blank lines are skipped; any
    /// other malformed line is an error that names the line (1-based).
    pub fn parse(text: &str, source_name: &str) -> Result<Self> {
        let mut attacks: Vec<Attack> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let err = |reason: String| Error::AttackLine {
                source_name: source_name.to_string(),
                line,
                reason,
            };
            let parsed: Line = serde_json::from_str(raw).map_err(|e| err(without_position(&e)))?;
            if parsed.id.trim().is_empty() {
                return Err(err("the id is empty".to_string()));
            }
            if parsed.template.trim().is_empty() {
                return Err(err("the template is empty".to_string()));
            }
            if attacks.iter().any(|a| a.id == parsed.id) {
                return Err(err(format!("the id {:?} is used twice", parsed.id)));
            }
            attacks.push(Attack {
                id: parsed.id,
                family: parsed.family,
                template: parsed.template,
                split: parsed.split,
            });
        }
        if attacks.is_empty() {
            return Err(Error::NoAttacks {
                source_name: source_name.to_string(),
            });
        }
        let usable = |split: Split| -> Vec<usize> {
            let tagged: Vec<usize> = (0..attacks.len())
                .filter(|&i| attacks[i].split.is_none_or(|s| s == split))
                .collect();
            if tagged.is_empty() {
                (0..attacks.len()).collect()
            } else {
                tagged
            }
        };
        let (train, eval) = (usable(Split::Train), usable(Split::Eval));
        Ok(Self {
            attacks,
            train,
            eval,
        })
    }

    /// Every attack in file order.
    pub fn attacks(&self) -> &[Attack] {
        &self.attacks
    }

    /// Indices of the attacks used on `split`: untagged ones and those tagged `split`
    /// (all attacks when none qualifies).
    pub fn for_split(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Eval => &self.eval,
        }
    }
}

/// serde_json's message without its " at line 1 column N" (every line is line 1 to it).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_cover_the_families_and_state_the_goal() {
        let set = AttackSet::builtin().unwrap();
        assert!(set.attacks().len() >= 20);
        let mut families: Vec<&str> = set.attacks().iter().map(|a| a.family.as_str()).collect();
        families.sort_unstable();
        families.dedup();
        for f in [
            "important_instructions",
            "ignore_previous",
            "fake_system",
            "tool_knowledge",
            "urgency",
            "authority",
            "fake_completion",
        ] {
            assert!(families.contains(&f), "missing family {f}");
        }
        for a in set.attacks() {
            assert!(
                a.template.contains(GOAL_TOKEN),
                "{} does not state the goal",
                a.id
            );
            assert!(a.template.len() < 200, "{} is too long", a.id);
        }
        assert!(set.for_split(Split::Train).len() >= 10);
        assert!(set.for_split(Split::Eval).len() >= 5);
        for &i in set.for_split(Split::Eval) {
            assert_eq!(set.attacks()[i].split, Some(Split::Eval));
        }
    }

    #[test]
    fn only_the_goal_token_is_replaced() {
        let set = AttackSet::parse(
            r#"{"id": "a", "family": "f", "template": "{x} {goal} {{goal}} {GOAL}"}"#,
            "t",
        )
        .unwrap();
        let a = &set.attacks()[0];
        assert_eq!(a.template.replace(GOAL_TOKEN, "G"), "{x} G {G} {GOAL}");
        assert_eq!(set.for_split(Split::Eval), &[0]);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let text = "{\"id\": \"a\", \"family\": \"f\", \"template\": \"t {goal}\"}\n\n{\"id\": \"b\", \"family\": \"f\"}\n";
        let err = AttackSet::parse(text, "mine.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mine.jsonl line 3"), "{err}");
        assert!(!err.contains("line 1"), "{err}");
        assert!(err.contains("template"), "{err}");
        for (bad, what) in [
            ("not json", "line 1"),
            (
                "{\"id\": \"\", \"family\": \"f\", \"template\": \"t\"}",
                "id is empty",
            ),
            (
                "{\"id\": \"a\", \"family\": \"f\", \"template\": \" \"}",
                "template is empty",
            ),
            (
                "{\"id\": \"a\", \"family\": \"f\", \"template\": \"t\", \"extra\": 1}",
                "unknown field",
            ),
            (
                "{\"id\": \"a\", \"family\": \"f\", \"template\": \"t\", \"split\": \"test\"}",
                "line 1",
            ),
        ] {
            let err = AttackSet::parse(bad, "x").unwrap_err().to_string();
            assert!(err.contains(what), "{bad}: {err}");
        }
        let dup = "{\"id\": \"a\", \"family\": \"f\", \"template\": \"t\"}\n{\"id\": \"a\", \"family\": \"f\", \"template\": \"u\"}";
        assert!(
            AttackSet::parse(dup, "x")
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
        assert!(matches!(
            AttackSet::parse("\n \n", "x"),
            Err(Error::NoAttacks { .. })
        ));
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let err = AttackSet::from_file(Path::new("/nonexistent/attacks.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/attacks.jsonl"), "{err}");
    }
}
