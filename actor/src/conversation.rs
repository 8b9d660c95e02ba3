//! Token-exact conversations.
//!
//! A [`Conversation`] grows by segments: the prompt tokens appended before a completion
//! (system, user message, assistant prefix; later the end of the previous assistant turn
//! and the next user message) and the completion itself. Nothing is ever re-tokenized: the
//! full sequence is the concatenation of what was appended, which is exactly what the
//! policy was fed and what it sampled. The messages' texts are kept beside the ids, for
//! chat templates that render what follows a message from the conversation so far.

use arlas_policy::ChatTemplate;

use crate::error::Result;
use arlas_core::Segment;

/// A conversation being built, turn by turn.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// Every id so far (prompts and completions).
    tokens: Vec<u32>,
    /// Prompt ids appended since the last completion.
    pending: Vec<u32>,
    /// Finished turns.
    segments: Vec<Segment>,
    /// Whether the last completion already ended with the end-of-turn id.
    ended_turn: bool,
    /// (role, text) of every message so far, the system message first; an assistant
    /// message is its completion decoded.
    messages: Vec<(&'static str, String)>,
}

impl Conversation {
    /// Starts a conversation with the system message; its ids come with the first user
    /// message (some templates fold the system message into it).
    pub fn new(_chat: &ChatTemplate, system: &str) -> Result<Self> {
        Ok(Self {
            messages: vec![("system", system.to_string())],
            ..Self::default()
        })
    }

    fn push_prompt(&mut self, ids: &[u32]) {
        self.tokens.extend_from_slice(ids);
        self.pending.extend_from_slice(ids);
    }

    /// Appends a user message and the assistant prefix; closes the previous assistant turn
    /// first if there was one. Returns the whole sequence to generate from.
    pub fn push_user(&mut self, chat: &ChatTemplate, text: &str) -> Result<&[u32]> {
        let ids = if self.segments.is_empty() {
            let system = self.messages.first().map(|(_, s)| s.as_str());
            chat.prompt(system, text)?
        } else {
            let history: Vec<(&str, &str)> = self
                .messages
                .iter()
                .map(|(r, t)| (*r, t.as_str()))
                .collect();
            let mut ids = chat.next_turn(&history, text)?;
            if self.ended_turn && ids.first().copied() == chat.turn_end_id() {
                ids.remove(0);
            }
            ids
        };
        self.push_prompt(&ids);
        self.messages.push(("user", text.to_string()));
        Ok(&self.tokens)
    }

    /// Records the completion sampled (or demonstrated) after the last user message.
    pub fn push_completion(&mut self, chat: &ChatTemplate, completion: &[u32], logprobs: &[f32]) {
        // Text only matters to templates that read earlier messages; an undecodable
        // completion (never from a real tokenizer's ids) counts as empty.
        let text = chat
            .tokenizer()
            .decode(completion, true)
            .unwrap_or_default();
        self.messages.push(("assistant", text));
        self.tokens.extend_from_slice(completion);
        self.ended_turn = completion.last().copied().is_some()
            && completion.last().copied() == chat.turn_end_id();
        self.segments.push(Segment {
            prompt: std::mem::take(&mut self.pending),
            completion: completion.to_vec(),
            logprobs: logprobs.to_vec(),
        });
    }

    /// The whole sequence so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The finished turns.
    pub fn into_segments(self) -> Vec<Segment> {
        self.segments
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// A single-turn prompt: opening ids, system, user message, assistant prefix.
pub fn single_turn_prompt(chat: &ChatTemplate, system: &str, user: &str) -> Result<Vec<u32>> {
    Ok(chat.prompt(Some(system), user)?)
}
