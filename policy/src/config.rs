//! `LlamaConfig`: the model shape, mirroring a Hugging Face `config.json`.
//!
//! The same file describes SmolLM2, Llama (1 to 3.x, with `llama3` RoPE scaling), Mistral,
//! Qwen2 and Qwen3 (q/k norms) models; unknown keys are kept (in `extra`) so that a loaded
//! config is written back unchanged, but a key that would change the computation and is
//! not implemented (sliding windows, soft-capping, experts, ...) is an error naming it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest sequence arlas runs, whatever a config allows (Llama 3.1 allows 131,072):
/// it bounds the rotary tables to a few tens of MB.
pub const MAX_CONTEXT: usize = 32_768;

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
    /// `llama`, `mistral`, `qwen2` or `qwen3`.
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
    /// RoPE scaling as Hugging Face writes it: `null`, `default` or `llama3` (Llama 3.1+);
    /// any other type is rejected by `validate` (see [`LlamaConfig::rope_scaling`]).
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

    /// The longest sequence this model runs: `max_position_embeddings`, at most
    /// [`MAX_CONTEXT`].
    pub fn context_len(&self) -> usize {
        self.max_position_embeddings.min(MAX_CONTEXT)
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

    /// Whether each head's queries and keys are RMS-normalised before RoPE (Qwen3's
    /// `q_norm`/`k_norm`, one weight of the head width each).
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// The RoPE frequency scaling the config asks for (`None`: plain RoPE), from
    /// `rope_scaling` or, as transformers 5 writes it, `rope_parameters`.
    pub fn rope_scaling(&self) -> Result<Option<RopeScaling>> {
        let value = self
            .rope_scaling
            .as_ref()
            .filter(|v| !v.is_null())
            .or_else(|| self.extra.get("rope_parameters"));
        RopeScaling::parse(value)
    }

    /// RoPE's base: `rope_theta`, or the one in `rope_parameters` where transformers 5 moved it.
    pub fn rope_base(&self) -> f64 {
        self.extra
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(self.rope_theta)
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
        let qk_norm = if self.qk_norm() {
            2 * self.head_width()
        } else {
            0
        };
        let attention = h * q + 2 * h * kv + q * h + bias + qk_norm;
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
        self.rope_scaling()?;
        if !matches!(
            self.model_type.as_str(),
            "llama" | "qwen2" | "qwen3" | "mistral"
        ) {
            return fail(format!(
                "model_type {:?} is not supported: use a llama, mistral, qwen2 or qwen3 model",
                self.model_type
            ));
        }
        if let Some(msg) = unsupported_key(&self.extra, self.max_position_embeddings) {
            return fail(msg);
        }
        Ok(())
    }
}

/// The first key of a config's otherwise-unread fields that asks for something the decoder
/// does not compute, with what to do; `None` when every such key has a value that changes
/// nothing (as Hugging Face's own configs write them: `false`, `null`, `0.0`, 1).
fn unsupported_key(
    extra: &serde_json::Map<String, serde_json::Value>,
    max_positions: usize,
) -> Option<String> {
    use serde_json::Value;
    let is_off = |v: &Value| match v {
        Value::Null | Value::Bool(false) => true,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    for (key, value) in extra {
        let unsupported = match key.as_str() {
            "use_sliding_window"
            | "rope_interleaved"
            | "attn_logit_softcapping"
            | "final_logit_softcapping"
            | "quantization_config"
            | "num_experts"
            | "num_local_experts"
            | "attention_dropout"
            | "hidden_dropout" => !is_off(value),
            // Qwen2/3 write a window that only applies with `use_sliding_window`; Mistral's
            // applies whenever it is set and shorter than the context.
            "sliding_window" => {
                !extra.contains_key("use_sliding_window")
                    && value
                        .as_u64()
                        .is_some_and(|w| usize::try_from(w).is_ok_and(|w| w < max_positions))
            }
            "partial_rotary_factor" => value.as_f64() != Some(1.0),
            "layer_types" => value
                .as_array()
                .is_none_or(|layers| layers.iter().any(|l| l != "full_attention")),
            _ => false,
        };
        if unsupported {
            return Some(format!(
                "config field {key} = {value} is not supported by arlas's decoder \
                 (use a model without it, or remove the field if it changes nothing)"
            ));
        }
    }
    None
}

/// Rescaled RoPE frequencies, Hugging Face's `rope_type` `llama3` (Llama 3.1 and later):
/// wavelengths longer than `original_max_position_embeddings / low_freq_factor` are slowed
/// by `factor`, those shorter than `... / high_freq_factor` kept, and the band between
/// interpolated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

impl RopeScaling {
    fn parse(value: Option<&serde_json::Value>) -> Result<Option<Self>> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let fail = |msg: String| Err(Error::Config(format!("rope_scaling {value}: {msg}")));
        let Some(map) = value.as_object() else {
            return fail("expected an object".into());
        };
        // Hugging Face has written the type under both names.
        let kind = map
            .get("rope_type")
            .or_else(|| map.get("type"))
            .and_then(serde_json::Value::as_str);
        match kind {
            Some("default") => return Ok(None),
            Some("llama3") => {}
            Some(other) => {
                return fail(format!(
                    "rope_type {other:?} is not supported (only default and llama3)"
                ));
            }
            None => return fail("rope_type is missing".into()),
        }
        let number = |key: &str| map.get(key).and_then(serde_json::Value::as_f64);
        let get = |key: &str| {
            number(key)
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| key.to_string())
        };
        let parsed = (|| -> std::result::Result<Self, String> {
            Ok(Self {
                factor: get("factor")?,
                low_freq_factor: get("low_freq_factor")?,
                high_freq_factor: get("high_freq_factor")?,
                original_max_position_embeddings: get("original_max_position_embeddings")?,
            })
        })();
        match parsed {
            Ok(s) if s.high_freq_factor > s.low_freq_factor => Ok(Some(s)),
            Ok(_) => fail("high_freq_factor must exceed low_freq_factor".into()),
            Err(key) => fail(format!("{key} must be a positive number")),
        }
    }

    /// The scaled inverse frequency of one rotary pair whose unscaled one is `freq`.
    pub fn scale(&self, freq: f64) -> f64 {
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let low_freq_wavelen = self.original_max_position_embeddings / self.low_freq_factor;
        let high_freq_wavelen = self.original_max_position_embeddings / self.high_freq_factor;
        if wavelen < high_freq_wavelen {
            freq
        } else if wavelen > low_freq_wavelen {
            freq / self.factor
        } else {
            let smooth = (self.original_max_position_embeddings / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * freq / self.factor + smooth * freq
        }
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
