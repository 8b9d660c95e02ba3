//! The paths a GPU takes, checked on every device and dtype this build can run: the CPU in
//! f32 with arlas's kernels (decoder.rs covers it) and without them (the portable candle
//! primitives a GPU runs), the CPU in bf16 (always the primitives), and CUDA in f32 and bf16
//! when the build has the `cuda` feature and a GPU is visible; otherwise the CUDA tests print
//! `SKIPPED` and pass.
//!
//! Tolerances on max |sampled - scored| (every token of three prompts; batched, unbatched,
//! with and without autograd; and of a four-turn conversation sampled with cache reuse,
//! scored in one pass; the behaviour log-prob convention of sampling/mod.rs):
//! - f32, CPU: 1e-4 (measured ~1e-6): the two paths differ only in summation order.
//! - f32, CUDA: 1e-3: cuBLAS picks different kernels (and split-K reductions) for a decoding
//!   step's one row and a scoring pass's many, so the orders differ more than on the CPU.
//! - bf16: 0.35 max and 0.05 mean. Activations are rounded to bf16 (8 bits of mantissa, a
//!   relative step of 2^-8) after every matmul, and batched decoding and full-sequence scoring
//!   group the same sums differently, so they round differently; the differences compound
//!   through the layers into the logits. Measured on the CPU: the random tiny models 0.011 max,
//!   0.0008 mean (0.031 / 0.004 with the ~250-token conversations, the same with and without
//!   cache reuse: longer sequences, more rounding); SmolLM2 (30 layers, logits in the tens) 0.13 max, 0.019 mean, and still 0.10
//!   / 0.019 with an f32 LM head, so the activations, not the head, carry it. The bounds are
//!   about 2.5x SmolLM2's: they catch a broken path (a wrong mask, position or cache row moves
//!   log-probs by whole nats), not rounding, which learners correct with importance ratios
//!   and export as the sampler-vs-learner mismatch metric.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use arlas_policy::{
    Device, LoraConfig, Policy, Precision, SamplingParams, ScoreItem, SftItem, TrainConfig, Trainer,
};
use candle_core::DType;
use common::{
    Agreement, chat_vs_scored, demonstrations, policy_on, prompts, sampled_vs_scored, tiny_config,
};

const F32_CPU: f32 = 1e-4;
const F32_CUDA: f32 = 1e-3;
const BF16_MAX: f32 = 0.35;
const BF16_MEAN: f32 = 0.05;

/// The GPU, when this build has CUDA and one is visible; `None` after saying why not.
fn cuda(test: &str) -> Option<Device> {
    match arlas_policy::device_from_name("cuda") {
        Ok(device) => Some(device),
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}

fn params() -> SamplingParams {
    SamplingParams {
        max_new_tokens: 24,
        temperature: 1.0,
        seed: 11,
        ..SamplingParams::default()
    }
}

/// Sampled vs scored log-probs on `device` in `precision` (arlas's CPU kernels off when
/// `portable`), for the tiny model and a Qwen2-style variant (untied head, q/k/v bias, one KV
/// head) with and without LoRA; the worst of them.
fn agreement(device: &Device, precision: Precision, portable: bool) -> Agreement {
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
    let mut worst = Agreement {
        max: 0.0,
        mean: 0.0,
        tokens: 0,
    };
    for (config, lora) in cases {
        let mut policy = policy_on(&config, true, 7, lora, device, precision);
        policy.set_cpu_kernels(!portable);
        assert_eq!(
            policy.uses_cpu_kernels(),
            device.is_cpu() && precision == Precision::F32 && !portable
        );
        // One batch of prompts, and a conversation continued from its caches turn by turn.
        for a in [
            sampled_vs_scored(&policy, &params()),
            chat_vs_scored(&policy, &params()),
        ] {
            worst.max = worst.max.max(a.max);
            worst.mean = worst.mean.max(a.mean);
            worst.tokens += a.tokens;
        }
    }
    eprintln!(
        "{device:?} {precision}{}: max |sampled - scored| = {:.3e}, mean {:.3e} over {} tokens",
        if portable { " (portable ops)" } else { "" },
        worst.max,
        worst.mean,
        worst.tokens
    );
    worst
}

#[test]
fn cpu_f32_portable_ops_agree_like_the_cpu_kernels() {
    let a = agreement(&Device::Cpu, Precision::F32, true);
    assert!(a.max <= F32_CPU, "{a:?}");
}

#[test]
fn cpu_bf16_sampled_and_scored_logprobs_agree() {
    let a = agreement(&Device::Cpu, Precision::Bf16, false);
    assert!(a.max <= BF16_MAX && a.mean <= BF16_MEAN, "{a:?}");
}

#[test]
fn cuda_f32_sampled_and_scored_logprobs_agree() {
    let Some(gpu) = cuda("cuda_f32_sampled_and_scored_logprobs_agree") else {
        return;
    };
    let a = agreement(&gpu, Precision::F32, false);
    assert!(a.max <= F32_CUDA, "{a:?}");
}

#[test]
fn cuda_bf16_sampled_and_scored_logprobs_agree() {
    let Some(gpu) = cuda("cuda_bf16_sampled_and_scored_logprobs_agree") else {
        return;
    };
    let a = agreement(&gpu, Precision::Bf16, false);
    assert!(a.max <= BF16_MAX && a.mean <= BF16_MEAN, "{a:?}");
}

/// Every variable of an untied, biased model gets a non-zero f32 gradient through the bf16
/// casts, and the variables themselves are f32 (the optimizer's master weights).
fn gradients_reach_every_variable(device: &Device) {
    let mut config = tiny_config(0.3);
    config.tie_word_embeddings = false;
    config.attention_bias = Some(true);
    let policy = policy_on(&config, true, 2, None, device, Precision::Bf16);
    assert_eq!(policy.precision(), Precision::Bf16);
    let items: Vec<ScoreItem> = prompts(&policy)
        .iter()
        .map(|p| ScoreItem::completion(&p[..p.len() / 2], &p[p.len() / 2..]))
        .collect();
    let out = policy.score(&items).unwrap();
    assert_eq!(out.logprobs.dtype(), DType::F32);
    let grads = policy.gradients(&out.logprobs.sum_all().unwrap()).unwrap();
    let names = policy.trainable_names();
    assert_eq!(names.len(), 3 + 6 * 12);
    for (name, tensor) in policy.weight_tensors() {
        assert_eq!(
            tensor.dtype(),
            DType::F32,
            "{name} is not an f32 master weight"
        );
    }
    let without: Vec<&String> = names
        .iter()
        .filter(|n| {
            grads.get(*n).is_none_or(|g| {
                assert_eq!(g.dtype(), DType::F32, "{n}");
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
fn bf16_gradients_reach_every_variable_on_the_cpu() {
    gradients_reach_every_variable(&Device::Cpu);
}

#[test]
fn bf16_gradients_reach_every_variable_on_cuda() {
    if let Some(gpu) = cuda("bf16_gradients_reach_every_variable_on_cuda") {
        gradients_reach_every_variable(&gpu);
    }
}

/// bf16 training moves the f32 master weights by steps bf16 cannot hold (a 1e-5 step on a
/// weight of 0.1 is below bf16's resolution there, 2^-11 ≈ 5e-4), and SFT still learns.
fn trains_with_f32_master_weights(device: &Device) {
    let config = tiny_config(0.1);
    let policy = policy_on(&config, true, 4, None, device, Precision::Bf16);
    let items: Vec<SftItem> = demonstrations(&policy);
    let before = common::weights(&policy);
    let mut tiny_steps = Trainer::new(
        policy,
        TrainConfig {
            learning_rate: 1e-5,
            micro_batch_size: 8,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let stats = tiny_steps.sft_step(&items).unwrap();
    assert!(!stats.skipped && stats.loss.is_finite(), "{stats:?}");
    let after = common::weights(tiny_steps.policy());
    let moved = before
        .iter()
        .flat_map(|(name, w)| w.iter().zip(&after[name]).map(|(a, b)| (a - b).abs()))
        .fold(0.0f32, f32::max);
    assert!(moved > 0.0 && moved < 1e-4, "largest weight change {moved}");

    let policy = policy_on(&config, true, 4, None, device, Precision::Bf16);
    let mut trainer = Trainer::new(
        policy,
        TrainConfig {
            learning_rate: 3e-3,
            micro_batch_size: 8,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let first = trainer.sft_step(&items).unwrap().loss;
    let mut last = first;
    for _ in 0..15 {
        last = trainer.sft_step(&items).unwrap().loss;
    }
    eprintln!("{device:?} bf16 SFT: loss {first:.3} -> {last:.3}");
    assert!(last < 0.7 * first, "{first} -> {last}");
}

#[test]
fn bf16_training_keeps_f32_master_weights_on_the_cpu() {
    trains_with_f32_master_weights(&Device::Cpu);
}

#[test]
fn bf16_training_keeps_f32_master_weights_on_cuda() {
    if let Some(gpu) = cuda("bf16_training_keeps_f32_master_weights_on_cuda") {
        trains_with_f32_master_weights(&gpu);
    }
}

/// A frozen bf16 policy (an actor) stores bf16, takes a trainable policy's f32 weights, and
/// samples exactly what a bf16 copy of the learner samples.
#[test]
fn frozen_bf16_policies_take_f32_weights_from_learners() {
    let config = tiny_config(0.1);
    let learner = policy_on(&config, true, 9, None, &Device::Cpu, Precision::Bf16);
    let mut actor = policy_on(&config, false, 1, None, &Device::Cpu, Precision::Bf16);
    assert!(
        actor
            .weight_tensors()
            .values()
            .all(|t| t.dtype() == DType::BF16)
    );
    actor
        .load_weights_from_safetensors(&learner.weights_to_safetensors().unwrap())
        .unwrap();
    assert!(
        actor
            .weight_tensors()
            .values()
            .all(|t| t.dtype() == DType::BF16)
    );
    let reference = learner.frozen_copy().unwrap();
    assert!(!reference.is_trainable());
    let prompts = prompts(&actor);
    let a = actor.generate(&prompts, &params()).unwrap();
    assert_eq!(a, learner.generate(&prompts, &params()).unwrap());
    assert_eq!(a, reference.generate(&prompts, &params()).unwrap());
}

#[test]
fn every_policy_reports_its_precision_and_defaults_to_f32_on_the_cpu() {
    let options = arlas_policy::LoadOptions::default();
    assert_eq!(options.precision_on(&Device::Cpu), Precision::F32);
    let policy: Policy = common::tiny_policy(false, 1, 0.1);
    assert_eq!(policy.precision(), Precision::F32);
    assert!(policy.uses_cpu_kernels());
}

/// SmolLM2-135M-Instruct on `device` in `precision`, when its GGUF is in the models directory
/// (`ARLAS_MODELS_DIR`, else the repository's `models/`); `None` after saying why not.
fn smollm2(device: &Device, precision: Precision, test: &str) -> Option<Policy> {
    let models = std::env::var_os("ARLAS_MODELS_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"),
        std::path::PathBuf::from,
    );
    let gguf = arlas_policy::fetch::smollm2_gguf_path(&models);
    if !gguf.is_file() {
        eprintln!(
            "SKIPPED {test}: {} is absent; run `arlas model fetch smollm2`",
            gguf.display()
        );
        return None;
    }
    let options = arlas_policy::LoadOptions {
        models_dir: models,
        precision: Some(precision),
        ..arlas_policy::LoadOptions::default()
    };
    Some(Policy::load(&arlas_policy::ModelSpec::SmolLM2, device, &options).unwrap())
}

/// A real model's logits are large (tens), so bf16's rounding shows more than on the random
/// tiny models: sampled vs scored on two chat prompts, and the greedy answer still names Paris.
fn smollm2_agrees_and_answers(device: &Device, precision: Precision, max: f32, mean: f32) {
    let test = format!("smollm2 on {device:?} in {precision}");
    let Some(policy) = smollm2(device, precision, &test) else {
        return;
    };
    let chat = policy.chat();
    let prompt = |question: &str| chat.prompt(None, question).unwrap();
    let prompts = vec![
        prompt("Hi!"),
        prompt("Write one sentence about the sea, then stop."),
    ];
    let params = SamplingParams {
        max_new_tokens: 16,
        seed: 7,
        ..SamplingParams::default()
    };
    let a = common::sampled_vs_scored_prompts(&policy, &prompts, &params);
    eprintln!(
        "{test}: max |sampled - scored| = {:.3e}, mean {:.3e} over {} tokens",
        a.max, a.mean, a.tokens
    );
    let greedy = SamplingParams {
        max_new_tokens: 24,
        temperature: 0.0,
        ..SamplingParams::default()
    };
    let g = policy
        .generate(&[prompt("What is the capital of France?")], &greedy)
        .unwrap()
        .remove(0);
    let answer = policy.tokenizer().decode(&g.tokens, true).unwrap();
    eprintln!("{test}: {answer:?}");
    assert!(answer.contains("Paris"), "{answer}");
    assert!(a.max <= max && a.mean <= mean, "{a:?}");
}

#[test]
fn smollm2_bf16_on_the_cpu_agrees_and_answers() {
    smollm2_agrees_and_answers(&Device::Cpu, Precision::Bf16, BF16_MAX, BF16_MEAN);
}

#[test]
fn smollm2_on_cuda_agrees_and_answers_in_f32_and_bf16() {
    let Some(gpu) = cuda("smollm2_on_cuda_agrees_and_answers_in_f32_and_bf16") else {
        return;
    };
    smollm2_agrees_and_answers(&gpu, Precision::F32, F32_CUDA, F32_CUDA);
    smollm2_agrees_and_answers(&gpu, Precision::Bf16, BF16_MAX, BF16_MEAN);
}
