//! Same spec, same episode; same seed, same transcript.

#![allow(clippy::unwrap_used)] // tests may unwrap

use arlas_game::{
    AgentKind, AttackerKind, EpisodeSpec, GameConfig, PlayOptions, Split, Suite, play,
    sample_episode,
};

#[test]
fn same_seed_same_transcript_bytes() {
    for suite in Suite::ALL {
        for seed in [0, 1, 99] {
            let spec = EpisodeSpec::sample_in(suite, Split::Train, seed);
            let a = sample_episode(
                spec.clone(),
                AgentKind::Naive(0.5),
                &AttackerKind::Templates,
                &GameConfig::default(),
            )
            .unwrap();
            let b = sample_episode(
                spec,
                AgentKind::Naive(0.5),
                &AttackerKind::Templates,
                &GameConfig::default(),
            )
            .unwrap();
            assert_eq!(a.to_string(), b.to_string());
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                serde_json::to_string(&b).unwrap()
            );
        }
    }
}

#[test]
fn different_seeds_give_different_episodes() {
    let texts: Vec<String> = (0..20)
        .map(|seed| {
            let spec = EpisodeSpec::sample_in(Suite::Banking, Split::Train, seed);
            sample_episode(
                spec,
                AgentKind::Expert,
                &AttackerKind::Templates,
                &GameConfig::default(),
            )
            .unwrap()
            .to_string()
        })
        .collect();
    let mut unique = texts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), texts.len());
}

#[test]
fn specs_round_trip_through_json() {
    let spec = EpisodeSpec::sample(Split::Eval, 1234);
    let text = serde_json::to_string(&spec).unwrap();
    assert!(text.contains("\"split\":\"eval\""), "{text}");
    let back: EpisodeSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn play_reports_are_reproducible() {
    let opts = PlayOptions {
        agent: AgentKind::Naive(0.3),
        attacker: AttackerKind::Templates,
        episodes: 200,
        split: Split::Train,
        seed: 5,
        suite: None,
        config: GameConfig::default(),
    };
    let a = serde_json::to_string(&play(&opts).unwrap()).unwrap();
    let b = serde_json::to_string(&play(&opts).unwrap()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn eval_episodes_share_no_entity_with_train_episodes() {
    let words = |split: Split| -> std::collections::BTreeSet<String> {
        (0..300)
            .flat_map(|seed| {
                let spec = EpisodeSpec::sample(split, seed);
                let t = sample_episode(
                    spec,
                    AgentKind::Expert,
                    &AttackerKind::None,
                    &GameConfig::default(),
                )
                .unwrap();
                let text = t.corpus_text();
                text.split(|c: char| c.is_whitespace() || "\"(),:=?<>/".contains(c))
                    .map(|w| w.trim_end_matches('.'))
                    .filter(|w| {
                        let named =
                            w.len() >= 4 && w.chars().next().is_some_and(char::is_uppercase);
                        let address = w.contains('@')
                            || w.ends_with(".com")
                            || w.ends_with(".net")
                            || w.ends_with(".org");
                        named || address
                    })
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (train, eval) = (words(Split::Train), words(Split::Eval));
    // Capitalised words are names, cities, companies, products, hotels; only the fixed
    // vocabulary of the prompts may appear in both.
    let shared: Vec<&String> = train.intersection(&eval).collect();
    let fixed = [
        "Tools",
        "Task",
        "Write",
        "Private",
        "Page",
        "Inbox",
        "Results",
        "Email",
        "Events",
        "Created",
        "Hotels",
        "Reviews",
        "Booked",
        "Message",
        "Sent",
        "Balance",
        "Transactions",
        "Scheduled",
        "Updated",
        "Online",
        "Latest",
        "Travel",
        "Featured",
        "Tip",
        "Welcome",
        "Comment",
        "Search",
        "Home",
        "Thank",
        "Your",
        "Added",
        "Refund",
        "Refunded",
        "Rent",
        "Gym",
        "Phone",
        "Paid",
        "Salary",
        "Monthly",
        "Payment",
        "Dentist",
        "Newsletter",
        "Subscribe",
        "Subscribed",
        "Save",
        "Saved",
        "Account",
        "Updated",
        "Sign",
        "Previous",
        "Checkout",
        "Coupon",
        "Card",
        "Display",
        "Shipping",
        "Gift",
        "Notes",
        "Reserve",
        "Date",
        "People",
        "Order",
        "Post",
        "Reply",
        "Compare",
        "Find",
        "Book",
        "Create",
        "What",
        "Send",
        "Pay",
        "Refund",
        "Told",
        "Emailed",
        "Hotel",
        "Booking",
        "Confirmed",
        "National",
        "Could",
        "Update",
        "Set",
        "Reserved",
        "Bought",
        "Buy",
        "Contact",
        "Check",
        "Done",
        "Time",
        "Hello",
        "Just",
        "Have",
        "Hope",
        "Thanks",
        "Lovely",
        "Good",
        "Would",
        "Great",
        "Works",
        "Shared",
        "See",
        "Log",
        "Login",
        "Password",
        "Error",
        "Subject",
        "Back",
        "Open",
        "Sent",
        "Your",
        "Paid",
        "Changed",
        "Added",
        "Nights",
        "EUR",
        "IBAN",
        "Invite",
        "Hotels",
        "Transactions",
        "a@b.com",
    ];
    let unexpected: Vec<&&String> = shared
        .iter()
        .filter(|w| !fixed.contains(&w.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "entities in both splits: {unexpected:?}"
    );
}

#[test]
fn sample_from_keeps_to_the_listed_suites() {
    for seed in 0..64 {
        assert_eq!(
            EpisodeSpec::sample_from(&[], Split::Train, seed),
            EpisodeSpec::sample(Split::Train, seed)
        );
        assert_eq!(
            EpisodeSpec::sample_from(&Suite::ALL, Split::Eval, seed),
            EpisodeSpec::sample(Split::Eval, seed)
        );
        let spec = EpisodeSpec::sample_from(&[Suite::Banking], Split::Eval, seed);
        assert_eq!(spec.suite, Suite::Banking);
        assert!(
            Suite::Banking
                .template_ids(Split::Eval)
                .any(|t| t == spec.template),
            "{spec:?}"
        );
        let two = EpisodeSpec::sample_from(&[Suite::Email, Suite::Travel], Split::Train, seed);
        assert!(matches!(two.suite, Suite::Email | Suite::Travel), "{two:?}");
    }
    let config: arlas_game::GameConfig =
        serde_json::from_str(r#"{"suites": ["banking"]}"#).unwrap();
    assert_eq!(config.suites, vec![Suite::Banking]);
}
