//! Compiles containerd's `.proto` files once with prost, and emits both gRPC
//! (tonic) and ttrpc service stubs over the same message types.
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no
//! system package. The ttrpc stubs are generated here rather than with
//! `ttrpc-codegen-prost` because that crate generates its own copy of every
//! message; one set of types lets a value read from a shim over ttrpc be
//! served to a client over gRPC without conversion.

use std::io;
use std::path::{Path, PathBuf};

mod ttrpc_gen {
    include!("build/ttrpc_gen.rs");
}

fn protos(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let mut files = Vec::new();
    protos(&root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build");

    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // `prost::Name`: the transfer service's messages travel in Anys named
    // by their full protobuf name, as Go's typeurl names them.
    config.enable_type_names();
    // Generated tonic code documents nothing; the wire types are documented by
    // their .proto comments, which prost copies over.
    let tonic = tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // No `connect` constructors: the task service has a `Connect`
        // method that would collide, and crated dials unix sockets itself.
        .build_transport(false)
        .service_generator();
    config.service_generator(Box::new(ttrpc_gen::Both::new(tonic)));
    config.compile_protos(&files, &[root])?;
    Ok(())
}
