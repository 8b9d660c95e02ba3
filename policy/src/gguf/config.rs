//! Llama hyper-parameters from GGUF metadata (`llama.*` keys), and the Hugging Face
//! `config.json` object they correspond to.

use serde_json::json;

use super::GgufError;
use super::metadata::{self, Metadata};

/// The hyper-parameters of a llama-architecture GGUF, checked for consistency.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LlamaHyper {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub bos_token_id: u64,
    pub eos_token_id: u64,
    pub tie_word_embeddings: bool,
}

/// llama.cpp's default RoPE base when `llama.rope.freq_base` is absent.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

impl LlamaHyper {
    /// Reads and checks the hyper-parameters. `vocab_len` is the length of
    /// `tokenizer.ggml.tokens` (used when `llama.vocab_size` is absent), `has_lm_head`
    /// whether the file holds a separate `output.weight`.
    pub(crate) fn from_metadata(
        md: &Metadata,
        vocab_len: usize,
        has_lm_head: bool,
    ) -> Result<Self, GgufError> {
        let architecture = metadata::string(md, "general.architecture")?;
        if architecture != "llama" {
            return Err(GgufError::UnsupportedArchitecture(architecture.to_owned()));
        }
        let hidden_size = metadata::usize(md, "llama.embedding_length")?;
        let num_attention_heads = metadata::usize(md, "llama.attention.head_count")?;
        let num_key_value_heads = if md.contains_key("llama.attention.head_count_kv") {
            metadata::usize(md, "llama.attention.head_count_kv")?
        } else {
            num_attention_heads
        };
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || !hidden_size.is_multiple_of(num_attention_heads)
            || !num_attention_heads.is_multiple_of(num_key_value_heads)
        {
            return Err(GgufError::InvalidConfig(format!(
                "width {hidden_size} with {num_attention_heads} heads and {num_key_value_heads} kv heads: \
                 the width must split evenly into heads and the heads into kv groups"
            )));
        }
        let head_dim = hidden_size / num_attention_heads;
        if !head_dim.is_multiple_of(2) {
            return Err(GgufError::InvalidConfig(format!(
                "head dimension {head_dim} is odd; rotary embeddings need an even one"
            )));
        }
        if md.contains_key("llama.rope.dimension_count") {
            let rope_dim = metadata::usize(md, "llama.rope.dimension_count")?;
            if rope_dim != head_dim {
                return Err(GgufError::InvalidConfig(format!(
                    "llama.rope.dimension_count = {rope_dim} differs from the head dimension {head_dim}; \
                     partial rotary embeddings are not supported"
                )));
            }
        }
        let vocab_size = if md.contains_key("llama.vocab_size") {
            metadata::usize(md, "llama.vocab_size")?
        } else {
            vocab_len
        };
        if vocab_size != vocab_len {
            return Err(GgufError::InvalidConfig(format!(
                "llama.vocab_size = {vocab_size} but tokenizer.ggml.tokens holds {vocab_len} tokens"
            )));
        }
        let rope_theta = if md.contains_key("llama.rope.freq_base") {
            metadata::float(md, "llama.rope.freq_base")?
        } else {
            DEFAULT_ROPE_THETA
        };
        Ok(Self {
            hidden_size,
            intermediate_size: metadata::usize(md, "llama.feed_forward_length")?,
            num_hidden_layers: metadata::usize(md, "llama.block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: metadata::float(md, "llama.attention.layer_norm_rms_epsilon")?,
            rope_theta,
            max_position_embeddings: metadata::usize(md, "llama.context_length")?,
            bos_token_id: metadata::uint(md, "tokenizer.ggml.bos_token_id")?,
            eos_token_id: metadata::uint(md, "tokenizer.ggml.eos_token_id")?,
            tie_word_embeddings: !has_lm_head,
        })
    }

    /// The Hugging Face `config.json` of a `LlamaForCausalLM` with these hyper-parameters.
    /// RoPE is the Hugging Face rotate-half kind: the loader un-permutes q/k accordingly.
    pub(crate) fn hf_config(&self) -> serde_json::Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": "float32",
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::Value;

    use super::*;

    fn smollm2_metadata() -> Metadata {
        let mut md = Metadata::new();
        let mut put = |k: &str, v: Value| {
            md.insert(k.to_owned(), v);
        };
        put("general.architecture", Value::String("llama".into()));
        put("llama.block_count", Value::U32(30));
        put("llama.context_length", Value::U32(8192));
        put("llama.embedding_length", Value::U32(576));
        put("llama.feed_forward_length", Value::U32(1536));
        put("llama.attention.head_count", Value::U32(9));
        put("llama.attention.head_count_kv", Value::U32(3));
        put("llama.rope.freq_base", Value::F32(100_000.0));
        put("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
        put("llama.vocab_size", Value::U32(49_152));
        put("llama.rope.dimension_count", Value::U32(64));
        put("tokenizer.ggml.bos_token_id", Value::U32(1));
        put("tokenizer.ggml.eos_token_id", Value::U32(2));
        md
    }

    #[test]
    fn smollm2_metadata_gives_its_hf_config() {
        let hyper = LlamaHyper::from_metadata(&smollm2_metadata(), 49_152, false).unwrap();
        let cfg = hyper.hf_config();
        assert_eq!(cfg["model_type"], "llama");
        assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
        assert_eq!(cfg["hidden_size"], 576);
        assert_eq!(cfg["intermediate_size"], 1536);
        assert_eq!(cfg["num_hidden_layers"], 30);
        assert_eq!(cfg["num_attention_heads"], 9);
        assert_eq!(cfg["num_key_value_heads"], 3);
        assert_eq!(cfg["head_dim"], 64);
        assert_eq!(cfg["vocab_size"], 49_152);
        assert_eq!(cfg["rms_norm_eps"], 1e-5);
        assert_eq!(cfg["rope_theta"], 100_000.0);
        assert_eq!(cfg["max_position_embeddings"], 8192);
        assert_eq!(cfg["tie_word_embeddings"], true);
        assert_eq!(cfg["bos_token_id"], 1);
        assert_eq!(cfg["eos_token_id"], 2);
        assert_eq!(cfg["torch_dtype"], "float32");
    }

    #[test]
    fn inconsistent_or_foreign_metadata_is_rejected() {
        let mut md = smollm2_metadata();
        md.insert("llama.attention.head_count_kv".into(), Value::U32(4));
        assert!(matches!(
            LlamaHyper::from_metadata(&md, 49_152, false),
            Err(GgufError::InvalidConfig(_))
        ));

        let md = smollm2_metadata();
        assert!(matches!(
            LlamaHyper::from_metadata(&md, 100, false),
            Err(GgufError::InvalidConfig(_))
        ));

        let mut md = smollm2_metadata();
        md.insert("general.architecture".into(), Value::String("qwen2".into()));
        assert!(matches!(
            LlamaHyper::from_metadata(&md, 49_152, false),
            Err(GgufError::UnsupportedArchitecture(a)) if a == "qwen2"
        ));
    }
}
