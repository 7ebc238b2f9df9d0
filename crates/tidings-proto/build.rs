//! Compiles `proto/tidings/v1` with tonic-prost-build.
//!
//! prost needs a `protoc`. A normal build uses the one vendored by `protoc-bin-vendored`,
//! so neither developers, CI nor the Docker build install one; `$PROTOC` overrides it.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    if env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("tidings_descriptor.bin"))
        .compile_with_config(
            config,
            &[proto_root.join("tidings/v1/notification.proto")],
            std::slice::from_ref(&proto_root),
        )?;
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
