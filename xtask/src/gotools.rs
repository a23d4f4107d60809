//! cri-tools' crictl and critest, checkpointctl, the kubelet,
//! containerd 1.7's ctr (`ctr-1.7`, the transfer service test's client) and
//! `stargz-tool` (the stargz snapshotter, served for the remote snapshotter
//! test, and its eStargz converter; `go/stargz-tool`), built with
//! the Go toolchain from the Go module proxy into the CI cache
//! (`crated_testimages::go_bin_dir()`).
//! crictl is a plain `go install`; critest is a Ginkgo test binary, so it is
//! compiled with `go test -c` inside a scratch module that requires
//! cri-tools. The kubelet is built the same way from `k8s.io/kubernetes`,
//! whose `go.mod` points its `k8s.io/*` staging modules at directories of
//! its own tree: the scratch module points them at their published
//! releases instead. Stamp files record the versions built, so a warm cache
//! skips the whole step.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use crated_testimages::{
    go_bin_dir, go_cache_dir, CHECKPOINTCTL_VERSION, CONTAINERD_CTR_VERSION, CRI_TOOLS_VERSION,
    KUBERNETES_VERSION, STARGZ_SNAPSHOTTER_VERSION,
};

const MODULE: &str = "sigs.k8s.io/cri-tools";

fn go(dir: &Path) -> Command {
    let cache = go_cache_dir();
    // Go's own tarball install is not always on PATH for non-login shells.
    let go = if Path::new("/usr/local/go/bin/go").is_file() {
        "/usr/local/go/bin/go"
    } else {
        "go"
    };
    let mut cmd = Command::new(go);
    cmd.current_dir(dir)
        .env("GOPATH", cache.join("path"))
        .env("GOCACHE", cache.join("build"))
        .env("GOBIN", go_bin_dir())
        // Module files stay deletable, so the cache can be wiped with rm.
        .env("GOFLAGS", "-modcacherw")
        .env("CGO_ENABLED", "0");
    cmd
}

/// Builds crictl, critest, checkpointctl, the kubelet, stargz-tool and
/// containerd 1.7's ctr unless their stamps say these versions are there.
pub fn install() -> anyhow::Result<()> {
    install_cri_tools()?;
    install_checkpointctl()?;
    install_kubelet()?;
    install_stargz_tool()?;
    install_containerd_ctr()
}

/// containerd 1.7's `ctr`, as `ctr-1.7`: the client of the transfer
/// service test (`--local=false`).
fn install_containerd_ctr() -> anyhow::Result<()> {
    install_stamped(
        "ctr-1.7.version",
        CONTAINERD_CTR_VERSION,
        &["ctr-1.7"],
        |bin| {
            let module = scratch_module("ctr-module", "module crated.test/ctr-build\n\ngo 1.24\n")?;
            let package = "github.com/containerd/containerd/cmd/ctr";
            crate::run(go(&module).args(["get", &format!("{package}@{CONTAINERD_CTR_VERSION}")]))?;
            crate::run(go(&module).args([
                "build",
                "-o",
                &bin.join("ctr-1.7").to_string_lossy(),
                package,
            ]))
        },
    )
}

/// The source of `stargz-tool`.
const STARGZ_TOOL: &str = include_str!("../go/stargz-tool/main.go");

/// `stargz-tool`: a `main` of ours over the stargz snapshotter's library
/// (its own commands live in a module the Go proxy does not serve). The
/// stamp names the release and the source's digest, so an edit rebuilds.
fn install_stargz_tool() -> anyhow::Result<()> {
    let source = crated_core::digest::Digest::sha256(STARGZ_TOOL.as_bytes());
    let version = format!("{STARGZ_SNAPSHOTTER_VERSION} {source}");
    install_stamped("stargz-tool.version", &version, &["stargz-tool"], |bin| {
        let module = scratch_module(
            "stargz-tool-module",
            "module crated.test/stargz-tool\n\ngo 1.24\n",
        )?;
        std::fs::write(module.join("main.go"), STARGZ_TOOL)?;
        crate::run(go(&module).args([
            "get",
            &format!("github.com/containerd/stargz-snapshotter@{STARGZ_SNAPSHOTTER_VERSION}"),
        ]))?;
        // The rest of the requirements at the versions the snapshotter's
        // own go.mod names.
        crate::run(go(&module).args(["mod", "tidy"]))?;
        crate::run(go(&module).args([
            "build",
            "-o",
            &bin.join("stargz-tool").to_string_lossy(),
            ".",
        ]))
    })
}

/// Whether the stamp file `stamp` (in the bin directory) names `version`
/// and every one of `binaries` is there: then nothing is rebuilt.
fn built(stamp: &str, version: &str, binaries: &[&str]) -> bool {
    let bin = go_bin_dir();
    let recorded = std::fs::read_to_string(bin.join(stamp)).unwrap_or_default();
    recorded.trim() == version && binaries.iter().all(|b| bin.join(b).is_file())
}

/// Unless the stamp file `stamp` says `version` of `binaries` is built,
/// runs `build` with the bin directory (made first), then writes the stamp.
fn install_stamped(
    stamp: &str,
    version: &str,
    binaries: &[&str],
    build: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if built(stamp, version, binaries) {
        return Ok(());
    }
    let bin = go_bin_dir();
    std::fs::create_dir_all(&bin).with_context(|| format!("create {}", bin.display()))?;
    build(&bin)?;
    std::fs::write(bin.join(stamp), version)?;
    Ok(())
}

/// A fresh scratch module `name` in the Go cache with `go_mod` as its
/// go.mod: where a package of another module is built.
fn scratch_module(name: &str, go_mod: &str) -> anyhow::Result<PathBuf> {
    let module = go_cache_dir().join(name);
    let _ = std::fs::remove_dir_all(&module);
    std::fs::create_dir_all(&module).with_context(|| format!("create {}", module.display()))?;
    std::fs::write(module.join("go.mod"), go_mod)?;
    Ok(module)
}

/// checkpointctl, which the CRI checkpoint test reads its archives with.
fn install_checkpointctl() -> anyhow::Result<()> {
    install_stamped(
        "checkpointctl.version",
        CHECKPOINTCTL_VERSION,
        &["checkpointctl"],
        |bin| {
            crate::run(go(bin).args([
                "install",
                &format!("github.com/checkpoint-restore/checkpointctl@{CHECKPOINTCTL_VERSION}"),
            ]))
        },
    )
}

fn install_cri_tools() -> anyhow::Result<()> {
    install_stamped(
        "cri-tools.version",
        CRI_TOOLS_VERSION,
        &["crictl", "critest"],
        build_cri_tools,
    )
}

fn build_cri_tools(bin: &Path) -> anyhow::Result<()> {
    crate::run(go(bin).args([
        "install",
        &format!("{MODULE}/cmd/crictl@{CRI_TOOLS_VERSION}"),
    ]))?;

    let module = scratch_module(
        "critest-module",
        "module crated.test/critest-build\n\ngo 1.24\n",
    )?;
    // `go get -t` records cri-tools and the test-only requirements of the
    // critest package (Ginkgo, Gomega) with their go.sum lines, which is
    // what lets `go test -c` build a package of another module.
    crate::run(go(&module).args([
        "get",
        "-t",
        &format!("{MODULE}/cmd/critest@{CRI_TOOLS_VERSION}"),
    ]))?;
    crate::run(go(&module).args([
        "test",
        "-c",
        "-o",
        &bin.join("critest").to_string_lossy(),
        &format!("{MODULE}/cmd/critest"),
    ]))
}

/// The kubelet the kubelet test runs static pods with.
fn install_kubelet() -> anyhow::Result<()> {
    install_stamped(
        "kubelet.version",
        KUBERNETES_VERSION,
        &["kubelet"],
        build_kubelet,
    )
}

fn build_kubelet(bin: &Path) -> anyhow::Result<()> {
    let base = "module crated.test/kubelet-build\n\ngo 1.26\n";
    let module = scratch_module("kubelet-module", base)?;

    // Kubernetes' own go.mod, for the list of its staging modules.
    let kubernetes = format!("k8s.io/kubernetes@{KUBERNETES_VERSION}");
    let output = go(&module)
        .args(["mod", "download", "-json", &kubernetes])
        .output()
        .context("go mod download")?;
    anyhow::ensure!(
        output.status.success(),
        "go mod download {kubernetes}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("go mod download -json")?;
    let go_mod = info["GoMod"]
        .as_str()
        .context("go mod download -json named no GoMod")?;
    let go_mod = std::fs::read_to_string(go_mod).with_context(|| format!("read {go_mod}"))?;
    // The staging modules are released as v0.<minor>.<patch> of the
    // Kubernetes release v1.<minor>.<patch>.
    let staging_version = KUBERNETES_VERSION.replacen("v1.", "v0.", 1);
    let mut replace = String::from("\nreplace (\n");
    for module_path in staging_modules(&go_mod) {
        replace.push_str(&format!(
            "\t{module_path} => {module_path} {staging_version}\n"
        ));
    }
    replace.push_str(")\n");
    anyhow::ensure!(
        replace.contains("k8s.io/cri-api"),
        "no staging modules found in the go.mod of {kubernetes}"
    );
    std::fs::write(module.join("go.mod"), format!("{base}{replace}"))?;

    let package = "k8s.io/kubernetes/cmd/kubelet";
    crate::run(go(&module).args(["get", &format!("{package}@{KUBERNETES_VERSION}")]))?;
    crate::run(go(&module).args([
        "build",
        "-ldflags",
        &format!("-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}"),
        "-o",
        &bin.join("kubelet").to_string_lossy(),
        package,
    ]))
}

/// The module paths a Kubernetes `go.mod` replaces with directories of its
/// own tree (`k8s.io/api => ./staging/src/k8s.io/api`).
fn staging_modules(go_mod: &str) -> Vec<&str> {
    go_mod
        .lines()
        .filter_map(|line| {
            let (module, target) = line.trim().split_once("=>")?;
            target
                .trim()
                .starts_with("./staging/")
                .then(|| module.trim())
        })
        .collect()
}
