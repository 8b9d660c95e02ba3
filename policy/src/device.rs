//! Choosing the device from a command-line value.

use candle_core::Device;

use crate::error::{Error, Result};

/// `cpu`, `cuda` (GPU 0) or `cuda:N`. CUDA needs a build with the `cuda` feature.
pub fn device_from_name(name: &str) -> Result<Device> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "unknown device {name:?}: use cpu, cuda or cuda:N"
                )));
            }
        },
    };
    Device::new_cuda(ordinal).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot open {name}: {e}; CUDA needs a build with `--features cuda` on a machine with the CUDA toolkit"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert!(device_from_name("cpu").unwrap().is_cpu());
        assert!(device_from_name("tpu").is_err());
        assert!(device_from_name("cuda:x").is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(
            device_from_name("cuda:0")
                .unwrap_err()
                .to_string()
                .contains("--features cuda")
        );
    }
}
