//! Compiles the CRI schema (`proto/runtime/v1/api.proto`, cri-api v0.36)
//! with prost and tonic, the same stack as `crated-api`; protoc comes from
//! `protoc-bin-vendored`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed=proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // `prost::Name`: the configs kept in container extensions carry
    // their type.
    config.enable_type_names();
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_protos_with_config(config, &[root.join("runtime/v1/api.proto")], &[root])?;
    Ok(())
}
