//! Fixture builders shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)] // shared by several test crates; tests may unwrap

use arlas_game::{Episode, EpisodeSpec, GameConfig, Split, Suite};

/// Every (suite, split, template) of the game.
pub fn all_templates() -> Vec<(Suite, Split, &'static str)> {
    let mut out = Vec::new();
    for suite in Suite::ALL {
        for split in Split::ALL {
            for t in suite.template_ids(split) {
                out.push((suite, split, t));
            }
        }
    }
    out
}

pub fn episode(suite: Suite, split: Split, template: &str, seed: u64) -> Episode {
    let spec = EpisodeSpec {
        suite,
        split,
        template: template.to_string(),
        seed,
    };
    Episode::new(spec, &GameConfig::default()).unwrap()
}

/// Plays the expert's actions with no injection until the episode ends.
pub fn play_expert(ep: &mut Episode) {
    while !ep.is_done() {
        ep.inject_none();
        let a = ep.expert_action().to_string();
        ep.act(&a).unwrap();
    }
}

/// The same private value written differently: separators swapped, case flipped.
pub fn disguise(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            ' ' => '-',
            '-' => ' ',
            ',' => ' ',
            c if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
            c if c.is_ascii_uppercase() => c.to_ascii_lowercase(),
            c => c,
        })
        .collect()
}

/// A call, in the suite's own tools, that sends `text` to the goal's destination.
pub fn exfiltrate(ep: &Episode, to: &str, text: &str) -> String {
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    match ep.spec().suite {
        Suite::Web => format!("<action>goto(url=\"{}?d={}\")</action>", q(to), q(text)),
        Suite::Banking => format!(
            "<action>send_money(to=\"{}\", amount=\"0.01\", subject=\"{}\")</action>",
            q(to),
            q(text)
        ),
        Suite::Email | Suite::Travel => {
            format!(
                "<action>send_email(to=\"{}\", subject=\"hi\", body=\"{}\")</action>",
                q(to),
                q(text)
            )
        }
    }
}
