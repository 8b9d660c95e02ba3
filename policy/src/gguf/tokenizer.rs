//! The byte-level BPE tokenizer rebuilt from a GGUF's `tokenizer.ggml.*` metadata.
//!
//! SmolLM2's original `tokenizer.json` (GPT-2 style, no normalizer) is a BPE over the
//! byte-level alphabet with pre-tokenizer `Sequence[Digits(individual_digits), ByteLevel(
//! add_prefix_space=false, use_regex=true)]` and a ByteLevel decoder; llama.cpp names this
//! pre-tokenizer `smollm` and splits text with the same two regexes (`\p{N}`, then the GPT-2
//! one). The GGUF keeps the vocabulary in id order, the merges in rank order and a type per
//! token; control tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, ...) become special
//! tokens so that they are recognised as single tokens in text.

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::GgufError;
use super::metadata::{self, Metadata};

/// llama.cpp `llama_token_type`: a control token (BOS, EOS, ChatML markers...).
const TOKEN_TYPE_CONTROL: i64 = 3;
/// llama.cpp `llama_token_type`: a token the user added to the vocabulary.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// How text is split before BPE, from `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// Every digit on its own, then the GPT-2 regex (`smollm`, `starcoder`, `refact`, `codeshell`).
    DigitsThenGpt2,
    /// The GPT-2 regex alone (`gpt2`, or no `tokenizer.ggml.pre` key).
    Gpt2,
}

impl PreTokenizerKind {
    fn from_gguf(model: &str, pre: Option<&str>) -> Result<Self, GgufError> {
        let unsupported = || GgufError::UnsupportedTokenizer {
            model: model.to_owned(),
            pre: pre.unwrap_or("").to_owned(),
        };
        if model != "gpt2" {
            return Err(unsupported());
        }
        match pre {
            Some("smollm" | "starcoder" | "refact" | "codeshell") => Ok(Self::DigitsThenGpt2),
            Some("gpt2") | None => Ok(Self::Gpt2),
            Some(_) => Err(unsupported()),
        }
    }

    fn pre_tokenizer(self) -> PreTokenizerWrapper {
        let byte_level = ByteLevel::new(false, true, true);
        match self {
            Self::DigitsThenGpt2 => {
                Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
            }
            Self::Gpt2 => byte_level.into(),
        }
    }
}

/// Builds the tokenizer from `tokenizer.ggml.{model,pre,tokens,merges,token_type}`.
pub(crate) fn tokenizer_from_metadata(md: &Metadata) -> Result<Tokenizer, GgufError> {
    let model = metadata::string(md, "tokenizer.ggml.model")?;
    let pre = metadata::optional_string(md, "tokenizer.ggml.pre")?;
    let kind = PreTokenizerKind::from_gguf(model, pre)?;
    let tokens = metadata::string_array(md, "tokenizer.ggml.tokens")?;
    let merges = metadata::string_array(md, "tokenizer.ggml.merges")?;
    let token_types = if md.contains_key("tokenizer.ggml.token_type") {
        metadata::int_array(md, "tokenizer.ggml.token_type")?
    } else {
        Vec::new()
    };
    byte_level_bpe(&tokens, &merges, &token_types, kind)
}

/// A byte-level BPE tokenizer: `tokens[id]` is the byte-level text of token `id`, `merges`
/// are `"left right"` rules in rank order, `token_types[id]` the llama.cpp token type (empty:
/// no special tokens).
pub fn byte_level_bpe(
    tokens: &[&str],
    merges: &[&str],
    token_types: &[i64],
    kind: PreTokenizerKind,
) -> Result<Tokenizer, GgufError> {
    let mut vocab = Vocab::default();
    vocab.reserve(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| {
            GgufError::InvalidConfig(format!(
                "vocabulary of {} tokens exceeds u32 ids",
                tokens.len()
            ))
        })?;
        if let Some(first) = vocab.insert((*token).to_owned(), id) {
            return Err(GgufError::DuplicateToken {
                token: (*token).to_owned(),
                first,
                second: id,
            });
        }
    }
    let merges = merges
        .iter()
        .enumerate()
        .map(|(index, merge)| match merge.split_once(' ') {
            Some((l, r)) if !l.is_empty() && !r.is_empty() && !r.contains(' ') => {
                Ok((l.to_owned(), r.to_owned()))
            }
            _ => Err(GgufError::InvalidMerge {
                index,
                merge: (*merge).to_owned(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(GgufError::Tokenizer)?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(kind.pre_tokenizer()));
    tokenizer.with_post_processor(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));

    let typed = |wanted: i64| {
        tokens
            .iter()
            .zip(token_types)
            .filter(move |(_, t)| **t == wanted)
            .map(|(token, _)| *token)
    };
    let specials: Vec<AddedToken> = typed(TOKEN_TYPE_CONTROL)
        .map(|t| AddedToken::from(t, true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(GgufError::Tokenizer)?;
    let user: Vec<AddedToken> = typed(TOKEN_TYPE_USER_DEFINED)
        .map(|t| AddedToken::from(t, false).normalized(false))
        .collect();
    tokenizer.add_tokens(user).map_err(GgufError::Tokenizer)?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny byte-level vocabulary: two control tokens, the 256 byte symbols, a few merges.
    fn tiny() -> Tokenizer {
        let mut alphabet: Vec<String> = ByteLevel::alphabet()
            .into_iter()
            .map(String::from)
            .collect();
        alphabet.sort();
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into()];
        tokens.extend(alphabet);
        tokens.extend(["Ġt".into(), "Ġth".into(), "Ġthe".into(), "12".into()]);
        let merges = ["Ġ t", "Ġt h", "Ġth e", "1 2"];
        let mut types = vec![1i64; tokens.len()];
        types[0] = 3;
        types[1] = 3;
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        byte_level_bpe(&refs, &merges, &types, PreTokenizerKind::DigitsThenGpt2).unwrap()
    }

    #[test]
    fn merges_apply_and_digits_split() {
        let tok = tiny();
        let the = tok.token_to_id("Ġthe").unwrap();
        let enc = tok.encode(" the", false).unwrap();
        assert_eq!(enc.get_ids(), [the]);
        // Individual digits: the "1 2" merge never applies across the digit split.
        let enc = tok.encode("12", false).unwrap();
        assert_eq!(enc.get_tokens(), ["1", "2"]);
    }

    #[test]
    fn control_tokens_are_single_special_tokens_and_text_round_trips() {
        let tok = tiny();
        let text = "<|im_start|>user\nthe café ünïcode 12345 ✓<|endoftext|>";
        let enc = tok.encode(text, false).unwrap();
        assert_eq!(enc.get_ids()[0], 1);
        assert_eq!(*enc.get_ids().last().unwrap(), 0);
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
        let skipped = tok.decode(enc.get_ids(), true).unwrap();
        assert_eq!(skipped, "user\nthe café ünïcode 12345 ✓");
    }

    #[test]
    fn bad_vocabularies_are_rejected() {
        let dup = byte_level_bpe(&["a", "b", "a"], &[], &[], PreTokenizerKind::Gpt2);
        assert!(matches!(
            dup,
            Err(GgufError::DuplicateToken {
                first: 0,
                second: 2,
                ..
            })
        ));
        let bad = byte_level_bpe(
            &["a", "b", "ab"],
            &["a b", "ab"],
            &[],
            PreTokenizerKind::Gpt2,
        );
        assert!(matches!(bad, Err(GgufError::InvalidMerge { index: 1, .. })));
        assert!(matches!(
            PreTokenizerKind::from_gguf("gpt2", Some("llama-bpe")),
            Err(GgufError::UnsupportedTokenizer { .. })
        ));
        assert!(matches!(
            PreTokenizerKind::from_gguf("llama", None),
            Err(GgufError::UnsupportedTokenizer { .. })
        ));
        assert_eq!(
            PreTokenizerKind::from_gguf("gpt2", Some("smollm")).unwrap(),
            PreTokenizerKind::DigitsThenGpt2
        );
    }
}
