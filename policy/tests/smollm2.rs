//! SmolLM2-135M-Instruct through `Policy`: sampled and scored log-probs agree to 1e-4, and
//! it answers a simple factual question.
//!
//! Skips with a message when the GGUF is absent: fetch it with `arlas model fetch smollm2`
//! or `scripts/fetch-smollm2.sh` (or point `ARLAS_MODELS_DIR` at a models directory).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::sync::OnceLock;

use arlas_policy::fetch::smollm2_gguf_path;
use arlas_policy::{ChatFormat, LoadOptions, ModelSpec, Policy, SamplingParams, ScoreItem};
use candle_core::Device;

const SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

fn policy() -> Option<&'static Policy> {
    static POLICY: OnceLock<Option<Policy>> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            let models = std::env::var_os("ARLAS_MODELS_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"),
                PathBuf::from,
            );
            if !smollm2_gguf_path(&models).is_file() {
                eprintln!(
                    "SKIPPED: {} is absent; run `arlas model fetch smollm2` to fetch it",
                    smollm2_gguf_path(&models).display()
                );
                return None;
            }
            let options = LoadOptions {
                models_dir: models,
                ..LoadOptions::default()
            };
            Some(Policy::load(&ModelSpec::SmolLM2, &Device::Cpu, &options).unwrap())
        })
        .as_ref()
}

fn chat_prompt(policy: &Policy, question: &str) -> Vec<u32> {
    policy.chat().prompt(Some(SYSTEM), question).unwrap()
}

#[test]
fn smollm2_sampled_and_scored_logprobs_agree() {
    let Some(policy) = policy() else { return };
    assert_eq!(policy.chat().format(), ChatFormat::Template);
    let prompts = vec![
        chat_prompt(policy, "Hi!"),
        chat_prompt(policy, "Write one sentence about the sea, then stop."),
    ];
    let params = SamplingParams {
        max_new_tokens: 16,
        temperature: 1.0,
        seed: 7,
        ..SamplingParams::default()
    };
    let generations = policy.generate(&prompts, &params).unwrap();
    let items: Vec<ScoreItem> = prompts
        .iter()
        .zip(&generations)
        .map(|(p, g)| ScoreItem::completion(p, &g.tokens))
        .collect();
    let scored = policy.score(&items).unwrap().logprobs_vec().unwrap();
    let mut worst = 0.0f32;
    for (g, s) in generations.iter().zip(&scored) {
        for (a, b) in g.logprobs.iter().zip(s) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("smollm2: max |sampled - scored| = {worst:e}");
    assert!(worst <= 1e-4, "{worst}");
}

#[test]
fn smollm2_answers_a_factual_question() {
    let Some(policy) = policy() else { return };
    let prompt = chat_prompt(policy, "What is the capital of France?");
    let params = SamplingParams {
        max_new_tokens: 24,
        temperature: 0.0,
        ..SamplingParams::default()
    };
    let g = policy.generate(&[prompt], &params).unwrap().remove(0);
    let answer = policy.tokenizer().decode(&g.tokens, true).unwrap();
    eprintln!("smollm2 answer: {answer:?}");
    assert!(answer.contains("Paris"), "{answer}");
}
