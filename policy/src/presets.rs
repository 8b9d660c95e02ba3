//! The `tiny` presets: small Llama-style decoders trained from scratch on the game's text.

use crate::config::LlamaConfig;

/// A `tiny` model size. `tiny` alone means [`TinyPreset::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TinyPreset {
    /// ~2M parameters: 6 layers of width 128. Learns the game in minutes on 2 cores.
    Tiny2M,
    /// ~20M parameters: 12 layers of width 384.
    Tiny20M,
}

impl TinyPreset {
    /// What `--model tiny` means: the 2M preset, fast enough for tests, CI and the demo.
    pub const DEFAULT: Self = Self::Tiny2M;
    /// Every preset.
    pub const ALL: [Self; 2] = [Self::Tiny2M, Self::Tiny20M];

    /// The preset's `--model` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiny2M => "tiny-2m",
            Self::Tiny20M => "tiny-20m",
        }
    }

    /// Parses `tiny`, `tiny-2m` or `tiny-20m`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::DEFAULT),
            _ => Self::ALL.into_iter().find(|p| p.name() == name),
        }
    }

    /// Target vocabulary of the preset's BPE tokenizer.
    pub fn vocab_size(self) -> usize {
        4096
    }

    /// The architecture, for a tokenizer of `vocab_size` ids whose end-of-text id is `eos`.
    pub fn config(self, vocab_size: usize, eos: u32) -> LlamaConfig {
        let (hidden, intermediate, layers, heads, kv_heads) = match self {
            Self::Tiny2M => (128, 512, 6, 4, 2),
            Self::Tiny20M => (384, 1024, 12, 6, 2),
        };
        LlamaConfig {
            architectures: vec!["LlamaForCausalLM".to_string()],
            model_type: "llama".to_string(),
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: None,
            vocab_size,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            bos_token_id: Some(crate::config::TokenIds::One(eos)),
            eos_token_id: Some(crate::config::TokenIds::One(eos)),
            hidden_act: "silu".to_string(),
            attention_bias: Some(false),
            mlp_bias: false,
            initializer_range: 0.02,
            rope_scaling: None,
            extra: serde_json::Map::from_iter([(
                "torch_dtype".to_string(),
                serde_json::Value::String("float32".to_string()),
            )]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_sizes_match_their_names() {
        let small = TinyPreset::Tiny2M.config(4096, 0).num_parameters();
        let large = TinyPreset::Tiny20M.config(4096, 0).num_parameters();
        assert!((1_800_000..2_300_000).contains(&small), "{small}");
        assert!((18_000_000..23_000_000).contains(&large), "{large}");
        assert_eq!(TinyPreset::parse("tiny"), Some(TinyPreset::DEFAULT));
        assert_eq!(TinyPreset::parse("tiny-20m"), Some(TinyPreset::Tiny20M));
        assert_eq!(TinyPreset::parse("tiny-3m"), None);
        for p in TinyPreset::ALL {
            p.config(4096, 0).validate().unwrap();
        }
    }
}
