//! Token-exact conversations.
//!
//! A [`Conversation`] grows by segments: the prompt tokens appended before a completion
//! (system, user message, assistant prefix; later the end of the previous assistant turn
//! and the next user message) and the completion itself. Nothing is ever re-tokenized: the
//! full sequence is the concatenation of what was appended, which is exactly what the
//! policy was fed and what it sampled.

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
}

impl Conversation {
    /// Starts with the chat's opening ids and the system message.
    pub fn new(chat: &ChatTemplate, system: &str) -> Result<Self> {
        let mut c = Self::default();
        c.push_prompt(&chat.begin());
        c.push_prompt(&chat.system(system)?);
        Ok(c)
    }

    fn push_prompt(&mut self, ids: &[u32]) {
        self.tokens.extend_from_slice(ids);
        self.pending.extend_from_slice(ids);
    }

    /// Appends a user message and the assistant prefix; closes the previous assistant turn
    /// first if there was one. Returns the whole sequence to generate from.
    pub fn push_user(&mut self, chat: &ChatTemplate, text: &str) -> Result<&[u32]> {
        if !self.segments.is_empty() {
            let mut end = chat.assistant_end()?;
            if self.ended_turn && end.first().copied() == chat.turn_end_id() {
                end.remove(0);
            }
            self.push_prompt(&end);
        }
        self.push_prompt(&chat.user(text)?);
        self.push_prompt(&chat.assistant_prefix()?);
        Ok(&self.tokens)
    }

    /// Records the completion sampled (or demonstrated) after the last user message.
    pub fn push_completion(&mut self, chat: &ChatTemplate, completion: &[u32], logprobs: &[f32]) {
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
    let mut ids = chat.begin();
    ids.extend(chat.system(system)?);
    ids.extend(chat.user(user)?);
    ids.extend(chat.assistant_prefix()?);
    Ok(ids)
}
