//! GRPO updates on a real tiny policy move it in the direction of the advantages.

#![allow(clippy::unwrap_used)]

use arlas_actor::{AgentPlayer, Opponent, RolloutConfig, jobs, play};
use arlas_core::{Trajectory, concat};
use arlas_game::{CorpusOptions, EpisodeSpec, Split, corpus};
use arlas_learner::{Learner, LearnerConfig, Player, grpo_items};
use arlas_policy::Device;
use arlas_policy::{
    LoadOptions, ModelSpec, Policy, ScoreItem, TinyPreset, TrainConfig, Trainer, build_tiny,
};

fn trainable_tiny(dir: &std::path::Path) -> Policy {
    let texts = corpus(&CorpusOptions {
        episodes: 120,
        seed: 3,
        split: Split::Train,
    })
    .unwrap();
    build_tiny(TinyPreset::Tiny2M, texts.into_iter(), 5, &dir.join("m")).unwrap();
    let options = LoadOptions {
        trainable: true,
        ..LoadOptions::default()
    };
    Policy::load(&ModelSpec::Path(dir.join("m")), &Device::Cpu, &options).unwrap()
}

fn rollouts(policy: &Policy) -> Vec<Trajectory> {
    let mut config = RolloutConfig {
        seed: 2,
        ..RolloutConfig::default()
    };
    config.game.max_turns = 2;
    config.agent_sampling.max_new_tokens = 16;
    let specs = [EpisodeSpec::sample(Split::Train, 9)];
    let mut agent = AgentPlayer::Policy { policy, version: 0 };
    let mut opponents = vec![Opponent::templates().unwrap()];
    let mut env = arlas_game::BuiltinEnvironment::new(config.game.clone());
    let job_list = jobs(&arlas_actor::rollout::builtin_tasks(&specs), 4, 0);
    play(&mut env, &mut agent, &mut opponents, &job_list, &config).unwrap()
}

fn completion_logprob(policy: &Policy, t: &Trajectory) -> f32 {
    let seq = concat(&t.agent);
    let seq = ScoreItem {
        tokens: seq.tokens,
        mask: seq.mask,
    };
    policy
        .score_no_grad(&[seq])
        .unwrap()
        .logprobs_vec()
        .unwrap()[0]
        .iter()
        .sum()
}

#[test]
fn update_raises_the_rewarded_rollout_and_bumps_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let policy = trainable_tiny(dir.path());
    let mut trajectories = rollouts(&policy);
    // Make one rollout the winner of its group.
    trajectories[0].rewards.agent = 1.0;
    for t in &mut trajectories[1..] {
        t.rewards.agent = -1.0;
    }
    let before_win = completion_logprob(&policy, &trajectories[0]);
    let before_lose = completion_logprob(&policy, &trajectories[1]);

    let train = TrainConfig {
        learning_rate: 3e-3,
        kl_coef: 0.0,
        ..TrainConfig::default()
    };
    let config = LearnerConfig {
        train,
        minibatch_size: 4,
        ..LearnerConfig::default()
    };
    let mut learner = Learner::new(
        Player::Agent,
        Trainer::new(policy, config.train.clone()).unwrap(),
        config,
        0,
    )
    .unwrap();
    learner.freeze_reference().unwrap();
    let mut report = learner.update(&trajectories, 1).unwrap();
    for seed in 2..4 {
        report = learner.update(&trajectories, seed).unwrap();
    }
    assert_eq!(report.items, 4);
    assert_eq!(learner.version(), 3);
    assert!(report.steps.iter().all(|s| !s.skipped));
    let after_win = completion_logprob(learner.policy(), &trajectories[0]);
    let after_lose = completion_logprob(learner.policy(), &trajectories[1]);
    assert!(
        after_win > before_win,
        "rewarded rollout: {before_win} -> {after_win}"
    );
    assert!(after_win - before_win > after_lose - before_lose);
}

#[test]
fn first_update_sees_no_mismatch_and_stale_or_flat_data_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let policy = trainable_tiny(dir.path());
    let mut trajectories = rollouts(&policy);
    // Flat group: nothing to learn, no step, no new version.
    for t in &mut trajectories {
        t.rewards.agent = -1.0;
    }
    let (items, stats) = grpo_items(Player::Agent, &trajectories, true);
    assert!(items.is_empty());
    assert_eq!((stats.groups, stats.flat_groups), (1, 1));

    trajectories[2].rewards.agent = 1.0;
    let config = LearnerConfig {
        max_staleness: 2,
        ..LearnerConfig::default()
    };
    let trainer = Trainer::new(policy, config.train.clone()).unwrap();
    let mut learner = Learner::new(Player::Agent, trainer, config, 5).unwrap();
    let report = learner.update(&trajectories, 0).unwrap();
    // Produced at version 0, the learner is at 5 with a bound of 2: all stale.
    assert_eq!(report.dropped_stale, 4);
    assert_eq!(learner.version(), 5);

    for t in &mut trajectories {
        t.agent_version = 5;
    }
    let report = learner.update(&trajectories, 0).unwrap();
    assert_eq!(report.dropped_stale, 0);
    assert!(
        report.logprob_mismatch < 1e-4,
        "sampler vs learner: {}",
        report.logprob_mismatch
    );
    assert_eq!(learner.version(), 6);
}
