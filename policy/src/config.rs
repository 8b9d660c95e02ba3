//! `LlamaConfig`: the model shape, mirroring a Hugging Face `config.json`.
//!
//! The same file describes SmolLM2, Llama and Qwen2-style models; unknown keys are kept
//! (in `extra`) so that a loaded config is written back unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One token id or several (Hugging Face allows both for `eos_token_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

/// The architecture of a Llama-family decoder, field names as in Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `["LlamaForCausalLM"]` or `["Qwen2ForCausalLM"]`: what transformers instantiates.
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    /// `llama` or `qwen2`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: heads of K and V (defaults to `num_attention_heads`).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// The LM head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Bias on the q/k/v projections (Qwen2 has it without saying so; `None` = by model type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    /// Bias on the MLP projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Standard deviation of the random initialisation.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    /// RoPE scaling is not supported: a config that sets it is rejected by `validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// Every other key of the file, written back unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_architectures() -> Vec<String> {
    vec!["LlamaForCausalLM".to_string()]
}
fn default_model_type() -> String {
    "llama".to_string()
}
fn default_rms_norm_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_position_embeddings() -> usize {
    2048
}
fn default_hidden_act() -> String {
    "silu".to_string()
}
fn default_initializer_range() -> f64 {
    0.02
}

impl LlamaConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| Error::json(path, e))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates a config from a JSON value (as the GGUF loader produces).
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        let config: Self = serde_json::from_value(value)
            .map_err(|e| Error::Config(format!("cannot read config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Pretty JSON as Hugging Face writes it.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::json("config.json", e))
    }

    /// Heads of K and V.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_width(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q/k/v carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias.unwrap_or(self.model_type == "qwen2")
    }

    /// End-of-sequence ids from the config (may be empty).
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default()
    }

    /// Number of parameters (the tied head counted once).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_width();
        let kv = self.kv_heads() * self.head_width();
        let bias = if self.qkv_bias() { q + 2 * kv } else { 0 };
        let mlp_bias = if self.mlp_bias {
            2 * self.intermediate_size + h
        } else {
            0
        };
        let attention = h * q + 2 * h * kv + q * h + bias;
        let mlp = 3 * h * self.intermediate_size + mlp_bias;
        let layer = attention + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.num_hidden_layers * layer + h
    }

    /// Parameters that take part in a matmul per token: all but the embedding lookup
    /// (a tied head is a matmul over the embedding matrix, so it counts).
    pub fn matmul_parameters(&self) -> usize {
        let lookup_only = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * self.hidden_size
        };
        self.num_parameters() - lookup_only
    }

    /// Checks that the shapes fit together and the features are supported.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.hidden_size == 0 || self.num_hidden_layers == 0 || self.vocab_size == 0 {
            return fail(format!(
                "hidden_size ({}), num_hidden_layers ({}) and vocab_size ({}) must be positive",
                self.hidden_size, self.num_hidden_layers, self.vocab_size
            ));
        }
        if self.num_attention_heads == 0 || self.kv_heads() == 0 {
            return fail("num_attention_heads and num_key_value_heads must be positive".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return fail(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(format!(
                "hidden_size ({}) must be a multiple of num_attention_heads ({}) or head_dim must be set",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_width().is_multiple_of(2) {
            return fail(format!(
                "head width {} must be even for rotary embeddings",
                self.head_width()
            ));
        }
        if self.hidden_act != "silu" {
            return fail(format!(
                "hidden_act {:?} is not supported: only silu (SwiGLU)",
                self.hidden_act
            ));
        }
        if let Some(scaling) = &self.rope_scaling
            && !scaling.is_null()
        {
            return fail(format!(
                "rope_scaling {scaling} is not supported: use a model without rope scaling"
            ));
        }
        if !matches!(self.model_type.as_str(), "llama" | "qwen2" | "mistral") {
            return fail(format!(
                "model_type {:?} is not supported: use a llama, mistral or qwen2 model",
                self.model_type
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smollm2_style_config_and_keeps_unknown_keys() {
        let text = r#"{
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
            "rms_norm_eps": 1e-5, "rope_theta": 100000, "max_position_embeddings": 8192,
            "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
            "pad_token_id": 2, "torch_dtype": "bfloat16"
        }"#;
        let config: LlamaConfig = serde_json::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.head_width(), 64);
        assert_eq!(config.kv_heads(), 3);
        assert_eq!(config.eos_ids(), vec![2]);
        assert_eq!(config.num_parameters(), 134_515_008);
        let back: serde_json::Value = serde_json::from_str(&config.to_json().unwrap()).unwrap();
        assert_eq!(back["pad_token_id"], 2);
        assert_eq!(back["torch_dtype"], "bfloat16");
    }

    #[test]
    fn qwen2_has_qkv_bias_by_default_and_list_eos() {
        let text = r#"{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
            "eos_token_id": [5, 7]}"#;
        let config: LlamaConfig = serde_json::from_str(text).unwrap();
        assert!(config.qkv_bias());
        assert_eq!(config.eos_ids(), vec![5, 7]);
    }

    #[test]
    fn rejects_inconsistent_heads_and_rope_scaling() {
        let base = r#"{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 100}"#;
        let config: LlamaConfig = serde_json::from_str(base).unwrap();
        assert!(matches!(config.validate(), Err(Error::Config(_))));
        let mut ok = config.clone();
        ok.num_key_value_heads = Some(2);
        ok.validate().unwrap();
        ok.rope_scaling = Some(serde_json::json!({"rope_type": "llama3"}));
        assert!(ok.validate().is_err());
    }
}
