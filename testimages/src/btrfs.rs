//! A btrfs filesystem in an image file, loop-mounted (Debian's
//! btrfs-progs, as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// A loop-mounted btrfs; unmounted (every mount of it, which frees the
/// loop device) and deleted on drop.
pub struct LoopBtrfs {
    _dir: crate::registry::TempDir,
    mountpoint: PathBuf,
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl LoopBtrfs {
    /// A fresh filesystem of `size` bytes (btrfs needs about 128 MiB at least).
    pub fn new(size: u64) -> Result<Self> {
        let dir = crate::registry::TempDir::new("crated-btrfs")?;
        let image = dir.path().join("btrfs.img");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint)?;
        std::fs::File::create(&image)?.set_len(size)?;
        run(Command::new("mkfs.btrfs").arg("-q").arg(&image))
            .context("mkfs.btrfs (apt-get install btrfs-progs)")?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint))?;
        Ok(Self {
            _dir: dir,
            mountpoint,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--all-targets")
            .arg(&self.mountpoint)
            .status();
    }
}
