//! GGUF tensor names (llama.cpp) → Hugging Face `LlamaForCausalLM` names, with the shape
//! each must have and whether its rows carry llama.cpp's RoPE permutation.

use super::GgufError;
use super::config::LlamaHyper;

/// Whether a projection's output rows were permuted by llama.cpp for interleaved RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeRows {
    /// Not a RoPE projection: taken as is.
    Plain,
    /// Rows permuted per head, with this many heads (query: attention heads, key: kv heads).
    Permuted { heads: usize },
}

/// Where one GGUF tensor goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorTarget {
    pub hf_name: String,
    pub shape: Vec<usize>,
    pub rope_rows: RopeRows,
}

/// Maps one GGUF tensor name; unknown names are an error rather than silently dropped.
pub(crate) fn target(gguf_name: &str, h: &LlamaHyper) -> Result<TensorTarget, GgufError> {
    let unexpected = || GgufError::UnexpectedTensor(gguf_name.to_owned());
    let (hidden, inter, hd) = (h.hidden_size, h.intermediate_size, h.head_dim);
    let q_rows = h.num_attention_heads * hd;
    let kv_rows = h.num_key_value_heads * hd;
    let plain = |hf_name: String, shape: Vec<usize>| TensorTarget {
        hf_name,
        shape,
        rope_rows: RopeRows::Plain,
    };
    match gguf_name {
        "token_embd.weight" => {
            return Ok(plain(
                "model.embed_tokens.weight".into(),
                vec![h.vocab_size, hidden],
            ));
        }
        "output_norm.weight" => return Ok(plain("model.norm.weight".into(), vec![hidden])),
        "output.weight" => return Ok(plain("lm_head.weight".into(), vec![h.vocab_size, hidden])),
        _ => {}
    }
    let rest = gguf_name.strip_prefix("blk.").ok_or_else(unexpected)?;
    let (layer, part) = rest.split_once('.').ok_or_else(unexpected)?;
    let layer: usize = layer.parse().map_err(|_| unexpected())?;
    if layer >= h.num_hidden_layers {
        return Err(unexpected());
    }
    let p = format!("model.layers.{layer}");
    let t = match part {
        "attn_q.weight" => TensorTarget {
            hf_name: format!("{p}.self_attn.q_proj.weight"),
            shape: vec![q_rows, hidden],
            rope_rows: RopeRows::Permuted {
                heads: h.num_attention_heads,
            },
        },
        "attn_k.weight" => TensorTarget {
            hf_name: format!("{p}.self_attn.k_proj.weight"),
            shape: vec![kv_rows, hidden],
            rope_rows: RopeRows::Permuted {
                heads: h.num_key_value_heads,
            },
        },
        "attn_v.weight" => plain(
            format!("{p}.self_attn.v_proj.weight"),
            vec![kv_rows, hidden],
        ),
        "attn_output.weight" => plain(format!("{p}.self_attn.o_proj.weight"), vec![hidden, q_rows]),
        "ffn_gate.weight" => plain(format!("{p}.mlp.gate_proj.weight"), vec![inter, hidden]),
        "ffn_up.weight" => plain(format!("{p}.mlp.up_proj.weight"), vec![inter, hidden]),
        "ffn_down.weight" => plain(format!("{p}.mlp.down_proj.weight"), vec![hidden, inter]),
        "attn_norm.weight" => plain(format!("{p}.input_layernorm.weight"), vec![hidden]),
        "ffn_norm.weight" => plain(format!("{p}.post_attention_layernorm.weight"), vec![hidden]),
        _ => return Err(unexpected()),
    };
    Ok(t)
}

/// Every Hugging Face tensor name a model with these hyper-parameters must have.
pub(crate) fn required_hf_names(h: &LlamaHyper) -> Vec<String> {
    let mut names = vec![
        "model.embed_tokens.weight".to_owned(),
        "model.norm.weight".to_owned(),
    ];
    if !h.tie_word_embeddings {
        names.push("lm_head.weight".to_owned());
    }
    for i in 0..h.num_hidden_layers {
        for part in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
            "input_layernorm",
            "post_attention_layernorm",
        ] {
            names.push(format!("model.layers.{i}.{part}.weight"));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper() -> LlamaHyper {
        LlamaHyper {
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            vocab_size: 49_152,
            rms_norm_eps: 1e-5,
            rope_theta: 1e5,
            max_position_embeddings: 8192,
            bos_token_id: 1,
            eos_token_id: 2,
            tie_word_embeddings: true,
        }
    }

    #[test]
    fn layer_tensors_map_to_hf_names_and_shapes() {
        let h = hyper();
        let q = target("blk.7.attn_q.weight", &h).unwrap();
        assert_eq!(q.hf_name, "model.layers.7.self_attn.q_proj.weight");
        assert_eq!(q.shape, [576, 576]);
        assert_eq!(q.rope_rows, RopeRows::Permuted { heads: 9 });
        let k = target("blk.29.attn_k.weight", &h).unwrap();
        assert_eq!(k.hf_name, "model.layers.29.self_attn.k_proj.weight");
        assert_eq!(k.shape, [192, 576]);
        assert_eq!(k.rope_rows, RopeRows::Permuted { heads: 3 });
        let down = target("blk.0.ffn_down.weight", &h).unwrap();
        assert_eq!(down.hf_name, "model.layers.0.mlp.down_proj.weight");
        assert_eq!(down.shape, [576, 1536]);
        assert_eq!(down.rope_rows, RopeRows::Plain);
        assert_eq!(
            target("blk.3.ffn_norm.weight", &h).unwrap().hf_name,
            "model.layers.3.post_attention_layernorm.weight"
        );
        assert_eq!(
            target("token_embd.weight", &h).unwrap().shape,
            [49_152, 576]
        );
        assert_eq!(
            target("output.weight", &h).unwrap().hf_name,
            "lm_head.weight"
        );
    }

    #[test]
    fn unknown_or_out_of_range_names_are_rejected() {
        let h = hyper();
        for name in [
            "blk.30.attn_q.weight",
            "blk.x.attn_q.weight",
            "blk.0.attn_q.bias",
            "rope_freqs.weight",
            "blk.0",
        ] {
            assert!(
                matches!(target(name, &h), Err(GgufError::UnexpectedTensor(n)) if n == name),
                "{name}"
            );
        }
    }

    #[test]
    fn every_required_name_is_the_target_of_some_gguf_name() {
        let h = hyper();
        let names = required_hf_names(&h);
        assert_eq!(names.len(), 2 + 9 * 30);
        let mut gguf = vec![
            "token_embd.weight".to_owned(),
            "output_norm.weight".to_owned(),
        ];
        for i in 0..30 {
            for p in [
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
                "attn_norm",
                "ffn_norm",
            ] {
                gguf.push(format!("blk.{i}.{p}.weight"));
            }
        }
        let mut mapped: Vec<String> = gguf
            .iter()
            .map(|n| target(n, &h).unwrap().hf_name)
            .collect();
        mapped.sort();
        let mut names = names;
        names.sort();
        assert_eq!(mapped, names);
    }
}
