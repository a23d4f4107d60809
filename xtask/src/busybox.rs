//! Debian's dynamically linked busybox for critest's busybox image
//! (`crated_testimages::DYNAMIC_BUSYBOX`). Its shell execs every command,
//! where busybox-static runs its applets in-process, which critest's
//! MaskedPaths spec needs: a masked `/bin/ls` must fail to exec. The
//! package conflicts with busybox-static, so it is only downloaded and
//! unpacked into the CI cache, never installed.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// Downloads and unpacks the `busybox` package unless it is there.
pub fn install() -> anyhow::Result<()> {
    let binary = Path::new(crated_testimages::DYNAMIC_BUSYBOX);
    if binary.is_file() {
        return Ok(());
    }
    // <base>/bin/busybox → <base>
    let base = binary
        .parent()
        .and_then(Path::parent)
        .context("busybox path has no base directory")?;
    let download = base.join("download");
    let _ = std::fs::remove_dir_all(base);
    std::fs::create_dir_all(&download)?;
    let fetch = || {
        Command::new("apt-get")
            .args(["download", "-qq", "busybox"])
            .current_dir(&download)
            .status()
    };
    if !fetch()?.success() {
        // The package lists may not be there yet on a fresh machine.
        crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
        if !fetch()?.success() {
            bail!("apt-get download busybox failed");
        }
    }
    let deb = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(base))?;
    if !binary.is_file() {
        bail!("{} is not in the busybox package", binary.display());
    }
    Ok(())
}
