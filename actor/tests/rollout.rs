//! Rollouts with a real (random-init) tiny policy: trajectories are token-exact, so the
//! learner's scorer reproduces every behaviour log-prob of a multi-turn episode.

#![allow(clippy::unwrap_used)]

use arlas_actor::demos::{DemoConfig, demonstrations};
use arlas_actor::rollout::builtin_tasks;
use arlas_actor::{AgentPlayer, Opponent, RolloutConfig, jobs, play};
use arlas_game::BuiltinEnvironment;
use arlas_game::{CorpusOptions, EpisodeSpec, Split, corpus};
use arlas_policy::{Policy, TinyPreset, build_tiny};

fn tiny() -> (tempfile::TempDir, Policy) {
    let dir = tempfile::tempdir().unwrap();
    let texts = corpus(&CorpusOptions {
        episodes: 120,
        seed: 3,
        split: Split::Train,
    })
    .unwrap();
    let policy = build_tiny(
        TinyPreset::Tiny2M,
        texts.into_iter(),
        5,
        &dir.path().join("m"),
    )
    .unwrap();
    (dir, policy)
}

#[test]
fn trajectories_are_token_exact_and_reproducible() {
    let (_dir, policy) = tiny();
    let config = RolloutConfig {
        batch_size: 3,
        seed: 11,
        ..RolloutConfig::default()
    };
    let mut config = config;
    config.game.max_turns = 3;
    config.agent_sampling.max_new_tokens = 24;
    config.attacker_sampling.max_new_tokens = 24;
    let specs = [
        EpisodeSpec::sample(Split::Train, 1),
        EpisodeSpec::sample(Split::Train, 2),
    ];
    let job_list = jobs(&builtin_tasks(&specs), 2, 0);

    let run = |policy: &Policy| {
        let mut agent = AgentPlayer::Policy { policy, version: 7 };
        let mut opponents = vec![Opponent::policy("current", policy, 3)];
        let mut env = BuiltinEnvironment::new(config.game.clone());
        play(&mut env, &mut agent, &mut opponents, &job_list, &config).unwrap()
    };
    let trajectories = run(&policy);
    assert_eq!(trajectories.len(), 4);
    assert_eq!(trajectories, run(&policy), "same seed, same trajectories");

    for t in &trajectories {
        assert_eq!((t.agent_version, t.attacker_version), (7, 3));
        assert_eq!(t.opponent, "current");
        assert!(!t.agent.is_empty() && !t.attacker.is_empty());
        assert_eq!(t.injections.len(), t.attacker.len());
        // The agent's multi-turn sequence, scored in one pass, gives back the sampler's
        // log-probs: nothing was re-tokenized between turns. So does each attacker turn.
        let max_diff = scored_vs_sampled(&policy, &t.agent);
        assert!(max_diff < 1e-4, "agent log-probs differ by {max_diff}");
        for turn in &t.attacker {
            let d = scored_vs_sampled(&policy, std::slice::from_ref(turn));
            assert!(d < 1e-4, "attacker log-probs differ by {d}");
        }
    }
}

#[test]
fn demonstrations_cover_both_players_and_the_naive_mix() {
    let (_dir, policy) = tiny();
    let demos = demonstrations(
        policy.chat(),
        policy.chat(),
        &DemoConfig {
            episodes: 20,
            naive_fraction: 0.5,
            seed: 4,
            ..DemoConfig::default()
        },
    )
    .unwrap();
    assert_eq!(demos.agent.len(), 20);
    assert!(demos.attacker.len() >= 20);
    assert!(
        demos.leaked >= 5,
        "naive half should leak: {}",
        demos.leaked
    );
    assert!(
        demos.completed >= 5,
        "expert half should complete: {}",
        demos.completed
    );
    for item in demos.agent.iter().chain(&demos.attacker) {
        assert_eq!(item.tokens.len(), item.mask.len());
        assert!(item.mask.iter().any(|m| *m));
    }
    // The agent's demonstrated actions decode back to protocol text.
    let first = &demos.agent[0];
    let action: Vec<u32> = first
        .tokens
        .iter()
        .zip(&first.mask)
        .filter(|(_, m)| **m)
        .map(|(t, _)| *t)
        .collect();
    let text = policy.tokenizer().decode(&action, true).unwrap();
    assert!(text.starts_with("<action>"), "{text}");
}

#[test]
fn scripted_agents_play_through_the_same_engine() {
    let specs: Vec<EpisodeSpec> = (0..6)
        .map(|i| EpisodeSpec::sample(Split::Eval, i))
        .collect();
    let mut opponents = vec![Opponent::templates().unwrap()];
    let config = RolloutConfig::default();
    let mut expert = AgentPlayer::scripted(arlas_game::players::AgentKind::Expert);
    let mut env = BuiltinEnvironment::new(config.game.clone());
    let job_list = jobs(&builtin_tasks(&specs), 1, 0);
    let t = play(&mut env, &mut expert, &mut opponents, &job_list, &config).unwrap();
    let r = arlas_actor::rates(&t);
    assert_eq!(r.task_success_rate, 1.0);
    assert_eq!(r.attack_success_rate, 0.0);
    let mut naive = AgentPlayer::scripted(arlas_game::players::AgentKind::Naive(1.0));
    let t = play(&mut env, &mut naive, &mut opponents, &job_list, &config).unwrap();
    assert!(arlas_actor::rates(&t).attack_success_rate > 0.8);
}

/// Largest |scored - sampled| log-prob over the completions of `segments`, scored as one
/// sequence.
fn scored_vs_sampled(policy: &arlas_policy::Policy, segments: &[arlas_core::Segment]) -> f32 {
    let seq = arlas_core::concat(segments);
    let sampled: Vec<f32> = segments
        .iter()
        .flat_map(|s| s.logprobs.iter().copied())
        .collect();
    assert_eq!(seq.mask.iter().filter(|m| **m).count(), sampled.len());
    let scored = policy
        .score_no_grad(&[arlas_policy::ScoreItem {
            tokens: seq.tokens,
            mask: seq.mask,
        }])
        .unwrap()
        .logprobs_vec()
        .unwrap();
    scored[0]
        .iter()
        .zip(&sampled)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}
