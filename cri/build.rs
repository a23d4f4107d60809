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
    // Serialisable, for the verbose `info` of the status calls, which
    // shows the pod's config as containerd's does (field names as the
    // proto's, which Go's JSON of cri-api uses too).
    config.type_attribute(".runtime.v1", "#[derive(serde::Serialize)]");
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_protos_with_config(config, &[root.join("runtime/v1/api.proto")], &[root])?;
    Ok(())
}
