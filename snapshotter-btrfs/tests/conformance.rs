//! The snapshotter conformance suite on the btrfs snapshotter, each case on
//! its own loop-mounted btrfs image made with Debian's btrfs-progs, as root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crated_core::snapshots::testsuite::Fixture;

/// A btrfs filesystem in an image file, loop-mounted; unmounted (which
/// frees the loop device) and deleted on drop.
struct LoopBtrfs {
    dir: tempfile::TempDir,
    mountpoint: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl LoopBtrfs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let image = dir.path().join("btrfs.img");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("create the mount point");
        // 256 MiB: the smallest btrfs with room for the suite's cases.
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(256 << 20))
            .expect("create the image file");
        run(Command::new("mkfs.btrfs").arg("-q").arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint));
        Self { dir, mountpoint }
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        // Every mount of this filesystem, including snapshot mounts a failed
        // case left behind, so the loop device is freed.
        let _ = Command::new("umount")
            .arg("--all-targets")
            .arg(&self.mountpoint)
            .status();
        let _ = &self.dir;
    }
}

async fn snapshotter() -> Fixture {
    let fs = LoopBtrfs::new();
    let btrfs = crated_snapshotter_btrfs::open(&fs.path().join("root"))
        .expect("open the btrfs snapshotter");
    Fixture::new(Arc::new(btrfs), fs)
}

crated_core::snapshotter_testsuite!(snapshotter);
