//! Rollouts with a real (random-init) tiny policy: trajectories are token-exact, so the
//! learner's scorer reproduces every behaviour log-prob of a multi-turn episode.

#![allow(clippy::unwrap_used)]

use arlas_actor::demos::{DemoConfig, demonstrations};
use arlas_actor::rollout::builtin_tasks;
use arlas_actor::{AgentPlayer, Opponent, Played, RolloutConfig, jobs, play, play_counted};
use arlas_core::Trajectory;
use arlas_game::BuiltinEnvironment;
use arlas_game::{CorpusOptions, EpisodeSpec, Split, corpus};
use arlas_policy::{ChatFormat, LoadOptions, Policy, TinyPreset, build_tiny};

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

/// `group_size` rollouts of each of `tasks` train tasks, the policy playing both players,
/// with `turns` turns and 24 new tokens per action; with or without cache reuse.
fn play_both(policy: &Policy, tasks: u64, group_size: usize, turns: u32, reuse: bool) -> Played {
    let mut config = RolloutConfig {
        batch_size: 8,
        seed: 5,
        kv_reuse: reuse,
        ..RolloutConfig::default()
    };
    config.game.max_turns = turns;
    config.agent_sampling.max_new_tokens = 24;
    config.attacker_sampling.max_new_tokens = 24;
    let specs: Vec<EpisodeSpec> = (0..tasks)
        .map(|k| EpisodeSpec::sample(Split::Train, 40 + k))
        .collect();
    let job_list = jobs(&builtin_tasks(&specs), group_size, 0);
    let mut agent = AgentPlayer::Policy { policy, version: 1 };
    let mut opponents = vec![Opponent::policy("current", policy, 1)];
    let mut env = BuiltinEnvironment::new(config.game.clone());
    play_counted(&mut env, &mut agent, &mut opponents, &job_list, &config).unwrap()
}

/// Ids of every segment of a trajectory, log-probs aside (those may differ by rounding).
fn ids(t: &Trajectory) -> Vec<(Vec<u32>, Vec<u32>)> {
    t.agent
        .iter()
        .chain(&t.attacker)
        .map(|s| (s.prompt.clone(), s.completion.clone()))
        .collect()
}

/// Largest |a - b| between the behaviour log-probs of two plays of the same episodes.
fn logprob_gap(a: &[Trajectory], b: &[Trajectory]) -> f32 {
    let all = |t: &Trajectory| -> Vec<f32> {
        t.agent
            .iter()
            .chain(&t.attacker)
            .flat_map(|s| s.logprobs.clone())
            .collect()
    };
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            all(x)
                .into_iter()
                .zip(all(y))
                .map(|(p, q)| (p - q).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max)
}

#[test]
fn cache_reuse_plays_the_same_episodes_and_prefills_a_fraction_of_the_prompts() {
    let (_dir, policy) = tiny();
    // 2 tasks x 3 rollouts, 5 turns; batches of 8 put both groups' rollouts in one chunk.
    let reused = play_both(&policy, 2, 3, 5, true);
    let whole = play_both(&policy, 2, 3, 5, false);
    assert_eq!(reused.trajectories.len(), 6);
    for (a, b) in reused.trajectories.iter().zip(&whole.trajectories) {
        assert_eq!(ids(a), ids(b), "same tokens with and without reuse");
        assert_eq!((a.outcome, a.turns), (b.outcome, b.turns));
    }
    let gap = logprob_gap(&reused.trajectories, &whole.trajectories);
    assert!(gap < 1e-4, "behaviour log-probs differ by {gap}");
    for t in &reused.trajectories {
        let d = scored_vs_sampled(&policy, &t.agent);
        assert!(d < 1e-4, "agent log-probs differ by {d}");
        // Each attacker turn is a prompt of its own, sampled over the previous one's cache.
        for segment in &t.attacker {
            let d = scored_vs_sampled(&policy, std::slice::from_ref(segment));
            assert!(d < 1e-4, "attacker log-probs differ by {d}");
        }
    }
    // Without reuse every prompt is prefilled whole; with it, each episode's prompts count
    // the same tokens, of which a fraction is prefilled.
    for (r, w) in reused.prefill.iter().zip(&whole.prefill) {
        assert_eq!(w.agent.prefilled, w.agent.prompt);
        assert_eq!(w.attacker.prefilled, w.attacker.prompt);
        assert_eq!(
            (r.agent.prompt, r.attacker.prompt),
            (w.agent.prompt, w.attacker.prompt)
        );
        assert!(r.agent.prefilled < r.agent.prompt);
    }
    let (r, w) = (reused.prefill_total(), whole.prefill_total());
    eprintln!("prefilled over 6 episodes, with / without reuse: {r:?} / {w:?}");
    assert!(
        r.agent.prefilled * 3 <= w.agent.prefilled,
        "agent: {} vs {}",
        r.agent.prefilled,
        w.agent.prefilled
    );
    assert!(r.attacker.prefilled < w.attacker.prefilled);
}

#[test]
fn episodes_truncated_at_the_context_limit_leave_with_their_caches() {
    let (_dir, tiny) = tiny();
    // The turn-0 prompts fit, the later ones soon do not: some episodes are truncated.
    let first = play_both(&tiny, 2, 2, 1, true);
    let longest = first
        .trajectories
        .iter()
        .map(|t| t.agent[0].prompt.len().max(t.attacker[0].prompt.len()))
        .max()
        .unwrap();
    let mut config = tiny.config().clone();
    config.max_position_embeddings = longest + 24 + 60;
    let options = LoadOptions {
        seed: 5,
        ..LoadOptions::default()
    };
    let short = Policy::random(
        &config,
        tiny.tokenizer().clone(),
        ChatFormat::Tiny,
        tiny.device(),
        &options,
        "tiny-short",
    )
    .unwrap();
    let reused = play_both(&short, 2, 2, 4, true);
    let whole = play_both(&short, 2, 2, 4, false);
    assert!(reused.trajectories.iter().any(|t| t.truncated));
    for (a, b) in reused.trajectories.iter().zip(&whole.trajectories) {
        assert_eq!(ids(a), ids(b));
        assert_eq!(a.truncated, b.truncated);
        let d = scored_vs_sampled(&short, &a.agent);
        assert!(d < 1e-4, "agent log-probs differ by {d}");
    }
}

#[test]
fn demonstrations_cover_both_players_and_the_naive_mix() {
    let (_dir, policy) = tiny();
    let mut env = BuiltinEnvironment::new(arlas_game::GameConfig::default());
    let demos = demonstrations(
        &mut env,
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
    let mut expert = AgentPlayer::scripted(arlas_game::players::AgentKind::Expert).unwrap();
    let mut env = BuiltinEnvironment::new(config.game.clone());
    let job_list = jobs(&builtin_tasks(&specs), 1, 0);
    let t = play(&mut env, &mut expert, &mut opponents, &job_list, &config).unwrap();
    let r = arlas_actor::rates(&t);
    assert_eq!(r.task_success_rate, 1.0);
    assert_eq!(r.attack_success_rate, 0.0);
    let mut naive = AgentPlayer::scripted(arlas_game::players::AgentKind::Naive(1.0)).unwrap();
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
