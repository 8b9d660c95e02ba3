//! The decoder's two paths over the same weights: sampling (KV cache, batched, fused kernels)
//! and scoring (full sequence, autograd) agree on every log-prob.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use arlas_policy::{Finish, LoraConfig, SamplingParams, ScoreItem};
use common::{max_abs_diff, policy_with, prompts, sampled_vs_scored, tiny_config, tiny_policy};

const TOLERANCE: f32 = 1e-4;

#[test]
fn sampled_and_scored_logprobs_agree_for_tiny() {
    let policy = tiny_policy(true, 7, 0.1);
    let params = SamplingParams {
        max_new_tokens: 24,
        temperature: 1.0,
        seed: 11,
        ..SamplingParams::default()
    };
    let worst = sampled_vs_scored(&policy, &params).max;
    eprintln!("tiny: max |sampled - scored| = {worst:e}");
    assert!(worst <= TOLERANCE, "{worst}");
}

#[test]
fn agreement_holds_for_untied_biased_grouped_and_lora_models() {
    // Qwen2-style: untied head, q/k/v bias, 4 query heads over 1 KV head.
    let mut config = tiny_config(0.1);
    config.tie_word_embeddings = false;
    config.attention_bias = Some(true);
    config.num_key_value_heads = Some(1);
    config.num_hidden_layers = 2;
    let lora = LoraConfig::new(4, 8.0).unwrap();
    for lora in [None, Some(lora)] {
        let policy = policy_with(&config, true, 3, lora);
        let params = SamplingParams {
            max_new_tokens: 16,
            temperature: 0.8,
            top_p: 0.9,
            seed: 5,
            ..SamplingParams::default()
        };
        let worst = sampled_vs_scored(&policy, &params).max;
        assert!(worst <= TOLERANCE, "{worst}");
    }
}

#[test]
fn greedy_generation_is_the_argmax_of_scoring() {
    let policy = tiny_policy(false, 9, 0.3);
    let params = SamplingParams {
        max_new_tokens: 12,
        temperature: 0.0,
        ..SamplingParams::default()
    };
    let prompts = prompts(&policy);
    let generations = policy.generate(&prompts, &params).unwrap();
    for (prompt, g) in prompts.iter().zip(&generations) {
        let mut context = prompt.clone();
        for &token in &g.tokens {
            let dist = policy
                .next_token_logprobs(&[context.clone()])
                .unwrap()
                .remove(0);
            let argmax = dist
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                    if l > best.1 { (i, l) } else { best }
                })
                .0;
            assert_eq!(token as usize, argmax);
            context.push(token);
        }
    }
}

#[test]
fn generation_is_seeded_and_stops_where_asked() {
    let policy = tiny_policy(false, 1, 0.3);
    let prompts = prompts(&policy);
    let params = SamplingParams {
        max_new_tokens: 20,
        seed: 3,
        ..SamplingParams::default()
    };
    let a = policy.generate(&prompts, &params).unwrap();
    let b = policy.generate(&prompts, &params).unwrap();
    assert_eq!(a, b);
    let c = policy
        .generate(
            &prompts,
            &SamplingParams {
                seed: 4,
                ..params.clone()
            },
        )
        .unwrap();
    assert_ne!(a, c);
    for g in &a {
        match g.finish {
            Finish::Length => assert_eq!(g.tokens.len(), 20),
            Finish::Eos => assert!(policy.eos_ids().contains(g.tokens.last().unwrap())),
            Finish::Stop => unreachable!("no stop strings were given"),
        }
    }
    // A stop string that a completion contains ends it at the token completing it.
    let (row, text) = a
        .iter()
        .enumerate()
        .map(|(i, g)| (i, policy.tokenizer().decode(&g.tokens, false).unwrap()))
        .find(|(i, t)| a[*i].finish == Finish::Length && t.chars().count() >= 8)
        .expect("some completion runs to the length limit with text to stop on");
    let stop: String = text.chars().skip(3).take(4).collect();
    let stopped = policy
        .generate(
            &prompts[row..=row],
            &SamplingParams {
                stop: vec![stop.clone()],
                ..params.clone()
            },
        )
        .unwrap()
        .remove(0);
    assert_eq!(stopped.finish, Finish::Stop);
    assert!(a[row].tokens.starts_with(&stopped.tokens));
    let out = policy.tokenizer().decode(&stopped.tokens, false).unwrap();
    assert!(out.contains(&stop));
    let shorter = policy
        .tokenizer()
        .decode(&stopped.tokens[..stopped.tokens.len() - 1], false)
        .unwrap();
    assert!(!shorter.contains(&stop));
}

#[test]
fn several_completion_spans_score_like_next_token_distributions() {
    let policy = tiny_policy(false, 4, 0.1);
    let tokens = prompts(&policy)[2].clone();
    let mut mask = vec![false; tokens.len()];
    for i in (3..8).chain(tokens.len() - 4..tokens.len()) {
        mask[i] = true;
    }
    let item = ScoreItem {
        tokens: tokens.clone(),
        mask: mask.clone(),
    };
    let scored = policy.score(std::slice::from_ref(&item)).unwrap();
    let lp = scored.logprobs_vec().unwrap().remove(0);
    let entropies = scored.entropies_vec().unwrap().remove(0);
    let positions: Vec<usize> = (0..tokens.len()).filter(|&i| mask[i]).collect();
    assert_eq!(lp.len(), positions.len());
    let contexts: Vec<Vec<u32>> = positions.iter().map(|&i| tokens[..i].to_vec()).collect();
    let dists = policy.next_token_logprobs(&contexts).unwrap();
    for ((&i, dist), (l, h)) in positions.iter().zip(&dists).zip(lp.iter().zip(&entropies)) {
        assert!((dist[tokens[i] as usize] - l).abs() < 1e-4);
        let entropy: f32 = -dist.iter().map(|&x| x.exp() * x).sum::<f32>();
        assert!((entropy - h).abs() < 1e-3, "{entropy} vs {h}");
    }
}

#[test]
fn every_trainable_variable_gets_a_gradient() {
    let mut config = tiny_config(0.3);
    config.tie_word_embeddings = false;
    config.attention_bias = Some(true);
    let policy = policy_with(&config, true, 2, None);
    let prompts = prompts(&policy);
    let items: Vec<ScoreItem> = prompts
        .iter()
        .map(|p| {
            let split = p.len() / 2;
            ScoreItem::completion(&p[..split], &p[split..])
        })
        .collect();
    let out = policy.score(&items).unwrap();
    let grads = policy.gradients(&out.logprobs.sum_all().unwrap()).unwrap();
    let names = policy.trainable_names();
    assert!(names.iter().any(|n| n.ends_with("q_proj.bias")));
    assert!(names.iter().any(|n| n == "lm_head.weight"));
    // Embeddings, head and final norm, then 12 tensors per layer (with q/k/v biases).
    assert_eq!(names.len(), 3 + 6 * 12);
    let without: Vec<&String> = names
        .iter()
        .filter(|n| {
            grads.get(*n).is_none_or(|g| {
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    == 0.0
            })
        })
        .collect();
    assert!(
        without.is_empty(),
        "variables without gradient: {without:?}"
    );
}

#[test]
fn invalid_inputs_are_rejected() {
    let policy = tiny_policy(false, 1, 0.02);
    let vocab = u32::try_from(policy.config().vocab_size).unwrap();
    assert!(
        policy
            .generate(&[vec![]], &SamplingParams::default())
            .is_err()
    );
    assert!(
        policy
            .generate(&[vec![vocab]], &SamplingParams::default())
            .is_err()
    );
    let bad_p = SamplingParams {
        top_p: 0.0,
        ..SamplingParams::default()
    };
    assert!(policy.generate(&[vec![1, 2]], &bad_p).is_err());
    let masked_first = ScoreItem {
        tokens: vec![1, 2],
        mask: vec![true, true],
    };
    assert!(policy.score(&[masked_first]).is_err());
    let mismatched = ScoreItem {
        tokens: vec![1, 2],
        mask: vec![false],
    };
    assert!(policy.score(&[mismatched]).is_err());
    let nothing = policy
        .score(&[ScoreItem {
            tokens: vec![1, 2],
            mask: vec![false, false],
        }])
        .unwrap();
    assert!(nothing.is_empty());
    assert_eq!(nothing.logprobs_vec().unwrap(), vec![Vec::<f32>::new()]);
}

#[test]
fn rows_that_finish_early_leave_the_batch_without_disturbing_the_others() {
    let policy = tiny_policy(false, 7, 0.1);
    let prompts = prompts(&policy);
    let params = SamplingParams {
        max_new_tokens: 24,
        seed: 11,
        ..SamplingParams::default()
    };
    let free = policy.generate(&prompts, &params).unwrap();
    // A stop string taken from early in row 0's completion and absent from the others.
    let texts: Vec<String> = free
        .iter()
        .map(|g| policy.tokenizer().decode(&g.tokens, false).unwrap())
        .collect();
    let chars: Vec<char> = texts[0].chars().collect();
    let stop = (1..chars.len().min(12))
        .flat_map(|start| (2..5).map(move |len| (start, len)))
        .filter(|(start, len)| start + len <= chars.len())
        .map(|(start, len)| chars[start..start + len].iter().collect::<String>())
        .find(|s| !texts[1].contains(s.as_str()) && !texts[2].contains(s.as_str()))
        .expect("row 0 has a short substring the other rows lack");
    let stopped = policy
        .generate(
            &prompts,
            &SamplingParams {
                stop: vec![stop],
                ..params.clone()
            },
        )
        .unwrap();
    assert_eq!(stopped[0].finish, Finish::Stop);
    assert!(stopped[0].tokens.len() < free[0].tokens.len());
    for row in 1..3 {
        assert_eq!(stopped[row].tokens, free[row].tokens, "row {row} changed");
        let item = ScoreItem::completion(&prompts[row], &stopped[row].tokens);
        let scored = policy
            .score(&[item])
            .unwrap()
            .logprobs_vec()
            .unwrap()
            .remove(0);
        assert!(max_abs_diff(&stopped[row].logprobs, &scored) <= TOLERANCE);
    }
}

#[test]
fn sample_bench_ignore_eos_generates_every_requested_token() {
    use arlas_policy::bench::{SampleBench, run_sample_bench};
    let policy = common::tiny_policy(false, 2, 0.5);
    let bench = |seed, ignore_eos| SampleBench {
        batch: 3,
        prompt_len: 4,
        new_tokens: 48,
        repeats: 1,
        seed,
        ignore_eos,
    };
    let nominal = 3 * 48;
    // A seed where the untouched model samples an end-of-sequence id and stops a row early.
    let seed = (0..40)
        .find(|&s| {
            run_sample_bench(&policy, &bench(s, false))
                .unwrap()
                .generated_tokens
                < nominal
        })
        .expect("some seed should sample an end-of-sequence id");
    let report = run_sample_bench(&policy, &bench(seed, true)).unwrap();
    assert_eq!(report.generated_tokens, nominal);
    assert_eq!(report.repeat_seconds.len(), 1);
    assert!(report.env.rayon_threads >= 1 && report.env.candle_threads >= 1);
}

#[test]
fn large_batches_of_a_small_model_decode_in_groups_with_the_same_samples_on_any_thread_count() {
    // 20 rows: more than one decoding group for a small model on the CPU (sampling.rs).
    let policy = tiny_policy(true, 7, 0.1);
    let base = prompts(&policy);
    let prompts: Vec<Vec<u32>> = (0..20)
        .map(|i| {
            let p = &base[i % base.len()];
            p[..p.len() - (i / base.len())].to_vec()
        })
        .collect();
    let params = SamplingParams {
        max_new_tokens: 16,
        seed: 5,
        ..SamplingParams::default()
    };
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| policy.generate(&prompts, &params).unwrap())
    };
    let two = on(2);
    assert_eq!(two, on(1), "samples depend on the thread count");
    assert_eq!(two.len(), prompts.len());
    // Every row, whichever group decoded it, is the model's own distribution.
    let items: Vec<ScoreItem> = prompts
        .iter()
        .zip(&two)
        .map(|(p, g)| ScoreItem::completion(p, &g.tokens))
        .collect();
    let scored = policy.score(&items).unwrap().logprobs_vec().unwrap();
    for (row, (g, s)) in two.iter().zip(&scored).enumerate() {
        let diff = max_abs_diff(&g.logprobs, s);
        assert!(diff <= TOLERANCE, "row {row}: {diff}");
    }
}

/// Scoring with arlas's CPU kernels (the fused attention of flash_attention.rs with its own
/// backward among them) gives the log-probs and gradients of the portable candle primitives,
/// which keep the whole attention matrix; rows of different lengths (right padding), long
/// enough for several of the kernel's query blocks and key tiles.
#[test]
fn cpu_kernels_score_and_differentiate_like_the_portable_primitives() {
    let mut config = tiny_config(0.1);
    config.num_hidden_layers = 2;
    let mut policy = policy_with(&config, true, 4, None);
    let items: Vec<ScoreItem> = prompts(&policy)
        .iter()
        .zip([300, 170, 90])
        .map(|(p, len)| ScoreItem {
            tokens: p.iter().copied().cycle().take(len).collect(),
            mask: (0..len).map(|i| i > 10).collect(),
        })
        .collect();
    let run = |policy: &arlas_policy::Policy| {
        let out = policy.score(&items).unwrap();
        let grads = policy.gradients(&out.logprobs.sum_all().unwrap()).unwrap();
        let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let grads: Vec<(String, Vec<f32>)> =
            grads.iter().map(|(k, g)| (k.clone(), flat(g))).collect();
        (flat(&out.logprobs), grads)
    };
    assert!(policy.uses_cpu_kernels());
    let (native_lp, native_grads) = run(&policy);
    policy.set_cpu_kernels(false);
    let (portable_lp, portable_grads) = run(&policy);
    let lp = max_abs_diff(&native_lp, &portable_lp);
    assert!(lp <= TOLERANCE, "log-probs differ by {lp}");
    assert_eq!(native_grads.len(), portable_grads.len());
    let mut worst = 0f32;
    for ((name, a), (other, b)) in native_grads.iter().zip(&portable_grads) {
        assert_eq!(name, other);
        // Relative to the tensor's largest gradient: most sum over hundreds of tokens.
        let largest = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = max_abs_diff(a, b) / largest.max(1e-6);
        assert!(
            diff <= 1e-4,
            "gradient of {name} differs by {diff} of {largest}"
        );
        worst = worst.max(diff);
    }
    eprintln!("cpu kernels vs portable: log-probs {lp:e}, gradients {worst:e} (relative)");
}
