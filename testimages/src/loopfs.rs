//! A btrfs or ext4 filesystem in an image file, loop-mounted (Debian's
//! btrfs-progs and e2fsprogs, as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// A loop-mounted filesystem; unmounted (every mount of it, which frees
/// the loop device) and deleted on drop.
pub struct LoopFs {
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

impl LoopFs {
    /// A fresh btrfs of `size` bytes (btrfs needs about 128 MiB at least).
    pub fn btrfs(size: u64) -> Result<Self> {
        let mut mkfs = Command::new("mkfs.btrfs");
        mkfs.arg("-q");
        Self::new(size, &mut mkfs, "mkfs.btrfs (apt-get install btrfs-progs)")
    }

    /// A fresh ext4 of `size` bytes.
    pub fn ext4(size: u64) -> Result<Self> {
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F"]);
        Self::new(size, &mut mkfs, "mkfs.ext4 (apt-get install e2fsprogs)")
    }

    /// An image file of `size` bytes made a filesystem by `mkfs` (its
    /// path appended; `what` names it in errors), loop-mounted.
    fn new(size: u64, mkfs: &mut Command, what: &str) -> Result<Self> {
        let dir = crate::registry::TempDir::new("crated-loopfs")?;
        let image = dir.path().join("fs.img");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint)?;
        std::fs::File::create(&image)?.set_len(size)?;
        run(mkfs.arg(&image)).context(what.to_owned())?;
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

    /// How many bytes have been written to its loop device: what reached
    /// its "disk", not what waits in the page cache.
    pub fn bytes_written(&self) -> Result<u64> {
        let table = std::fs::read_to_string("/proc/self/mountinfo")?;
        let point = self.mountpoint.display().to_string();
        let device = table
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let dash = fields.iter().position(|f| *f == "-")?;
                (fields.get(4) == Some(&point.as_str())).then(|| fields.get(dash + 2).copied())?
            })
            .with_context(|| format!("{point} is not mounted"))?;
        let name = device.trim_start_matches("/dev/");
        let stat = std::fs::read_to_string(format!("/sys/block/{name}/stat"))?;
        // The seventh field: sectors written, of 512 bytes.
        let sectors: u64 = stat
            .split_whitespace()
            .nth(6)
            .with_context(|| format!("/sys/block/{name}/stat: {stat}"))?
            .parse()?;
        Ok(sectors * 512)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--all-targets")
            .arg(&self.mountpoint)
            .status();
    }
}
