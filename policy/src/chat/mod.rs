//! `ChatTemplate`: renders conversation segments to token ids, one segment at a time.
//!
//! The actor appends segments turn by turn and never re-tokenizes history (DESIGN.md
//! section 5). Each segment's ids equal what tokenizing the whole rendered conversation
//! would give, because every segment starts and ends at a control token or a lone newline.
//!
//! A model that ships a `chat_template` is rendered with it ([`jinja`]): the opening prompt
//! is the template's rendering of the system and first user message, and each later segment
//! is what the template writes after the assistant's previous message (found with a
//! sentinel in its place), so the sampled ids are kept as sampled. The built-in formats
//! serve models without a template.

mod jinja;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenizer::PolicyTokenizer;
pub use jinja::{JinjaChat, Rendered};

/// The conversation format of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatFormat {
    /// `tiny` models: `<|system|>text<|end|>`, `<|user|>text<|end|>`, `<|assistant|>text<|end|>`.
    Tiny,
    /// ChatML (SmolLM2, Qwen2): `<|im_start|>role\ntext<|im_end|>\n`.
    ChatMl,
    /// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\ntext<|eot_id|>`, BOS first.
    Llama3,
    /// No control tokens: `role: text\n`.
    Plain,
    /// The model's own Jinja `chat_template` (kept in its `tokenizer_config.json`).
    Template,
}

impl ChatFormat {
    /// Guesses the format from a Hugging Face `chat_template` string and the vocabulary.
    pub fn detect(chat_template: Option<&str>, tokenizer: &PolicyTokenizer) -> Self {
        let template = chat_template.unwrap_or_default();
        if template.contains("<|im_start|>") {
            Self::ChatMl
        } else if template.contains("<|start_header_id|>") {
            Self::Llama3
        } else if tokenizer.token_id("<|assistant|>").is_some()
            && tokenizer.token_id("<|end|>").is_some()
        {
            Self::Tiny
        } else if tokenizer.token_id("<|im_start|>").is_some() {
            Self::ChatMl
        } else {
            Self::Plain
        }
    }

    /// The Hugging Face (jinja) chat template equivalent, for `tokenizer_config.json`
    /// (`None` for [`ChatFormat::Template`], whose text is the model's own).
    pub fn jinja(self) -> Option<&'static str> {
        Some(match self {
            Self::Template => return None,
            Self::Tiny => {
                "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
            }
            Self::ChatMl => {
                "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
            }
            Self::Llama3 => {
                "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
            }
            Self::Plain => {
                "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
            }
        })
    }
}

/// Renders chat segments of one model to ids (cheap to clone).
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    format: ChatFormat,
    tokenizer: PolicyTokenizer,
    /// Control ids: (turn start, turn end, bos).
    start: Option<u32>,
    end: Option<u32>,
    bos: Option<u32>,
    /// The model's own template ([`ChatFormat::Template`]).
    jinja: Option<Arc<JinjaChat>>,
}

impl ChatTemplate {
    /// A template of `format` over `tokenizer`; fails if the control tokens are missing.
    pub fn new(format: ChatFormat, tokenizer: PolicyTokenizer) -> Result<Self> {
        let need = |t: &str| {
            tokenizer.token_id(t).ok_or_else(|| {
                Error::Tokenizer(format!(
                    "chat format {format:?} needs the token {t:?}, which the vocabulary lacks"
                ))
            })
        };
        let (start, end, bos) = match format {
            ChatFormat::Tiny => (None, Some(need("<|end|>")?), None),
            ChatFormat::ChatMl => (Some(need("<|im_start|>")?), Some(need("<|im_end|>")?), None),
            ChatFormat::Llama3 => (
                Some(need("<|start_header_id|>")?),
                Some(need("<|eot_id|>")?),
                Some(need("<|begin_of_text|>")?),
            ),
            ChatFormat::Plain => (None, None, None),
            ChatFormat::Template => {
                return Err(Error::Tokenizer(
                    "a template format needs its template: use ChatTemplate::from_jinja".into(),
                ));
            }
        };
        Ok(Self {
            format,
            tokenizer,
            start,
            end,
            bos,
            jinja: None,
        })
    }

    /// The model's own template over `tokenizer`. Its turn-end id is the first token the
    /// template writes after an assistant message when that is a control token
    /// (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, ...); a template that ends turns with
    /// plain text (a newline) has none, so generation is not cut at the first newline.
    pub fn from_jinja(jinja: JinjaChat, tokenizer: PolicyTokenizer) -> Result<Self> {
        let end = tokenizer
            .encode_rendered(&jinja.assistant_end()?, &[])?
            .first()
            .copied()
            .filter(|&id| tokenizer.is_added(id));
        Ok(Self {
            format: ChatFormat::Template,
            tokenizer,
            start: None,
            end,
            bos: None,
            jinja: Some(Arc::new(jinja)),
        })
    }

    /// The model's own template, when it has one.
    pub fn jinja(&self) -> Option<&JinjaChat> {
        self.jinja.as_deref()
    }

    /// The opening prompt of a conversation: the system message (if any), the first user
    /// message and the assistant's generation prompt.
    pub fn prompt(&self, system: Option<&str>, user: &str) -> Result<Vec<u32>> {
        if let Some(jinja) = &self.jinja {
            return self.encode_rendered(&jinja.opening(system, user)?);
        }
        let mut ids = self.begin();
        if let Some(system) = system {
            ids.extend(self.system(system)?);
        }
        ids.extend(self.user(user)?);
        ids.extend(self.assistant_prefix()?);
        Ok(ids)
    }

    /// What follows the assistant's last completion when the next user message comes: the
    /// end of the assistant's turn, the user message and the generation prompt. `history`
    /// is the conversation so far (system first if any), ending with the assistant message.
    pub fn next_turn(&self, history: &[(&str, &str)], user: &str) -> Result<Vec<u32>> {
        let Some(jinja) = &self.jinja else {
            let mut ids = self.assistant_end()?;
            ids.extend(self.user(user)?);
            ids.extend(self.assistant_prefix()?);
            return Ok(ids);
        };
        self.encode_rendered(&jinja.after_assistant(history, user)?)
    }

    fn encode_rendered(&self, rendered: &Rendered) -> Result<Vec<u32>> {
        self.tokenizer
            .encode_rendered(&rendered.text, &rendered.contents)
    }

    pub fn format(&self) -> ChatFormat {
        self.format
    }

    pub fn tokenizer(&self) -> &PolicyTokenizer {
        &self.tokenizer
    }

    /// The id that ends a turn (generation treats it as end of sequence), if any.
    pub fn turn_end_id(&self) -> Option<u32> {
        self.end
    }

    /// What starts a conversation (BOS for Llama 3, nothing otherwise; nothing for a
    /// model's own template, whose opening comes with [`ChatTemplate::prompt`]).
    pub fn begin(&self) -> Vec<u32> {
        self.bos.into_iter().collect()
    }

    /// A model's own template renders whole conversations, not lone turns.
    fn stateless(&self) -> Result<()> {
        match self.jinja {
            Some(_) => Err(Error::InvalidInput(
                "this model's own chat template renders whole conversations: use \
                 ChatTemplate::prompt and next_turn (or render)"
                    .into(),
            )),
            None => Ok(()),
        }
    }

    /// A system turn.
    pub fn system(&self, text: &str) -> Result<Vec<u32>> {
        self.turn("system", text)
    }

    /// A user turn.
    pub fn user(&self, text: &str) -> Result<Vec<u32>> {
        self.turn("user", text)
    }

    /// A whole assistant turn (for demonstrations): prefix, text, end.
    pub fn assistant(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.assistant_prefix()?;
        ids.extend(self.tokenizer.encode(text)?);
        ids.extend(self.assistant_end()?);
        Ok(ids)
    }

    /// What opens the assistant's turn; the completion is sampled after it.
    pub fn assistant_prefix(&self) -> Result<Vec<u32>> {
        self.stateless()?;
        match self.format {
            ChatFormat::Template => unreachable_template(),
            ChatFormat::Tiny => self.control("<|assistant|>").map(|id| vec![id]),
            ChatFormat::ChatMl => Ok(self.with_start(self.tokenizer.encode("assistant\n")?)),
            ChatFormat::Llama3 => self.llama3_header("assistant"),
            ChatFormat::Plain => self.tokenizer.encode("assistant: "),
        }
    }

    /// What closes the assistant's turn after its completion.
    pub fn assistant_end(&self) -> Result<Vec<u32>> {
        self.end_of_turn()
    }

    /// Renders a whole conversation `(role, text)` and, if asked, the assistant prefix.
    pub fn render(
        &self,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        if let Some(jinja) = &self.jinja {
            let all: Vec<usize> = (0..messages.len()).collect();
            return self.encode_rendered(&jinja.render_split(
                messages,
                add_generation_prompt,
                &all,
            )?);
        }
        let mut ids = self.begin();
        for (role, text) in messages {
            match *role {
                "assistant" => ids.extend(self.assistant(text)?),
                other => ids.extend(self.turn(other, text)?),
            }
        }
        if add_generation_prompt {
            ids.extend(self.assistant_prefix()?);
        }
        Ok(ids)
    }

    fn turn(&self, role: &str, text: &str) -> Result<Vec<u32>> {
        self.stateless()?;
        let mut ids = match self.format {
            ChatFormat::Template => return unreachable_template(),
            ChatFormat::Tiny => {
                let mut ids = vec![self.control(&format!("<|{role}|>"))?];
                ids.extend(self.tokenizer.encode(text)?);
                ids
            }
            ChatFormat::ChatMl => {
                self.with_start(self.tokenizer.encode(&format!("{role}\n{text}"))?)
            }
            ChatFormat::Llama3 => {
                let mut ids = self.llama3_header(role)?;
                // The header already ended with "\n\n"; HF tokenizes it together with the text.
                ids.truncate(ids.len() - self.tokenizer.encode("\n\n")?.len());
                ids.extend(self.tokenizer.encode(&format!("\n\n{text}"))?);
                ids
            }
            ChatFormat::Plain => self.tokenizer.encode(&format!("{role}: {text}"))?,
        };
        ids.extend(self.end_of_turn()?);
        Ok(ids)
    }

    fn end_of_turn(&self) -> Result<Vec<u32>> {
        self.stateless()?;
        Ok(match self.format {
            ChatFormat::Template => return unreachable_template(),
            ChatFormat::Tiny | ChatFormat::Llama3 => self.end.into_iter().collect(),
            ChatFormat::ChatMl => {
                let mut ids: Vec<u32> = self.end.into_iter().collect();
                ids.extend(self.tokenizer.encode("\n")?);
                ids
            }
            ChatFormat::Plain => self.tokenizer.encode("\n")?,
        })
    }

    fn with_start(&self, body: Vec<u32>) -> Vec<u32> {
        let mut ids: Vec<u32> = self.start.into_iter().collect();
        ids.extend(body);
        ids
    }

    fn llama3_header(&self, role: &str) -> Result<Vec<u32>> {
        let mut ids = self.with_start(self.tokenizer.encode(role)?);
        ids.push(self.control("<|end_header_id|>")?);
        ids.extend(self.tokenizer.encode("\n\n")?);
        Ok(ids)
    }

    fn control(&self, token: &str) -> Result<u32> {
        self.tokenizer.token_id(token).ok_or_else(|| {
            Error::InvalidInput(format!(
                "chat role token {token:?} does not exist in this vocabulary: use system, user or assistant"
            ))
        })
    }
}

/// A [`ChatFormat::Template`] always carries its template, which `stateless` refuses first.
fn unreachable_template<T>() -> Result<T> {
    Err(Error::InvalidInput(
        "a template chat has no built-in turn format".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{tests::corpus, train_tiny_tokenizer};

    fn tiny() -> ChatTemplate {
        let tok = PolicyTokenizer::new(train_tiny_tokenizer(corpus().into_iter(), 600).unwrap());
        ChatTemplate::new(ChatFormat::Tiny, tok).unwrap()
    }

    #[test]
    fn incremental_segments_equal_whole_conversation() {
        let chat = tiny();
        let mut incremental = chat.begin();
        incremental.extend(chat.system("You are an agent.").unwrap());
        incremental.extend(chat.user("Task: read_email").unwrap());
        incremental.extend(chat.assistant_prefix().unwrap());
        incremental.extend(chat.tokenizer().encode("<action>reply()</action>").unwrap());
        incremental.extend(chat.assistant_end().unwrap());
        let whole = chat
            .render(
                &[
                    ("system", "You are an agent."),
                    ("user", "Task: read_email"),
                    ("assistant", "<action>reply()</action>"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(incremental, whole);
        let text = chat.tokenizer().decode(&whole, false).unwrap();
        assert_eq!(
            text,
            "<|system|>You are an agent.<|end|><|user|>Task: read_email<|end|><|assistant|><action>reply()</action><|end|>"
        );
        assert_eq!(chat.turn_end_id(), chat.tokenizer().token_id("<|end|>"));
    }

    #[test]
    fn a_template_turn_end_is_a_control_token_or_none() {
        let tok = tiny().tokenizer().clone();
        let ends_with = |end: &str| {
            let source = format!(
                "{{% for m in messages %}}{{{{ m.role }}}}: {{{{ m.content }}}}{end}{{% endfor %}}"
            );
            let jinja = JinjaChat::new(&source, None, None).unwrap();
            ChatTemplate::from_jinja(jinja, tok.clone())
                .unwrap()
                .turn_end_id()
        };
        assert_eq!(ends_with("<|end|>\n"), tok.token_id("<|end|>"));
        // A plain newline must not become a stop token.
        assert_eq!(ends_with("\n"), None);
    }

    #[test]
    fn detects_formats() {
        let chat = tiny();
        assert_eq!(ChatFormat::detect(None, chat.tokenizer()), ChatFormat::Tiny);
        assert_eq!(
            ChatFormat::detect(Some("{{'<|im_start|>'}}"), chat.tokenizer()),
            ChatFormat::ChatMl
        );
        assert!(ChatTemplate::new(ChatFormat::ChatMl, chat.tokenizer().clone()).is_err());
    }
}
