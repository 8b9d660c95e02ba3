//! Model families past SmolLM2's shape: Llama 3.x (`rope_scaling` of type `llama3`) and
//! Qwen3 (per-head q/k RMSNorm before RoPE, a head width that is not hidden / heads).
//!
//! Each test writes a small random-weight model in Hugging Face layout (config.json,
//! model.safetensors, tokenizer.json), loads it back as a model directory, and checks it
//! against candle-transformers' model of the family run on the same safetensors: next-token
//! log-probs at every prefix within 1e-4, and greedy generations token for token. The
//! Qwen3 one also checks that arlas's two paths (KV-cache sampling with its fused kernels,
//! autograd scoring) agree on the sampled log-probs.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::Path;

use arlas_policy::{
    ChatFormat, LlamaConfig, LoadOptions, LoraConfig, ModelSpec, Policy, Precision, SamplingParams,
    TrainConfig, Trainer, save_policy,
};
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, qwen3};
use common::{max_abs_diff, sampled_vs_scored, tokenizer};

const TOLERANCE: f32 = 1e-4;
const GREEDY_TOKENS: usize = 24;

/// A config.json for a 2-layer model of `model_type` over the test tokenizer, plus `extra`.
fn config(model_type: &str, extra: serde_json::Value) -> LlamaConfig {
    let mut value = serde_json::json!({
        "architectures": [if model_type == "qwen3" { "Qwen3ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": model_type,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": tokenizer().vocab_size(),
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": false, "initializer_range": 0.25,
        "attention_bias": false, "hidden_act": "silu",
    });
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    LlamaConfig::from_value(value).unwrap()
}

/// Writes a random model of `config` to `dir` and loads it back as a model directory.
fn written_and_loaded(config: &LlamaConfig, dir: &Path) -> Policy {
    write_random(config, dir);
    Policy::load(
        &ModelSpec::Path(dir.to_path_buf()),
        &Device::Cpu,
        &f32_options(),
    )
    .unwrap()
}

fn f32_options() -> LoadOptions {
    LoadOptions {
        seed: 17,
        precision: Some(Precision::F32),
        ..LoadOptions::default()
    }
}

fn write_random(config: &LlamaConfig, dir: &Path) {
    let options = f32_options();
    let random = Policy::random(
        config,
        tokenizer(),
        ChatFormat::Tiny,
        &Device::Cpu,
        &options,
        "family-test",
    )
    .unwrap();
    save_policy(&random, dir).unwrap();
    perturb_norms(dir);
}

/// Gives every RMSNorm weight its own values (random init leaves them all ones, under which
/// a q norm applied to k, or a norm left out, would go unseen), and drops arlas's manifest, as
/// a Hugging Face directory has none.
fn perturb_norms(dir: &Path) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for (name, tensor) in &mut tensors {
        if name.ends_with("norm.weight") {
            let values: Vec<f32> = (0..tensor.elem_count())
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    #[allow(clippy::cast_precision_loss)]
                    let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                    0.5 + unit
                })
                .collect();
            *tensor = Tensor::from_vec(values, tensor.dims(), &Device::Cpu).unwrap();
        }
    }
    candle_core::safetensors::save(&tensors, &path).unwrap();
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
}

fn safetensors(dir: &Path) -> VarBuilder<'static> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
}

/// The reference model: next-token logits `(vocab,)` of the last position of `ids`, fed at
/// position `offset` (after what its cache holds), and a way to forget the cache.
trait Reference {
    fn logits(&mut self, ids: &[u32], offset: usize) -> Tensor;
    fn reset(&mut self);
}

struct CandleLlama {
    model: llama::Llama,
    config: llama::Config,
    cache: llama::Cache,
}

impl CandleLlama {
    fn new(dir: &Path) -> Self {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let config = serde_json::from_str::<llama::LlamaConfig>(&text)
            .unwrap()
            .into_config(false);
        let model = llama::Llama::load(safetensors(dir), &config).unwrap();
        let cache = llama::Cache::new(true, DType::F32, &config, &Device::Cpu).unwrap();
        Self {
            model,
            config,
            cache,
        }
    }
}

impl Reference for CandleLlama {
    fn logits(&mut self, ids: &[u32], offset: usize) -> Tensor {
        let x = Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = self.model.forward(&x, offset, &mut self.cache).unwrap();
        logits.squeeze(0).unwrap()
    }

    fn reset(&mut self) {
        self.cache = llama::Cache::new(true, DType::F32, &self.config, &Device::Cpu).unwrap();
    }
}

struct CandleQwen3(qwen3::ModelForCausalLM);

impl CandleQwen3 {
    fn new(dir: &Path) -> Self {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let config: qwen3::Config = serde_json::from_str(&text).unwrap();
        Self(qwen3::ModelForCausalLM::new(&config, safetensors(dir)).unwrap())
    }
}

impl Reference for CandleQwen3 {
    fn logits(&mut self, ids: &[u32], offset: usize) -> Tensor {
        let x = Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = self.0.forward(&x, offset).unwrap();
        logits.flatten_all().unwrap().to_dtype(DType::F32).unwrap()
    }

    fn reset(&mut self) {
        self.0.clear_kv_cache();
    }
}

fn log_softmax(logits: &Tensor) -> Vec<f32> {
    candle_nn::ops::log_softmax(logits, D::Minus1)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn argmax(xs: &Tensor) -> u32 {
    xs.argmax(D::Minus1).unwrap().to_scalar::<u32>().unwrap()
}

/// A chat prompt of a few dozen tokens.
fn prompt(policy: &Policy) -> Vec<u32> {
    common::prompts(policy).pop().unwrap()
}

/// Next-token log-probs at every prefix of the prompt (the reference without a cache), then
/// greedy generation (the reference with its cache) token for token.
fn matches_reference(policy: &Policy, reference: &mut dyn Reference) {
    let prompt = prompt(policy);
    let mut worst = 0.0f32;
    for end in [1, prompt.len() / 2, prompt.len()] {
        let context = prompt[..end].to_vec();
        let ours = policy.next_token_logprobs(&[context]).unwrap().remove(0);
        reference.reset();
        let theirs = log_softmax(&reference.logits(&prompt[..end], 0));
        worst = worst.max(max_abs_diff(&ours, &theirs));
    }
    eprintln!("max |arlas - candle-transformers| log-prob: {worst:e}");
    assert!(worst <= TOLERANCE, "{worst}");

    reference.reset();
    let mut expected = vec![argmax(&reference.logits(&prompt, 0))];
    while expected.len() < GREEDY_TOKENS {
        let pos = prompt.len() + expected.len() - 1;
        let last = *expected.last().unwrap();
        expected.push(argmax(&reference.logits(&[last], pos)));
    }
    let params = SamplingParams {
        max_new_tokens: GREEDY_TOKENS,
        temperature: 0.0,
        ..SamplingParams::default()
    };
    let ours = policy.generate(&[prompt], &params).unwrap().remove(0);
    assert!(!ours.tokens.is_empty());
    // arlas stops at an end-of-sequence token; up to there the tokens are the same.
    assert_eq!(ours.tokens, expected[..ours.tokens.len()], "greedy tokens");
}

#[test]
fn llama3_rope_scaling_matches_candle_transformers() {
    // Wavelengths with head width 16 and base 1e4: 6.3, 20, 63, 199, ... against the band
    // [64 / 4, 64 / 1]: one pair kept, two interpolated, the rest slowed by the factor.
    let config = llama3_config();
    let dir = tempfile::tempdir().unwrap();
    let policy = written_and_loaded(&config, dir.path());
    matches_reference(&policy, &mut CandleLlama::new(dir.path()));

    // The scaling changes the model: the same weights without it give other log-probs.
    let mut plain = config.clone();
    plain.rope_scaling = None;
    let unscaled_dir = tempfile::tempdir().unwrap();
    let unscaled = written_and_loaded(&plain, unscaled_dir.path());
    let context = vec![prompt(&policy)];
    let a = policy.next_token_logprobs(&context).unwrap().remove(0);
    let b = unscaled.next_token_logprobs(&context).unwrap().remove(0);
    assert!(max_abs_diff(&a, &b) > 1e-3, "rope scaling had no effect");
}

fn llama3_config() -> LlamaConfig {
    config(
        "llama",
        serde_json::json!({"rope_scaling": {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64
        }}),
    )
}

fn qwen3_config() -> LlamaConfig {
    // Head width 32 with hidden 64 and 4 heads: q is 128 wide, o_proj maps it back to 64.
    config(
        "qwen3",
        serde_json::json!({"head_dim": 32, "use_sliding_window": false,
            "sliding_window": null, "max_window_layers": 2, "rope_scaling": null}),
    )
}

#[test]
fn adapters_train_over_a_frozen_base_of_each_family() {
    for config in [llama3_config(), qwen3_config()] {
        let dir = tempfile::tempdir().unwrap();
        write_random(&config, dir.path());
        let options = LoadOptions {
            lora: Some(LoraConfig::new(4, 8.0).unwrap()),
            trainable: true,
            ..f32_options()
        };
        let spec = ModelSpec::Path(dir.path().to_path_buf());
        let policy = Policy::load(&spec, &Device::Cpu, &options).unwrap();
        let base_before = common::weights(&policy);
        let items = common::demonstrations(&policy);
        let train = TrainConfig {
            learning_rate: 1e-2,
            warmup_steps: 1,
            total_steps: 8,
            micro_batch_size: 8,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(policy, train).unwrap();
        let first = trainer.sft_step(&items).unwrap();
        let mut last = first;
        for _ in 0..7 {
            last = trainer.sft_step(&items).unwrap();
            assert!(!last.skipped);
        }
        eprintln!(
            "{}: sft loss {:.3} -> {:.3}",
            config.model_type, first.loss, last.loss
        );
        assert!(
            last.loss < first.loss * 0.8,
            "{} -> {}",
            first.loss,
            last.loss
        );
        let policy = trainer.into_policy();
        let base_after = common::weights(&policy);
        for (name, before) in &base_before {
            if !name.contains("lora_") {
                assert_eq!(Some(before), base_after.get(name), "{name} moved");
            }
        }
        // The trained adapters are folded into the sampling path's stacked projections.
        let params = SamplingParams {
            max_new_tokens: 12,
            temperature: 1.0,
            seed: 4,
            ..SamplingParams::default()
        };
        let agreement = sampled_vs_scored(&policy, &params);
        assert!(agreement.max <= TOLERANCE, "{agreement:?}");
    }
}

#[test]
fn qwen3_qk_norms_match_candle_transformers() {
    let config = qwen3_config();
    assert!(config.qk_norm());
    let dir = tempfile::tempdir().unwrap();
    let policy = written_and_loaded(&config, dir.path());
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let k_norm = &tensors["model.layers.1.self_attn.k_norm.weight"];
    assert_eq!(k_norm.dims(), [32]);
    matches_reference(&policy, &mut CandleQwen3::new(dir.path()));

    let params = SamplingParams {
        max_new_tokens: 16,
        temperature: 1.0,
        seed: 3,
        ..SamplingParams::default()
    };
    let agreement = sampled_vs_scored(&policy, &params);
    assert!(agreement.max <= TOLERANCE, "{agreement:?}");
}

#[test]
fn published_configs_parse_with_their_sizes() {
    // config.json of Llama-3.2-1B-Instruct and Qwen3-0.6B as published.
    let llama = r#"{"architectures": ["LlamaForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
        "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
        "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
        "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256}"#;
    let qwen = r#"{"architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02,
        "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28,
        "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": null,
        "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
        "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true,
        "use_sliding_window": false, "vocab_size": 151936}"#;
    let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let llama = LlamaConfig::from_value(value(llama)).unwrap();
    assert!(llama.rope_scaling().unwrap().is_some());
    assert_eq!(llama.num_parameters(), 1_235_814_400);
    let qwen = LlamaConfig::from_value(value(qwen)).unwrap();
    assert!(qwen.qk_norm() && !qwen.qkv_bias());
    // Qwen3-0.6B: 0.44B without the (tied) embedding.
    assert_eq!(qwen.num_parameters(), 596_049_920);
}

#[test]
fn unsupported_config_fields_are_errors_naming_them() {
    let cases = [
        (
            serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}),
            "yarn",
        ),
        (
            serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}),
            "low_freq_factor",
        ),
        (
            serde_json::json!({"use_sliding_window": true, "sliding_window": 64}),
            "use_sliding_window",
        ),
        (serde_json::json!({"sliding_window": 64}), "sliding_window"),
        (
            serde_json::json!({"final_logit_softcapping": 30.0}),
            "final_logit_softcapping",
        ),
        (
            serde_json::json!({"layer_types": ["sliding_attention", "full_attention"]}),
            "layer_types",
        ),
        (
            serde_json::json!({"model_type": "gemma3_text"}),
            "gemma3_text",
        ),
    ];
    for (extra, named) in cases {
        let mut value = serde_json::to_value(config("llama", serde_json::json!({}))).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        let err = LlamaConfig::from_value(value).unwrap_err().to_string();
        assert!(err.contains(named), "{extra}: {err}");
    }
    // Values that change nothing, as Hugging Face writes them, load.
    config(
        "qwen3",
        serde_json::json!({"use_sliding_window": false, "sliding_window": 4096,
            "attention_dropout": 0.0, "layer_types": ["full_attention", "full_attention"]}),
    );
}
