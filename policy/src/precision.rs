//! The dtype a policy computes in: f32, or bf16 with f32 where precision matters.
//!
//! Under bf16 the matmuls (nearly all the FLOPs) and the activations between them are bf16;
//! RMSNorm, rotary embedding, attention softmax and the log-softmax of the logits run in f32
//! on upcast values, as Hugging Face's Llama does. A trainable policy keeps its variables in
//! f32 (the optimizer's master weights) and casts them to bf16 at every forward pass, so
//! gradients flow back through the cast and the update is applied in f32; a frozen policy
//! (actors, reference models) stores its weights in bf16 directly.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The compute dtype of a policy (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    /// f32 on the CPU (candle's bf16 is no faster there, and arlas's CPU kernels are f32),
    /// bf16 on a GPU.
    pub fn default_for(device: &Device) -> Self {
        if device.is_cpu() {
            Self::F32
        } else {
            Self::Bf16
        }
    }

    /// Parses a `--dtype` value: `f32`, `bf16`, or `auto` (`None`: [`Precision::default_for`]).
    pub fn parse_choice(value: &str) -> Result<Option<Self>> {
        match value {
            "auto" => Ok(None),
            other => other.parse().map(Some),
        }
    }

    /// The candle dtype of the weights and activations.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(Error::InvalidInput(format!(
                "unknown dtype {other:?}: use f32, bf16 or auto"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_defaults_by_device() {
        assert_eq!(Precision::parse_choice("auto").unwrap(), None);
        assert_eq!(
            Precision::parse_choice("bf16").unwrap(),
            Some(Precision::Bf16)
        );
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("fp8".parse::<Precision>().is_err());
        assert_eq!(Precision::default_for(&Device::Cpu), Precision::F32);
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
        assert_eq!(Precision::Bf16.to_string(), "bf16");
    }
}
