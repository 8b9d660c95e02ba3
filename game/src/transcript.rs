//! A played episode as text: what each player saw and wrote, and the outcome.

use std::fmt;

use serde::Serialize;

use crate::episode::EpisodeSpec;
use crate::judge::{Outcome, Rewards};

/// One turn: the attacker's message and output (absent without an attacker), then the
/// agent's message and output.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    pub attacker_message: Option<String>,
    pub attacker_output: Option<String>,
    pub agent_message: String,
    pub agent_output: String,
}

/// A whole episode, in the order the players saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub spec: EpisodeSpec,
    pub agent_system_prompt: String,
    pub attacker_system_prompt: Option<String>,
    pub goal: String,
    pub turns: Vec<TurnRecord>,
    pub outcome: Outcome,
    pub rewards: Rewards,
    pub format_errors: u32,
    pub attacker_format_errors: u32,
}

impl Transcript {
    /// Every text a model reads or writes in this episode, one after another: the corpus
    /// form used to train tokenizers.
    pub fn corpus_text(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(&self.agent_system_prompt);
        out.push('\n');
        if let Some(s) = &self.attacker_system_prompt {
            out.push_str(s);
            out.push('\n');
        }
        for t in &self.turns {
            for part in [&t.attacker_message, &t.attacker_output]
                .into_iter()
                .flatten()
            {
                out.push_str(part);
                out.push('\n');
            }
            out.push_str(&t.agent_message);
            out.push('\n');
            out.push_str(&t.agent_output);
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.spec;
        writeln!(
            f,
            "=== episode {}/{} split={} seed={} ===",
            s.suite, s.template, s.split, s.seed
        )?;
        writeln!(f, "goal: {}", self.goal)?;
        writeln!(
            f,
            "--- agent system prompt ---\n{}",
            self.agent_system_prompt
        )?;
        if let Some(p) = &self.attacker_system_prompt {
            writeln!(f, "--- attacker system prompt ---\n{p}")?;
        }
        for (n, t) in self.turns.iter().enumerate() {
            writeln!(f, "--- turn {} ---", n + 1)?;
            if let Some(m) = &t.attacker_message {
                writeln!(f, "[attacker sees]\n{m}")?;
            }
            if let Some(o) = &t.attacker_output {
                writeln!(f, "[attacker writes]\n{o}")?;
            }
            writeln!(f, "[agent sees]\n{}", t.agent_message)?;
            writeln!(f, "[agent writes]\n{}", t.agent_output)?;
        }
        writeln!(
            f,
            "=== outcome: {} | rewards: attacker {:+}, agent {:+} | turns: {} | format errors: agent {}, attacker {} ===",
            self.outcome,
            self.rewards.attacker,
            self.rewards.agent,
            self.turns.len(),
            self.format_errors,
            self.attacker_format_errors
        )
    }
}
