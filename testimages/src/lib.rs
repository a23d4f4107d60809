#![doc = include_str!("../README.md")]
// Test fixtures: failures here are test failures, reported with context.

mod critest;
mod criu;
mod estargz;
mod gotools;
mod image;
mod loopfs;
mod netns;
mod registry;
mod tls;

pub use critest::{
    critest_images, push_critest_images, write_mirror_hosts, CritestImage, DYNAMIC_BUSYBOX,
    MIRRORED_REGISTRIES, NOT_BUILT,
};
pub use criu::{criu, TRIXIE_CRIU};
pub use estargz::{estargz_busybox, ESTARGZ_MARKER, TOC_DIGEST_ANNOTATION};
pub use gotools::{
    cri_tool, go_bin_dir, go_cache_dir, CHECKPOINTCTL_VERSION, CONTAINERD_CTR_VERSION,
    CRI_TOOLS_VERSION, KUBERNETES_VERSION, STARGZ_SNAPSHOTTER_VERSION,
};
pub use image::{
    busybox, docker_save, hostile, hostile_install, image_with_config, multi_platform,
    nested_index, pause, runc, synthetic, whiteouts, Blob, Image, LayerBuilder,
    EXPECTED_WHITEOUT_TREE,
};
pub use loopfs::LoopFs;
pub use netns::{enter_private_netns, in_private_netns};
pub use registry::{push, push_with, Registry};
pub use tls::TestCerts;

/// The OCI architecture of this machine (`amd64`, `arm64`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
