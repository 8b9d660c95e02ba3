//! Sampling that continues from a [`SequenceCache`]: a multi-turn conversation prefills only
//! each turn's new tokens, the rows of a group fork one prefilled prefix, and the sampled
//! log-probs still agree with scoring the whole sequence in one pass.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use arlas_policy::{LoraConfig, SamplingParams, ScoreItem, SequenceCache};
use common::{
    chat_vs_scored, max_abs_diff, policy_with, prompts, sample_chat, tiny_config, tiny_policy,
};

const TOLERANCE: f32 = 1e-4;

fn params(seed: u64) -> SamplingParams {
    SamplingParams {
        max_new_tokens: 16,
        seed,
        ..SamplingParams::default()
    }
}

#[test]
fn a_conversation_continued_from_its_cache_scores_back_in_one_pass() {
    // The tiny model, and a Qwen2-style variant (untied head, q/k/v bias, 4 query heads over
    // 1 KV head) with and without LoRA, at temperature 1 and with temperature and top-p.
    let mut variant = tiny_config(0.1);
    variant.tie_word_embeddings = false;
    variant.attention_bias = Some(true);
    variant.num_key_value_heads = Some(1);
    variant.num_hidden_layers = 2;
    let lora = LoraConfig::new(4, 8.0).unwrap();
    let cases = [
        (tiny_config(0.1), None),
        (variant.clone(), None),
        (variant, Some(lora)),
    ];
    for (config, lora) in cases {
        let policy = policy_with(&config, true, 7, lora);
        for p in [
            params(11),
            SamplingParams {
                temperature: 0.8,
                top_p: 0.9,
                ..params(5)
            },
        ] {
            let a = chat_vs_scored(&policy, &p);
            eprintln!("conversation with cache reuse: {a:?}");
            assert!(a.max <= TOLERANCE, "{a:?}");
        }
    }
}

#[test]
fn reuse_samples_the_same_tokens_as_prefilling_every_turn() {
    let policy = tiny_policy(false, 3, 0.1);
    let starts = prompts(&policy);
    let p = params(21);
    let reused = sample_chat(&policy, &starts, &p, 4, true);
    let whole = sample_chat(&policy, &starts, &p, 4, false);
    // Same ids: the cache holds the keys and values a full pass computes, up to rounding.
    assert_eq!(reused.items, whole.items);
    for (a, b) in reused.logprobs.iter().zip(&whole.logprobs) {
        let diff = max_abs_diff(a, b);
        assert!(diff <= TOLERANCE, "{diff}");
    }
    assert_eq!(reused.prompt_tokens, whole.prompt_tokens);
    assert_eq!(whole.prefilled, whole.prompt_tokens);
    let (saved, all): (usize, usize) = (
        reused.prefilled.iter().sum(),
        reused.prompt_tokens.iter().sum(),
    );
    eprintln!("prefilled {saved} of {all} prompt tokens");
    assert!(saved * 2 < all, "{saved} of {all}");
}

#[test]
fn large_batches_decoded_in_groups_continue_their_own_caches() {
    // 20 rows: more than one decoding group for a small model on the CPU (row_groups.rs).
    let policy = tiny_policy(false, 8, 0.1);
    let base = prompts(&policy);
    let starts: Vec<Vec<u32>> = (0..20)
        .map(|i| {
            let p = &base[i % base.len()];
            p[..p.len() - (i / base.len())].to_vec()
        })
        .collect();
    let reused = sample_chat(&policy, &starts, &params(2), 3, true);
    let whole = sample_chat(&policy, &starts, &params(2), 3, false);
    assert_eq!(reused.items, whole.items);
}

#[test]
fn a_group_forks_one_prefilled_prefix() {
    let policy = tiny_policy(false, 5, 0.1);
    let chat = policy.chat();
    let mut prefix = chat.begin();
    prefix.extend(chat.system("You are a helpful agent.").unwrap());
    let prompts: Vec<Vec<u32>> = ["Hi", "Task: reply to Bob.", "Task: search", "Hi"]
        .iter()
        .map(|u| {
            let mut p = prefix.clone();
            p.extend(chat.user(u).unwrap());
            p.extend(chat.assistant_prefix().unwrap());
            p
        })
        .collect();
    let shared = policy
        .prefill(std::slice::from_ref(&prefix))
        .unwrap()
        .remove(0);
    assert_eq!(shared.tokens(), prefix.as_slice());
    let mut caches = vec![shared; prompts.len()];
    let p = params(9);
    let forked = policy.generate_cached(&prompts, &mut caches, &p).unwrap();
    let alone = policy.generate(&prompts, &p).unwrap();
    let items: Vec<ScoreItem> = prompts
        .iter()
        .zip(&forked)
        .map(|(prompt, g)| ScoreItem::completion(prompt, &g.tokens))
        .collect();
    let scored = policy.score(&items).unwrap().logprobs_vec().unwrap();
    for (r, ((g, a), s)) in forked.iter().zip(&alone).zip(&scored).enumerate() {
        assert_eq!(g.tokens, a.tokens, "row {r}");
        assert_eq!(g.prefilled, prompts[r].len() - prefix.len());
        assert_eq!(a.prefilled, prompts[r].len());
        assert!(max_abs_diff(&g.logprobs, s) <= TOLERANCE, "row {r}");
    }
}

#[test]
fn a_cache_is_used_as_far_as_it_matches_the_prompt() {
    let policy = tiny_policy(false, 6, 0.1);
    let all = prompts(&policy);
    let (a, b) = (&all[1], &all[2]);
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    assert!(common > 2 && common < a.len().min(b.len()));
    // A cache of prompt `a` and its completion serves `b` up to where they differ.
    let mut caches = vec![SequenceCache::new()];
    let p = params(4);
    policy
        .generate_cached(std::slice::from_ref(a), &mut caches, &p)
        .unwrap();
    assert_eq!(caches[0].reusable(b), common);
    let g = policy
        .generate_cached(std::slice::from_ref(b), &mut caches, &p)
        .unwrap()
        .remove(0);
    assert_eq!(g.prefilled, b.len() - common);
    let scored = policy
        .score(&[ScoreItem::completion(b, &g.tokens)])
        .unwrap()
        .logprobs_vec()
        .unwrap();
    assert!(max_abs_diff(&g.logprobs, &scored[0]) <= TOLERANCE);
    // A cache holding the whole prompt still feeds its last token (for the logits).
    let mut caches = policy.prefill(std::slice::from_ref(a)).unwrap();
    let g = policy
        .generate_cached(std::slice::from_ref(a), &mut caches, &p)
        .unwrap()
        .remove(0);
    assert_eq!(g.prefilled, 1);
    let plain = policy
        .generate(std::slice::from_ref(a), &p)
        .unwrap()
        .remove(0);
    assert_eq!(g.tokens, plain.tokens);
}

#[test]
fn caches_belong_to_their_policy_and_to_their_prompt() {
    let (one, other) = (tiny_policy(false, 1, 0.1), tiny_policy(false, 1, 0.1));
    let prompt = prompts(&one).remove(0);
    let mut caches = one.prefill(std::slice::from_ref(&prompt)).unwrap();
    let err = other
        .generate_cached(std::slice::from_ref(&prompt), &mut caches, &params(0))
        .unwrap_err();
    assert!(err.to_string().contains("another policy"), "{err}");
    let err = one
        .generate_cached(&[prompt.clone(), prompt.clone()], &mut caches, &params(0))
        .unwrap_err();
    assert!(
        err.to_string().contains("1 sequence caches for 2 prompts"),
        "{err}"
    );
    // Nothing to sample: nothing computed, the cache unchanged.
    let none = SamplingParams {
        max_new_tokens: 0,
        ..params(0)
    };
    let g = one
        .generate_cached(std::slice::from_ref(&prompt), &mut caches, &none)
        .unwrap();
    assert_eq!((g[0].tokens.len(), g[0].prefilled), (0, 0));
    assert_eq!(caches[0].tokens(), prompt.as_slice());
    caches[0].clear();
    assert!(caches[0].is_empty());
}
