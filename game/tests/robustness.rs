//! Nothing a model writes can panic the game (bounded property tests, run in CI).

#![allow(clippy::unwrap_used)] // tests may unwrap

use arlas_game::{Episode, EpisodeSpec, GameConfig, Split, Suite};
use proptest::prelude::*;

/// Text a model might write: noise, near-miss actions, real tool names with odd arguments.
fn model_text() -> impl Strategy<Value = String> {
    let tool = prop_oneof![
        Just("send_money".to_string()),
        Just("send_email".to_string()),
        Just("click".to_string()),
        Just("fill".to_string()),
        Just("goto".to_string()),
        Just("book_hotel".to_string()),
        Just("update_scheduled".to_string()),
        Just("create_event".to_string()),
        Just("answer".to_string()),
        Just("send_msg_to_user".to_string()),
        "[a-zA-Z_]{1,12}",
    ];
    let arg = (
        "[a-z_]{1,8}",
        "[^\"\\\\]{0,24}|[0-9.\\-]{0,12}|\\[?[0-9]{1,3}\\]?",
    );
    let call =
        (tool, proptest::collection::vec(arg, 0..4), any::<bool>()).prop_map(|(t, args, close)| {
            let body: Vec<String> = args.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!(
                "<action>{t}({}){}",
                body.join(", "),
                if close { "</action>" } else { "" }
            )
        });
    prop_oneof![
        any::<String>(),
        ".{0,300}",
        "(<action>|</action>|\\(|\\)|\"|=|,|\\\\|[a-z_]{1,6}| ){0,40}",
        call,
    ]
}

fn spec(suite_ix: usize, eval: bool, seed: u64) -> EpisodeSpec {
    let split = if eval { Split::Eval } else { Split::Train };
    EpisodeSpec::sample_in(Suite::ALL[suite_ix % 4], split, seed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_agent_and_attacker_text_never_panics(
        suite_ix in 0usize..4,
        eval in any::<bool>(),
        seed in any::<u64>(),
        turns in proptest::collection::vec((model_text(), model_text()), 1..10),
    ) {
        let config = GameConfig { max_turns: 6, ..GameConfig::default() };
        let mut ep = Episode::new(spec(suite_ix, eval, seed), &config).unwrap();
        let _ = ep.agent_system_prompt();
        let _ = ep.attacker_system_prompt();
        for (injection, action) in &turns {
            if ep.is_done() {
                prop_assert!(ep.act(action).is_err());
                prop_assert!(ep.inject(injection).is_err());
                break;
            }
            let _ = ep.attacker_message();
            ep.inject(injection).unwrap();
            let seen = ep.agent_message();
            if let Some(inj) = ep.injection() {
                prop_assert!(seen.contains(inj));
                prop_assert!(inj.chars().count() <= config.max_injection_chars);
            }
            ep.act(action).unwrap();
            prop_assert!(ep.turn() <= config.max_turns);
        }
        if ep.turn() == config.max_turns {
            prop_assert!(ep.is_done());
        }
        prop_assert_eq!(ep.is_done(), ep.rewards().is_some());
    }

    #[test]
    fn valid_calls_from_the_expert_mixed_with_noise_never_panic(
        seed in any::<u64>(),
        eval in any::<bool>(),
        noise in proptest::collection::vec(model_text(), 0..4),
    ) {
        let split = if eval { Split::Eval } else { Split::Train };
        let mut ep = Episode::new(EpisodeSpec::sample(split, seed), &GameConfig::default()).unwrap();
        for n in &noise {
            if ep.is_done() { break; }
            ep.act(n).unwrap();
        }
        while !ep.is_done() {
            let a = ep.expert_action().to_string();
            ep.act(&a).unwrap();
        }
        prop_assert!(ep.outcome().is_some());
    }
}
