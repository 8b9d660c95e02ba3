//! Texts stay small enough for a ~1024-token model trained from scratch.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use arlas_game::{AgentKind, AttackerKind, EpisodeSpec, GameConfig, Split, sample_episode};

#[test]
fn prompts_and_episodes_stay_compact() {
    let mut episode_chars = Vec::new();
    let mut attacker_chars = Vec::new();
    let mut injection_chars = Vec::new();
    for split in Split::ALL {
        for seed in 0..400 {
            let spec = EpisodeSpec::sample(split, seed);
            let t = sample_episode(
                spec,
                AgentKind::Expert,
                &AttackerKind::Templates,
                &GameConfig::default(),
            )
            .unwrap();
            let agent: usize = t.agent_system_prompt.len()
                + t.turns
                    .iter()
                    .map(|x| x.agent_message.len() + x.agent_output.len())
                    .sum::<usize>();
            episode_chars.push(agent);
            let system = t.attacker_system_prompt.as_ref().map_or(0, String::len);
            for x in &t.turns {
                attacker_chars.push(system + x.attacker_message.as_ref().map_or(0, String::len));
                injection_chars.push(x.attacker_output.as_ref().map_or(0, String::len));
            }
        }
    }
    for v in [
        &mut episode_chars,
        &mut attacker_chars,
        &mut injection_chars,
    ] {
        v.sort_unstable();
    }
    let pct = |v: &[usize], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    println!(
        "agent episode chars: median {} p90 {} max {}; attacker prompt chars: median {} p90 {} max {}; injection chars: median {} max {}",
        pct(&episode_chars, 0.5),
        pct(&episode_chars, 0.9),
        pct(&episode_chars, 1.0),
        pct(&attacker_chars, 0.5),
        pct(&attacker_chars, 0.9),
        pct(&attacker_chars, 1.0),
        pct(&injection_chars, 0.5),
        pct(&injection_chars, 1.0),
    );
    assert!(
        pct(&episode_chars, 0.5) <= 2500,
        "typical agent episode too long"
    );
    assert!(
        pct(&attacker_chars, 0.9) <= 1000,
        "attacker prompts too long"
    );
    assert!(
        pct(&injection_chars, 1.0) <= 320,
        "template injections too long"
    );
}
