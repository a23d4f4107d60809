//! Where `cargo xtask deps` puts the Go test tools — cri-tools' crictl and
//! critest, checkpointctl, which reads Kubernetes' checkpoint archives, and
//! the kubelet — and how tests find them. They are built from the Go module proxy into
//! the CI cache; none of their code is in this repository.

use std::path::PathBuf;

/// The cri-tools release critest and crictl are built from.
pub const CRI_TOOLS_VERSION: &str = "v1.36.0";

/// The checkpointctl release the checkpoint archive tests read archives
/// with.
pub const CHECKPOINTCTL_VERSION: &str = "v1.3.0";

/// The Kubernetes release the kubelet test's kubelet is built from (its
/// CRI is the cri-api critest speaks).
pub const KUBERNETES_VERSION: &str = "v1.36.3";

/// The stargz snapshotter release `stargz-tool` (the remote snapshotter
/// test's snapshotter and eStargz converter) is built on.
pub const STARGZ_SNAPSHOTTER_VERSION: &str = "v0.16.3";

/// The containerd release whose `ctr` (installed as `ctr-1.7`) drives
/// the transfer service test: containerd 1.7's ctr reaches the transfer
/// and streaming services with `--local=false`, which Debian's 1.6 ctr
/// does not have.
pub const CONTAINERD_CTR_VERSION: &str = "v1.7.24";

/// The cache directory of the Go tools: `$CRATED_CI_CACHE/go`, by default
/// `/var/cache/crated-ci/go`.
pub fn go_cache_dir() -> PathBuf {
    std::env::var_os("CRATED_CI_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/crated-ci"))
        .join("go")
}

/// The directory holding `crictl`, `critest`, `checkpointctl`, `kubelet`
/// and `stargz-tool`.
pub fn go_bin_dir() -> PathBuf {
    go_cache_dir().join("bin")
}

/// The path of a Go test tool (`"crictl"`, `"critest"`, `"checkpointctl"`,
/// `"kubelet"`, `"stargz-tool"`, `"ctr-1.7"`)
/// when it has been built; `None` otherwise (run `cargo xtask deps`).
pub fn cri_tool(name: &str) -> Option<PathBuf> {
    let path = go_bin_dir().join(name);
    path.is_file().then_some(path)
}
