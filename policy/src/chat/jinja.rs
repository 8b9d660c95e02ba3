//! A model's own chat template: the `chat_template` of its `tokenizer_config.json` (or its
//! GGUF), rendered as transformers renders it — Jinja with `trim_blocks` and `lstrip_blocks`,
//! Python's string methods, `raise_exception`, and a `tojson` that writes JSON as Python's
//! `json.dumps` does.
//!
//! Variables every render gets besides `messages` and `add_generation_prompt`:
//! `bos_token`, `eos_token` (from the tokenizer config) and `enable_thinking = false` (Qwen3
//! opens an empty thinking block and the model answers directly). `strftime_now` is not
//! defined, so templates that print a date (Llama 3.x) print their fixed default and a run's
//! prompts do not change from day to day.

use std::ops::Range;

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, context};

use crate::error::{Error, Result};

const NAME: &str = "chat_template";

/// Stands for the assistant's last message while rendering what follows it.
const SENTINEL: &str = "\u{2063}ARLAS_ASSISTANT_MESSAGE\u{2063}";

/// A compiled chat template and the special tokens it is rendered with.
#[derive(Debug)]
pub struct JinjaChat {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl JinjaChat {
    /// Compiles `source`; a syntax error is an error naming the line.
    pub fn new(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| template_error(&e))?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos_token,
            eos_token,
        })
    }

    /// The template's text, as read.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Renders `messages` (role, content) and, if asked, the assistant's generation prompt.
    pub fn render(&self, messages: &[(&str, &str)], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| context! { role => role, content => content })
            .collect();
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&e))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
                enable_thinking => false,
            })
            .map_err(|e| template_error(&e))
    }
}

/// A rendering and the byte ranges in it that are messages' contents (as the template wrote
/// them, trimmed or not); the rest is the template's own text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub contents: Vec<Range<usize>>,
}

impl JinjaChat {
    /// The opening prompt: the system message (if any), the first user message and the
    /// generation prompt, rendered together.
    pub fn opening(&self, system: Option<&str>, user: &str) -> Result<Rendered> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = system {
            messages.push(("system", system));
        }
        messages.push(("user", user));
        let all: Vec<usize> = (0..messages.len()).collect();
        self.render_split(&messages, true, &all)
    }

    /// What the template writes after the last message of `history` (an assistant message)
    /// when `user` follows, with the generation prompt: the end of the assistant's turn,
    /// the user message, the opening of the next assistant turn.
    pub fn after_assistant(&self, history: &[(&str, &str)], user: &str) -> Result<Rendered> {
        let Some((last, earlier)) = history.split_last() else {
            return Err(Error::InvalidInput(
                "a next turn needs the conversation so far".into(),
            ));
        };
        if last.0 != "assistant" {
            return Err(Error::InvalidInput(format!(
                "a next turn comes after an assistant message, not after a {} message",
                last.0
            )));
        }
        let mut messages = earlier.to_vec();
        messages.push(("assistant", SENTINEL));
        messages.push(("user", user));
        let whole = self.render_split(&messages, true, &[messages.len() - 1])?;
        let cut = after_sentinel(&whole.text)?;
        Ok(Rendered {
            text: whole.text[cut..].to_string(),
            contents: whole
                .contents
                .iter()
                .filter(|r| r.start >= cut)
                .map(|r| r.start - cut..r.end - cut)
                .collect(),
        })
    }

    /// What the template writes right after an assistant message (its turn end, as in
    /// `<|im_end|>\n`): empty when it writes nothing.
    pub fn assistant_end(&self) -> Result<String> {
        let text = self.render(&[("user", "x"), ("assistant", SENTINEL)], false)?;
        let cut = after_sentinel(&text)?;
        Ok(text[cut..].to_string())
    }

    /// Renders `messages` and finds where the contents of the messages `marked` landed:
    /// a second rendering with a marker in place of each of them shows the template's own
    /// text around it, and each content is matched as given or trimmed, as templates write
    /// them.
    pub fn render_split(
        &self,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
        marked: &[usize],
    ) -> Result<Rendered> {
        let text = self.render(messages, add_generation_prompt)?;
        let markers: Vec<String> = (0..messages.len()).map(marker).collect();
        let skeleton_messages: Vec<(&str, &str)> = messages
            .iter()
            .enumerate()
            .map(|(i, (role, content))| {
                (
                    *role,
                    if marked.contains(&i) {
                        markers[i].as_str()
                    } else {
                        content
                    },
                )
            })
            .collect();
        let skeleton = self.render(&skeleton_messages, add_generation_prompt)?;
        let pieces = split_markers(&skeleton, &markers);
        let mut pos = 0;
        let mut contents = Vec::new();
        for (k, piece) in pieces.iter().enumerate() {
            match piece {
                Piece::Text(t) => {
                    if !text[pos..].starts_with(t.as_str()) {
                        return Err(unaligned(None));
                    }
                    pos += t.len();
                }
                Piece::Marker(i) => {
                    let next = match pieces.get(k + 1) {
                        Some(Piece::Text(t)) => Some(t.as_str()),
                        Some(Piece::Marker(_)) => return Err(unaligned(Some(*i))),
                        None => None,
                    };
                    let content = messages[*i].1;
                    let fits = |c: &&str| {
                        let rest = &text[pos..];
                        rest.starts_with(*c)
                            && next
                                .map_or(rest.len() == c.len(), |n| rest[c.len()..].starts_with(n))
                    };
                    let written = [
                        content,
                        content.trim(),
                        content.trim_start(),
                        content.trim_end(),
                    ]
                    .into_iter()
                    .find(fits)
                    .ok_or_else(|| unaligned(Some(*i)))?;
                    if !written.is_empty() {
                        contents.push(pos..pos + written.len());
                    }
                    pos += written.len();
                }
            }
        }
        if pos != text.len() {
            return Err(unaligned(None));
        }
        Ok(Rendered { text, contents })
    }
}

fn marker(i: usize) -> String {
    format!("\u{2063}ARLAS_MESSAGE_{i}\u{2063}")
}

enum Piece {
    Text(String),
    Marker(usize),
}

/// The skeleton as template text and markers, in order.
fn split_markers(skeleton: &str, markers: &[String]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = skeleton;
    loop {
        let next = markers
            .iter()
            .enumerate()
            .filter_map(|(i, m)| rest.find(m.as_str()).map(|at| (at, i, m.len())))
            .min();
        let Some((at, i, len)) = next else {
            if !rest.is_empty() {
                pieces.push(Piece::Text(rest.to_string()));
            }
            return pieces;
        };
        if at > 0 {
            pieces.push(Piece::Text(rest[..at].to_string()));
        }
        pieces.push(Piece::Marker(i));
        rest = &rest[at + len..];
    }
}

fn unaligned(message: Option<usize>) -> Error {
    Error::InvalidInput(match message {
        Some(i) => format!(
            "the chat template changes message {i} beyond trimming it, so arlas cannot keep \
             its content apart from the template's control text"
        ),
        None => "the chat template renders differently around a message's content; arlas \
                 cannot keep contents apart from the template's control text"
            .to_string(),
    })
}

/// Where the text after the sentinel (the assistant's last message) starts.
fn after_sentinel(text: &str) -> Result<usize> {
    text.rfind(SENTINEL)
        .map(|at| at + SENTINEL.len())
        .ok_or_else(dropped_sentinel)
}

fn dropped_sentinel() -> Error {
    Error::InvalidInput(
        "the chat template does not write the assistant's message as given (it changed or \
         dropped it), so turns cannot be appended"
            .into(),
    )
}

fn template_error(e: &minijinja::Error) -> Error {
    let mut msg = format!("chat template: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        msg.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    Error::InvalidInput(msg)
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' `tojson`: `json.dumps(value, ensure_ascii=False)`, whose separators are
/// `", "` and `": "`, keys in their given order.
fn tojson(value: Value) -> std::result::Result<Value, minijinja::Error> {
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_python_json(&json, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_python_json(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(item, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_python_json(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_writes_python_separators() {
        let chat = JinjaChat::new("{{ x | tojson }}", None, None).unwrap();
        let env = &chat.env;
        let out = env
            .render_str(
                "{{ x | tojson }}",
                context! { x => serde_json::json!({"a": [1, "é<"], "b": null}) },
            )
            .unwrap();
        assert_eq!(out, r#"{"a": [1, "é<"], "b": null}"#);
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_errors() {
        let chat =
            JinjaChat::new("{{ raise_exception('roles must alternate') }}", None, None).unwrap();
        let err = chat
            .render(&[("user", "hi")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("roles must alternate"), "{err}");
        let err = JinjaChat::new("{% for m in messages %}", None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chat template"), "{err}");
    }
}
