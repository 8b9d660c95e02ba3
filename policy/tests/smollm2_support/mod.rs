//! Shared by the SmolLM2 tests: where the GGUF is, and candle-transformers' `quantized_llama`
//! on it as the trusted reference.
#![allow(dead_code)]
// Test support: a panic is a test failure.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::PathBuf;
use std::time::Instant;

use arlas_policy::fetch::smollm2_gguf_path;
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

/// The ChatML prompt SmolLM2's chat template renders for this one user message.
pub const QUESTION_PROMPT: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
/// A plain-text prompt with digits.
pub const PLAIN_PROMPT: &str = "The quick brown fox jumps over the lazy dog. 12345";
/// `<|im_end|>`, the end of an assistant turn.
pub const IM_END: u32 = 2;

/// The models directory: `$ARLAS_MODELS_DIR`, else the repository's `models/`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("ARLAS_MODELS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"),
        PathBuf::from,
    )
}

/// The GGUF's path, or `None` (with a SKIPPED message) when it has not been fetched.
pub fn gguf_path() -> Option<PathBuf> {
    let path = smollm2_gguf_path(&models_dir());
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; run scripts/fetch-smollm2.sh to fetch it",
            path.display()
        );
        None
    }
}

pub fn gguf_content() -> (Content, BufReader<File>) {
    let path = gguf_path().unwrap();
    let mut reader = BufReader::new(File::open(path).unwrap());
    (Content::read(&mut reader).unwrap(), reader)
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar()
        .unwrap()
}

pub fn argmax(logits: &Tensor) -> u32 {
    logits
        .flatten_all()
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// candle's `quantized_llama` on the GGUF exactly as llama.cpp lays it out (permuted q/k,
/// interleaved RoPE), with every weight stored as f32 (an in-memory copy of the file with the
/// same metadata): an implementation independent of our conversion, computing in f32.
pub fn reference_f32() -> ModelWeights {
    let dev = Device::Cpu;
    let (content, mut reader) = gguf_content();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(&str, QTensor)> = names
        .into_iter()
        .map(|name| {
            let t = content
                .tensor(&mut reader, name, &dev)
                .unwrap()
                .dequantize(&dev)
                .unwrap();
            (
                name.as_str(),
                QTensor::quantize(&t, GgmlDType::F32).unwrap(),
            )
        })
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let mut file = Cursor::new(Vec::new());
    gguf_file::write(&mut file, &metadata, &tensor_refs).unwrap();
    file.set_position(0);
    let content = Content::read(&mut file).unwrap();
    ModelWeights::from_gguf(content, &mut file, &dev).unwrap()
}

/// candle's `quantized_llama` straight on the Q4_1 GGUF: on CPU its matmuls quantize the
/// activations to Q8_1 and multiply in integers (like llama.cpp), so it is only approximate.
pub fn reference_q4() -> ModelWeights {
    let (content, mut reader) = gguf_content();
    ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap()
}

/// Greedy answer to the prompt (stops at `<|im_end|>` or 40 tokens), with tokens/s.
pub fn greedy(model: &mut ModelWeights, prompt: &[u32]) -> (Vec<u32>, f64) {
    let dev = Device::Cpu;
    let input = Tensor::new(prompt, &dev).unwrap().unsqueeze(0).unwrap();
    let mut next = argmax(&model.forward(&input, 0).unwrap());
    let mut answer = Vec::new();
    let start = Instant::now();
    while next != IM_END && answer.len() < 40 {
        answer.push(next);
        let input = Tensor::new(&[next], &dev).unwrap().unsqueeze(0).unwrap();
        next = argmax(
            &model
                .forward(&input, prompt.len() + answer.len() - 1)
                .unwrap(),
        );
    }
    let per_s = answer.len() as f64 / start.elapsed().as_secs_f64();
    (answer, per_s)
}

pub fn first_token_logits(model: &mut ModelWeights, prompt: &[u32]) -> Tensor {
    let input = Tensor::new(prompt, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model.clear_kv_cache();
    model.forward(&input, 0).unwrap().squeeze(0).unwrap()
}
