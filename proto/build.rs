//! Generates the `arlas.v1` messages and services with tonic-prost-build. protoc comes from
//! `protoc-bin-vendored`, so a fresh machine needs nothing but cargo.

use std::path::PathBuf;

const PROTOS: [&str; 4] = [
    "arlas/v1/common.proto",
    "arlas/v1/coordinator.proto",
    "arlas/v1/environment.proto",
    "arlas/v1/learner.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The vendored protoc is handed to prost-build directly (the same as setting PROTOC,
    // without edition 2024's unsafe `set_var`).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        // Undecodable bytes are the caller's fault: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::codec::ArlasCodec")
        // Unimplemented rpcs answer UNIMPLEMENTED: partial servers (test fakes) stay short.
        .generate_default_stubs(true)
        .file_descriptor_set_path(out_dir.join("arlas_v1_descriptor.bin"))
        .compile_with_config(config, &PROTOS, &["."])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
