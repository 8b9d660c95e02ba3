//! `arlas config-reference` (hidden): every subcommand's flags — name, `ARLAS_*` variable,
//! default, help — rendered as Markdown from the clap definitions. `docs/config-reference.md`
//! is its output; a test fails when the committed file differs from what clap generates.

use std::fmt::Write as _;

use clap::{Arg, Command};

/// The command that regenerates the committed reference.
pub const REGENERATE: &str =
    "cargo run --release -p arlas -- config-reference > docs/config-reference.md";

/// Prints the reference of `root` to stdout.
pub fn print(root: &Command) {
    print!("{}", render(root));
}

/// The whole reference: the global flags once, then one section per (sub)command.
pub fn render(root: &Command) -> String {
    let name = root.get_name();
    let mut out = format!(
        "# Configuration reference\n\n\
         Generated from the clap definitions by `{REGENERATE}`; do not edit by hand (a test\n\
         compares this file with the definitions). Every flag can also be set from the\n\
         environment variable next to it (the flag wins). Commands that take `--config FILE`\n\
         (train, coordinator, learner, actor) also read their settings from that TOML file:\n\
         flag > variable > file > default (one mechanism, `src/config.rs`). The roles' file\n\
         keys are their flags in snake_case; `train`'s are the keys of a run's config.json.\n\
         A default written in the description rather than the default column is applied\n\
         after the file is read.\n\n\
         ## Every command\n\n"
    );
    table(&mut out, root.get_arguments().filter(|a| a.is_global_set()));
    for sub in root.get_subcommands() {
        section(&mut out, name, sub);
    }
    out
}

fn section(out: &mut String, parent: &str, cmd: &Command) {
    if cmd.is_hide_set() {
        return;
    }
    let path = format!("{parent} {}", cmd.get_name());
    let args: Vec<&Arg> = cmd.get_arguments().filter(|a| !a.is_global_set()).collect();
    if !args.is_empty() || !cmd.has_subcommands() {
        let _ = write!(out, "\n## `{path}`\n\n");
        if let Some(about) = cmd.get_about() {
            let _ = write!(out, "{}\n\n", cell(&about.to_string()));
        }
        table(out, args.into_iter());
    }
    for sub in cmd.get_subcommands() {
        section(out, &path, sub);
    }
}

fn table<'a>(out: &mut String, args: impl Iterator<Item = &'a Arg>) {
    let rows: Vec<String> = args.filter(|a| !a.is_hide_set()).map(row).collect();
    if rows.is_empty() {
        out.push_str("No flags.\n");
        return;
    }
    out.push_str("| flag | variable | default | description |\n| --- | --- | --- | --- |\n");
    for r in rows {
        out.push_str(&r);
    }
}

fn row(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), |v| v.to_string());
    let takes_value = arg.get_action().takes_values();
    let flag = match (arg.get_long(), arg.get_short()) {
        _ if arg.is_positional() => format!("<{value}>"),
        (Some(long), short) => {
            let short = short.map_or_else(String::new, |s| format!("-{s}, "));
            if takes_value {
                format!("{short}--{long} <{value}>")
            } else {
                format!("{short}--{long}")
            }
        }
        (None, Some(s)) => format!("-{s}"),
        (None, None) => value,
    };
    let env = arg
        .get_env()
        .map_or_else(String::new, |e| format!("`{}`", e.to_string_lossy()));
    let default = if takes_value {
        let values: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if values.is_empty() {
            String::new()
        } else {
            format!("`{}`", values.join(","))
        }
    } else {
        String::new()
    };
    let mut help = arg
        .get_help()
        .or_else(|| arg.get_long_help())
        .map_or_else(String::new, |h| h.to_string());
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| p.get_name().to_string())
        .collect();
    if !choices.is_empty() {
        let sep = if help.is_empty() || help.ends_with('.') {
            " "
        } else {
            ". "
        };
        help = format!("{help}{sep}One of: {}.", choices.join(", "))
            .trim_start()
            .to_string();
    }
    format!(
        "| `{}` | {env} | {} | {} |\n",
        cell(&flag),
        cell(&default),
        cell(&help)
    )
}

/// One table cell: a single line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn committed_reference_matches_the_clap_definitions() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config-reference.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = render(&crate::Cli::command());
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
            panic!(
                "{} is out of date with the clap definitions (first difference at line {}: \
                 committed {:?}, generated {:?}); regenerate it with `{REGENERATE}`",
                path.display(),
                line + 1,
                committed.lines().nth(line).unwrap_or("<end of file>"),
                generated.lines().nth(line).unwrap_or("<end of file>"),
            );
        }
    }

    #[test]
    fn roles_flags_and_variables_are_listed() {
        let text = render(&crate::Cli::command());
        for needle in [
            "## `arlas learner`",
            "| `--advertise <ADVERTISE>` | `ARLAS_ADVERTISE` |",
            "## `arlas actor`",
            "| `--cache <CACHE>` | `ARLAS_CACHE` |",
            "## `arlas game play`",
            "| `--log <LOG>` | `ARLAS_LOG` | `info` |",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(
            !text.contains("## `arlas config-reference`"),
            "the hidden command is listed"
        );
        assert!(
            text.lines()
                .all(|l| !l.starts_with('|') || l.ends_with('|'))
        );
    }
}
