//! The text protocol: `<action>tool(arg="value", ...)</action>`.
//!
//! Both players write inside `<action>` tags. The sampler stops at `</action>`, so the
//! closing tag is optional; text before the opening tag is ignored. The agent's action is a
//! call with keyword arguments whose values are double-quoted strings (`\"`, `\\` and `\n`
//! are the only escapes); the attacker's action is free text, the injection.

use crate::text::snippet;

/// Opening tag of every action.
pub const OPEN: &str = "<action>";
/// Closing tag; also the sampler's stop string.
pub const CLOSE: &str = "</action>";

/// The text inside the first `<action>` tag: up to `</action>`, or to the end of `raw`
/// when the closing tag is missing. `None` when there is no opening tag.
pub fn extract_action(raw: &str) -> Option<&str> {
    let start = raw.find(OPEN)? + OPEN.len();
    let rest = &raw[start..];
    Some(match rest.find(CLOSE) {
        Some(end) => &rest[..end],
        None => rest,
    })
}

/// A parsed tool call: the tool's name and its keyword arguments in written order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub tool: String,
    pub args: Vec<(String, String)>,
}

/// Why an action could not be parsed; the message is shown to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the action is empty")]
    Empty,
    #[error("the action must start with a tool name, found {0:?}")]
    ToolName(String),
    #[error("expected '(' after the tool name {0}")]
    OpenParen(String),
    #[error("expected an argument name like to=\"...\", found {0:?}")]
    ArgName(String),
    #[error("expected '=' after the argument name {0}")]
    Equals(String),
    #[error("the value of {0} must be in double quotes")]
    Quote(String),
    #[error("the value of {0} has no closing quote")]
    Unterminated(String),
    #[error("expected ',' or ')' after the argument {0}")]
    Separator(String),
    #[error("missing ')' at the end of the call")]
    MissingParen,
    #[error("unexpected text after ')': {0:?}")]
    Trailing(String),
}

const SNIPPET: usize = 24;

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    let start = i;
    while let Some(&c) = b.get(i) {
        let ok = c == b'_' || c.is_ascii_alphabetic() || (i > start && c.is_ascii_digit());
        if !ok {
            break;
        }
        i += 1;
    }
    i
}

/// Parses the inside of an agent action, e.g. `send_money(to="DE12", amount="5.00")`.
///
/// Works on bytes but only ever slices at ASCII bytes, so any UTF-8 input is safe.
pub fn parse_call(text: &str) -> Result<Call, ParseError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let b = s.as_bytes();
    let name_end = ident_end(b, 0);
    if name_end == 0 {
        return Err(ParseError::ToolName(snippet(s, SNIPPET).to_string()));
    }
    let tool = s[..name_end].to_string();
    let mut i = skip_ws(b, name_end);
    if b.get(i) != Some(&b'(') {
        return Err(ParseError::OpenParen(snippet(&tool, SNIPPET).to_string()));
    }
    i += 1;
    let mut args = Vec::new();
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b')') => {
                i += 1;
                break;
            }
            None => return Err(ParseError::MissingParen),
            Some(_) => {}
        }
        let end = ident_end(b, i);
        if end == i {
            return Err(ParseError::ArgName(snippet(&s[i..], SNIPPET).to_string()));
        }
        let name = &s[i..end];
        let shown = || snippet(name, SNIPPET).to_string();
        i = skip_ws(b, end);
        if b.get(i) != Some(&b'=') {
            return Err(ParseError::Equals(shown()));
        }
        i = skip_ws(b, i + 1);
        if b.get(i) != Some(&b'"') {
            return Err(ParseError::Quote(shown()));
        }
        i += 1;
        let mut value = String::new();
        let mut seg = i;
        loop {
            match b.get(i) {
                None => return Err(ParseError::Unterminated(shown())),
                Some(b'"') => {
                    value.push_str(&s[seg..i]);
                    i += 1;
                    break;
                }
                Some(b'\\') => {
                    value.push_str(&s[seg..i]);
                    match b.get(i + 1) {
                        Some(b'"') => {
                            value.push('"');
                            i += 2;
                        }
                        Some(b'\\') => {
                            value.push('\\');
                            i += 2;
                        }
                        Some(b'n') => {
                            value.push('\n');
                            i += 2;
                        }
                        _ => {
                            value.push('\\');
                            i += 1;
                        }
                    }
                    seg = i;
                }
                Some(_) => i += 1,
            }
        }
        args.push((name.to_string(), value));
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b')') => {
                i += 1;
                break;
            }
            _ => return Err(ParseError::Separator(shown())),
        }
    }
    let rest = s[i..].trim();
    if !rest.is_empty() {
        return Err(ParseError::Trailing(snippet(rest, SNIPPET).to_string()));
    }
    Ok(Call { tool, args })
}

/// Writes `<action>tool(a="v", ...)</action>`, escaping values so that [`parse_call`]
/// reads them back unchanged.
pub fn render_action(tool: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(
        32 + args
            .iter()
            .map(|(k, v)| k.len() + v.len() + 5)
            .sum::<usize>(),
    );
    out.push_str(OPEN);
    out.push_str(tool);
    out.push('(');
    for (n, (name, value)) in args.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                _ => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(')');
    out.push_str(CLOSE);
    out
}

/// Wraps free text (an injection) in the action tags.
pub fn render_text_action(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + OPEN.len() + CLOSE.len());
    out.push_str(OPEN);
    out.push_str(text);
    out.push_str(CLOSE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(s: &str) -> Call {
        parse_call(extract_action(s).unwrap()).unwrap()
    }

    #[test]
    fn parses_a_call_with_surrounding_text_and_no_closing_tag() {
        let c = call("I will pay.\n<action>send_money(to=\"DE12\", amount=\"5.00\")");
        assert_eq!(c.tool, "send_money");
        assert_eq!(
            c.args,
            vec![
                ("to".into(), "DE12".into()),
                ("amount".into(), "5.00".into())
            ]
        );
    }

    #[test]
    fn parses_no_arguments_trailing_comma_and_escapes() {
        assert_eq!(call("<action>get_balance()</action>").args, vec![]);
        let c = call(r#"<action>answer( text = "say \"hi\"\\n", )</action> trailing"#);
        assert_eq!(c.args[0].1, "say \"hi\"\\n");
    }

    #[test]
    fn reports_what_is_wrong() {
        assert_eq!(extract_action("no tags here"), None);
        assert_eq!(parse_call("  "), Err(ParseError::Empty));
        assert!(matches!(
            parse_call("(x=\"1\")"),
            Err(ParseError::ToolName(_))
        ));
        assert!(matches!(
            parse_call("answer"),
            Err(ParseError::OpenParen(_))
        ));
        assert!(matches!(
            parse_call("answer(\"hi\")"),
            Err(ParseError::ArgName(_))
        ));
        assert!(matches!(
            parse_call("answer(text \"hi\")"),
            Err(ParseError::Equals(_))
        ));
        assert!(matches!(
            parse_call("answer(text=hi)"),
            Err(ParseError::Quote(_))
        ));
        assert!(matches!(
            parse_call("answer(text=\"hi)"),
            Err(ParseError::Unterminated(_))
        ));
        assert!(matches!(
            parse_call("f(a=\"1\" b=\"2\")"),
            Err(ParseError::Separator(_))
        ));
        assert_eq!(parse_call("f(a=\"1\","), Err(ParseError::MissingParen));
        assert!(matches!(
            parse_call("f() g()"),
            Err(ParseError::Trailing(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn render_then_parse_round_trips(
            tool in "[a-z_][a-z0-9_]{0,12}",
            args in proptest::collection::vec(("[a-z_]{1,8}", "[^<]{0,40}"), 0..4),
        ) {
            let borrowed: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let text = render_action(&tool, &borrowed);
            let parsed = parse_call(extract_action(&text).unwrap()).unwrap();
            prop_assert_eq!(parsed.tool, tool);
            prop_assert_eq!(parsed.args, args);
        }

        #[test]
        fn parsing_never_panics(raw in ".{0,200}") {
            if let Some(inner) = extract_action(&raw) {
                let _ = parse_call(inner);
            }
            let _ = parse_call(&raw);
        }
    }
}
