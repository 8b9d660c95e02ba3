//! Training: SFT learns, GRPO moves log-probs the right way, NaN never reaches the weights,
//! LoRA trains only its adapters.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use arlas_policy::{GrpoItem, LoraConfig, SamplingParams, ScoreItem, TrainConfig, Trainer};
use common::{demonstrations, policy_with, prompts, tiny_config, tiny_policy, weights};

fn config(lr: f64) -> TrainConfig {
    TrainConfig {
        learning_rate: lr,
        warmup_steps: 2,
        total_steps: 30,
        weight_decay: 0.01,
        micro_batch_size: 4,
        ..TrainConfig::default()
    }
}

#[test]
fn sft_on_a_tiny_corpus_reduces_the_loss() {
    let policy = tiny_policy(true, 0, 0.02);
    let items = demonstrations(&policy);
    let mut trainer = Trainer::new(policy, config(3e-3)).unwrap();
    let first = trainer.sft_step(&items).unwrap();
    let mut last = first;
    for _ in 0..19 {
        last = trainer.sft_step(&items).unwrap();
        assert!(!last.skipped);
    }
    eprintln!("sft loss {:.3} -> {:.3}", first.loss, last.loss);
    assert!(
        first.loss > 5.0,
        "a random model starts near ln(vocab): {}",
        first.loss
    );
    assert!(
        last.loss < 0.6 * first.loss,
        "{} -> {}",
        first.loss,
        last.loss
    );
    assert!(first.grad_norm > 0.0 && first.entropy > 0.0);
    assert_eq!(trainer.step(), 20);
    assert_eq!(
        first.tokens,
        items.iter().map(ScoreItem::scored_tokens).sum::<usize>()
    );
}

fn sampled_items(trainer: &Trainer, advantage: f32) -> Vec<GrpoItem> {
    let policy = trainer.policy();
    let prompts = prompts(policy);
    let params = SamplingParams {
        max_new_tokens: 8,
        seed: 1,
        ..SamplingParams::default()
    };
    let generations = policy.generate(&prompts, &params).unwrap();
    prompts
        .iter()
        .zip(generations)
        .map(|(p, g)| {
            let item = ScoreItem::completion(p, &g.tokens);
            GrpoItem {
                tokens: item.tokens,
                mask: item.mask,
                behaviour_logprobs: g.logprobs,
                advantage,
            }
        })
        .collect()
}

fn completion_logprob(trainer: &Trainer, items: &[GrpoItem]) -> f32 {
    let scores: Vec<ScoreItem> = items
        .iter()
        .map(|i| ScoreItem {
            tokens: i.tokens.clone(),
            mask: i.mask.clone(),
        })
        .collect();
    let out = trainer.policy().score_no_grad(&scores).unwrap();
    out.logprobs.sum_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn grpo_raises_rewarded_and_lowers_punished_completions() {
    for advantage in [1.0f32, -1.0] {
        let policy = tiny_policy(true, 4, 0.1);
        let reference = policy.frozen_copy().unwrap();
        let mut trainer = Trainer::new(policy, config(1e-3)).unwrap();
        let items = sampled_items(&trainer, advantage);
        let before = completion_logprob(&trainer, &items);
        let first = trainer.grpo_step(&items, Some(&reference)).unwrap();
        // On-policy and equal to the reference: ratio 1, nothing clipped, no KL yet.
        assert!(first.kl.abs() < 1e-5, "{}", first.kl);
        assert_eq!(first.clip_fraction, 0.0);
        assert!(
            (first.loss + f64::from(advantage)).abs() < 1e-4,
            "{}",
            first.loss
        );
        let second = trainer.grpo_step(&items, Some(&reference)).unwrap();
        assert!(second.kl > 0.0);
        let after = completion_logprob(&trainer, &items);
        eprintln!("advantage {advantage}: log-prob {before:.3} -> {after:.3}");
        if advantage > 0.0 {
            assert!(after > before);
        } else {
            assert!(after < before);
        }
    }
}

#[test]
fn nan_loss_is_skipped_and_weights_are_unchanged() {
    let policy = tiny_policy(true, 5, 0.02);
    let mut trainer = Trainer::new(policy, config(1e-2)).unwrap();
    let mut items = sampled_items(&trainer, 1.0);
    let before = weights(trainer.policy());
    items[1].advantage = f32::NAN;
    let stats = trainer.grpo_step(&items, None).unwrap();
    assert!(stats.skipped);
    assert_eq!(trainer.step(), 0);
    assert_eq!(before, weights(trainer.policy()));
    items[1].advantage = 1.0;
    items[0].behaviour_logprobs[0] = f32::NEG_INFINITY;
    let stats = trainer.grpo_step(&items, None).unwrap();
    assert!(stats.skipped);
    assert_eq!(before, weights(trainer.policy()));
    // A finite batch then trains normally.
    items[0].behaviour_logprobs[0] = -3.0;
    assert!(!trainer.grpo_step(&items, None).unwrap().skipped);
    assert_ne!(before, weights(trainer.policy()));
}

#[test]
fn mismatched_behaviour_logprobs_are_rejected() {
    let policy = tiny_policy(true, 5, 0.02);
    let mut trainer = Trainer::new(policy, config(1e-2)).unwrap();
    let mut items = sampled_items(&trainer, 1.0);
    items[0].behaviour_logprobs.pop();
    assert!(trainer.grpo_step(&items, None).is_err());
    let frozen = tiny_policy(false, 5, 0.02);
    assert!(Trainer::new(frozen, TrainConfig::default()).is_err());
}

#[test]
fn lora_trains_only_the_adapters() {
    let lora = LoraConfig::new(4, 8.0).unwrap();
    let policy = policy_with(&tiny_config(0.02), true, 6, Some(lora));
    let names = policy.trainable_names();
    assert_eq!(names.len(), 6 * 7 * 2);
    assert!(
        names
            .iter()
            .all(|n| n.contains(".lora_A.") || n.contains(".lora_B."))
    );
    let base_before: Vec<Vec<f32>> = policy
        .base_tensors()
        .values()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let items = demonstrations(&policy);
    let untrained = policy.score_no_grad(&items).unwrap();
    let mut trainer = Trainer::new(policy, config(1e-2)).unwrap();
    let first = trainer.sft_step(&items).unwrap();
    // B starts at zero, so a fresh adapter leaves the model unchanged.
    let fresh_lp: f32 = untrained.logprobs.sum_all().unwrap().to_scalar().unwrap();
    assert!((first.loss + f64::from(fresh_lp) / first.tokens as f64).abs() < 1e-4);
    for _ in 0..5 {
        trainer.sft_step(&items).unwrap();
    }
    let policy = trainer.into_policy();
    let base_after: Vec<Vec<f32>> = policy
        .base_tensors()
        .values()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    assert_eq!(base_before, base_after);
    let trained = policy.score_no_grad(&items).unwrap();
    let trained_lp: f32 = trained.logprobs.sum_all().unwrap().to_scalar().unwrap();
    assert!(trained_lp > fresh_lp, "{fresh_lp} -> {trained_lp}");
    assert!(policy.num_trainable_parameters() < policy.num_parameters() / 5);
}

#[test]
fn micro_batches_accumulate_to_the_full_batch_gradient() {
    let items = demonstrations(&tiny_policy(false, 0, 0.02));
    let mut results = Vec::new();
    // (items, padded tokens) per micro-batch: one pass, three items, and a token cap that
    // splits the batch unevenly (an item longer than the cap is a micro-batch of its own).
    let longest = items.iter().map(|i| i.tokens.len()).max().unwrap();
    for (micro, tokens) in [(16, 0), (3, 0), (16, 2 * longest), (16, 1)] {
        let policy = tiny_policy(true, 8, 0.02);
        let mut trainer = Trainer::new(
            policy,
            TrainConfig {
                micro_batch_size: micro,
                micro_batch_tokens: tokens,
                ..config(1e-3)
            },
        )
        .unwrap();
        let stats = trainer.sft_step(&items).unwrap();
        results.push((stats, weights(trainer.policy())));
    }
    let (a, wa) = &results[0];
    for (b, wb) in &results[1..] {
        assert!(
            (a.loss - b.loss).abs() < 1e-5
                && (a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm,
            "{a:?} vs {b:?}"
        );
        let worst = wa
            .iter()
            .map(|(k, v)| common::max_abs_diff(v, &wb[k]))
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }
}

/// Eight long demonstrations: one micro-batch of them is two row groups for a small model on
/// the CPU (row_groups.rs: at least 1024 padded tokens per group).
fn long_demonstrations(policy: &arlas_policy::Policy) -> Vec<ScoreItem> {
    demonstrations(policy)
        .into_iter()
        .take(8)
        .map(|item| {
            let tokens: Vec<u32> = item.tokens.iter().copied().cycle().take(300).collect();
            let mask = (0..tokens.len()).map(|i| i > 10).collect();
            ScoreItem { tokens, mask }
        })
        .collect()
}

#[test]
fn row_groups_train_like_one_row_at_a_time_and_alike_on_any_thread_count() {
    let step = |micro_batch_size: usize, threads: usize| {
        let policy = tiny_policy(true, 9, 0.02);
        let items = long_demonstrations(&policy);
        let mut trainer = Trainer::new(
            policy,
            TrainConfig {
                micro_batch_size,
                ..config(1e-3)
            },
        )
        .unwrap();
        let stats = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| trainer.sft_step(&items).unwrap());
        (stats, weights(trainer.policy()))
    };
    let (grouped, grouped_weights) = step(8, 2);
    let (single, _) = step(1, 2);
    assert!(!grouped.skipped && !single.skipped);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    assert!(
        close(grouped.loss, single.loss),
        "{} vs {}",
        grouped.loss,
        single.loss
    );
    assert!(
        close(grouped.grad_norm, single.grad_norm),
        "{} vs {}",
        grouped.grad_norm,
        single.grad_norm
    );
    assert!(close(grouped.entropy, single.entropy));
    assert_eq!(grouped.tokens, single.tokens);
    let (one_thread, one_thread_weights) = step(8, 1);
    assert_eq!(one_thread.loss, grouped.loss);
    assert_eq!(one_thread.grad_norm, grouped.grad_norm);
    assert!(
        one_thread_weights == grouped_weights,
        "the update depends on the thread count"
    );
}

/// What a checkpointing comparison trains: LoRA or the full model, SFT or GRPO.
#[derive(Debug, Clone, Copy)]
struct Case {
    lora: bool,
    grpo: bool,
    cpu_kernels: bool,
}

/// Two steps of `case` with activation checkpointing on or off: each step's stats and the
/// weights after each step. (Two steps, so that LoRA's A matrices, whose gradient is zero
/// while B is, get a gradient too.)
fn checkpointing_run(case: Case, checkpointing: bool) -> Vec<(f64, f64, BTreeWeights)> {
    let lora = case.lora.then(|| LoraConfig::new(4, 8.0).unwrap());
    let mut policy = policy_with(&tiny_config(0.05), true, 11, lora);
    policy.set_cpu_kernels(case.cpu_kernels);
    // A reference unlike the policy, so that the KL term has a gradient from the start.
    let reference = tiny_policy(false, 12, 0.05);
    let settings = TrainConfig {
        activation_checkpointing: checkpointing,
        ..config(1e-3)
    };
    let mut trainer = Trainer::new(policy, settings).unwrap();
    let mut items = sampled_items(&trainer, 1.0);
    for (i, item) in items.iter_mut().enumerate() {
        // Varied advantages and off-policy behaviour log-probs: some ratios clip.
        item.advantage = [1.0, -0.5, 2.0, -1.5][i % 4];
        for (j, lp) in item.behaviour_logprobs.iter_mut().enumerate() {
            *lp += [0.0, 0.4, -0.4][(i + j) % 3];
        }
    }
    let demos = demonstrations(trainer.policy());
    let mut out = Vec::new();
    for _ in 0..2 {
        let stats = if case.grpo {
            trainer.grpo_step(&items, Some(&reference)).unwrap()
        } else {
            trainer.sft_step(&demos).unwrap()
        };
        assert!(!stats.skipped, "{case:?}: {stats:?}");
        if case.grpo {
            assert!(stats.kl > 0.0 && stats.clip_fraction > 0.0, "{stats:?}");
        }
        out.push((stats.loss, stats.grad_norm, weights(trainer.policy())));
    }
    out
}

type BTreeWeights = std::collections::BTreeMap<String, Vec<f32>>;

/// Checkpointed steps give the whole backward's losses and updated weights.
fn checkpointing_agrees(case: Case) {
    let whole = checkpointing_run(case, false);
    let checkpointed = checkpointing_run(case, true);
    for (step, ((la, na, wa), (lb, nb, wb))) in whole.iter().zip(&checkpointed).enumerate() {
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs().max(1e-3),
            "{case:?} step {step}: loss {la} vs {lb}"
        );
        assert!(
            (na - nb).abs() <= 1e-4 * na,
            "{case:?} step {step}: grad norm {na} vs {nb}"
        );
        assert_eq!(wa.len(), wb.len());
        let worst = wa
            .iter()
            .map(|(k, v)| common::max_abs_diff(v, &wb[k]))
            .fold(0.0, f32::max);
        eprintln!("{case:?} step {step}: loss {la} vs {lb}, max weight diff {worst:e}");
        assert!(
            worst < 1e-5,
            "{case:?} step {step}: max weight diff {worst}"
        );
    }
}

#[test]
fn activation_checkpointing_gives_the_same_lora_updates() {
    for grpo in [false, true] {
        checkpointing_agrees(Case {
            lora: true,
            grpo,
            cpu_kernels: true,
        });
    }
}

#[test]
fn activation_checkpointing_gives_the_same_full_fine_tuning_updates() {
    for grpo in [false, true] {
        checkpointing_agrees(Case {
            lora: false,
            grpo,
            cpu_kernels: true,
        });
    }
}

/// The portable primitives (what a GPU or bf16 runs) recompute as exactly as the CPU kernels.
#[test]
fn activation_checkpointing_agrees_on_the_portable_primitives() {
    for lora in [false, true] {
        checkpointing_agrees(Case {
            lora,
            grpo: true,
            cpu_kernels: false,
        });
    }
}
