//! Choosing the device from a command-line value.

use candle_core::Device;

use crate::error::{Error, Result};

/// `cpu`, `cuda` (GPU 0) or `cuda:N`. CUDA needs a build with the `cuda` feature and a
/// visible GPU; either missing is an error that says which.
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
    open_cuda(name, ordinal)
}

#[cfg(feature = "cuda")]
fn open_cuda(name: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot open {name}: no usable CUDA GPU {ordinal} ({e}); check that the NVIDIA driver \
             is loaded and the GPU visible (nvidia-smi), or use --device cpu"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(name: &str, _ordinal: usize) -> Result<Device> {
    Err(Error::InvalidInput(format!(
        "cannot open {name}: this arlas was built without CUDA; rebuild it with `--features cuda` \
         (scripts/build-cuda.sh) or use --device cpu"
    )))
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
        // A CUDA build says that the GPU, not the build, is missing.
        #[cfg(feature = "cuda")]
        if let Err(e) = device_from_name("cuda:0") {
            assert!(e.to_string().contains("no usable CUDA GPU 0"), "{e}");
        }
    }
}
