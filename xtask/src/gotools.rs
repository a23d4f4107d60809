//! cri-tools' crictl and critest, and checkpointctl, built with the Go
//! toolchain from the Go module proxy into the CI cache
//! (`crated_testimages::go_bin_dir()`).
//! crictl is a plain `go install`; critest is a Ginkgo test binary, so it is
//! compiled with `go test -c` inside a scratch module that requires
//! cri-tools. Stamp files record the versions built, so a warm cache skips
//! the whole step.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use crated_testimages::{go_bin_dir, go_cache_dir, CHECKPOINTCTL_VERSION, CRI_TOOLS_VERSION};

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

/// Builds crictl, critest and checkpointctl unless their stamps say these
/// versions are there.
pub fn install() -> anyhow::Result<()> {
    install_cri_tools()?;
    install_checkpointctl()
}

/// Whether the stamp file `stamp` (in the bin directory) names `version`
/// and every one of `binaries` is there: then nothing is rebuilt.
fn built(stamp: &str, version: &str, binaries: &[&str]) -> bool {
    let bin = go_bin_dir();
    let recorded = std::fs::read_to_string(bin.join(stamp)).unwrap_or_default();
    recorded.trim() == version && binaries.iter().all(|b| bin.join(b).is_file())
}

/// checkpointctl, which the CRI checkpoint test reads its archives with.
fn install_checkpointctl() -> anyhow::Result<()> {
    let stamp = "checkpointctl.version";
    if built(stamp, CHECKPOINTCTL_VERSION, &["checkpointctl"]) {
        return Ok(());
    }
    let bin = go_bin_dir();
    std::fs::create_dir_all(&bin).with_context(|| format!("create {}", bin.display()))?;
    crate::run(go(&bin).args([
        "install",
        &format!("github.com/checkpoint-restore/checkpointctl@{CHECKPOINTCTL_VERSION}"),
    ]))?;
    std::fs::write(bin.join(stamp), CHECKPOINTCTL_VERSION)?;
    Ok(())
}

fn install_cri_tools() -> anyhow::Result<()> {
    let stamp = "cri-tools.version";
    if built(stamp, CRI_TOOLS_VERSION, &["crictl", "critest"]) {
        return Ok(());
    }
    let bin = go_bin_dir();
    std::fs::create_dir_all(&bin).with_context(|| format!("create {}", bin.display()))?;

    crate::run(go(&bin).args([
        "install",
        &format!("{MODULE}/cmd/crictl@{CRI_TOOLS_VERSION}"),
    ]))?;

    let module = go_cache_dir().join("critest-module");
    let _ = std::fs::remove_dir_all(&module);
    std::fs::create_dir_all(&module)?;
    std::fs::write(
        module.join("go.mod"),
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
    ]))?;
    std::fs::write(bin.join(stamp), CRI_TOOLS_VERSION)?;
    Ok(())
}
