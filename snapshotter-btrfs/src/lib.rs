#![doc = include_str!("../README.md")]

mod error;
mod ioctl;

use std::path::Path;

use crated_core::mount::Mount;
use crated_core::snapshots::{Kind, Usage};
use crated_core::Result;
use crated_snapshotter_meta::{usage, DirSnapshotter, Dirs, Layout, Snapshot};
use nix::sys::statfs::{statfs, BTRFS_SUPER_MAGIC};

pub use error::Error;

/// The btrfs snapshotter.
pub type Btrfs = DirSnapshotter<BtrfsLayout>;

/// Opens the btrfs snapshotter at `root`, which must be on a btrfs
/// filesystem ([`Error::NotBtrfs`] otherwise, a FailedPrecondition with
/// containerd's message, which skips the plugin).
pub fn open(root: &Path) -> Result<Btrfs, Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    // 0700 as every snapshotter's root, even when btrfs is not there.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|source| Error::Io {
            op: "create",
            path: root.to_owned(),
            source,
        })?;
    let fs = statfs(root).map_err(|source| Error::Statfs {
        path: root.to_owned(),
        source,
    })?;
    if fs.filesystem_type() != BTRFS_SUPER_MAGIC {
        return Err(Error::NotBtrfs {
            path: root.to_owned(),
        });
    }
    let device = device_of(root)?;
    Ok(DirSnapshotter::open(root, BtrfsLayout { device })?)
}

/// The source device of the btrfs filesystem `path` is on, from
/// `/proc/self/mountinfo`: the mount with the longest mount point that
/// contains `path`.
fn device_of(path: &Path) -> Result<String, Error> {
    let path = path.canonicalize().map_err(|source| Error::Io {
        op: "resolve",
        path: path.to_owned(),
        source,
    })?;
    const MOUNTINFO: &str = "/proc/self/mountinfo";
    let mountinfo = std::fs::read_to_string(MOUNTINFO).map_err(|source| Error::Io {
        op: "read",
        path: MOUNTINFO.into(),
        source,
    })?;
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options… - type source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        let point = unescape(point);
        if *fstype == "btrfs"
            && path.starts_with(&point)
            && best.as_ref().is_none_or(|(len, _)| point.len() > *len)
        {
            best = Some((point.len(), unescape(source)));
        }
    }
    best.map(|(_, device)| device)
        .ok_or(Error::NoBtrfsMount { path })
}

/// Undoes mountinfo's octal escapes of space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Each snapshot a subvolume: a new one for a snapshot without parents, a
/// btrfs snapshot of the parent otherwise (read-only for views); committed
/// snapshots are made read-only. Mounted by subvolume id from the device.
pub struct BtrfsLayout {
    device: String,
}

impl Layout for BtrfsLayout {
    fn create(&self, dir: &Path, kind: Kind, parent: Option<&Path>) -> Result<()> {
        match parent {
            None => ioctl::subvol_create(dir)?,
            Some(parent) => ioctl::subvol_snapshot(parent, dir, kind == Kind::View)?,
        }
        Ok(())
    }

    fn view_needs_files(&self, _parent_ids: &[String]) -> bool {
        // A view is a read-only snapshot of its parent.
        true
    }

    fn mounts(&self, dirs: &Dirs, s: &Snapshot) -> Vec<Mount> {
        let dir = dirs.snapshot(&s.id);
        // A subvolume that vanished under the record mounts nothing; the
        // mount then fails naming the device.
        let mut options = match ioctl::subvol_id(&dir) {
            Ok(id) => vec![format!("subvolid={id}")],
            Err(_) => vec![format!("subvol={}", dir.display())],
        };
        if s.info.kind != Kind::Active {
            options.push("ro".into());
        }
        vec![Mount {
            r#type: "btrfs".into(),
            source: self.device.clone(),
            target: String::new(),
            options,
        }]
    }

    fn usage(&self, dir: &Path) -> Result<Usage> {
        Ok(usage::measure(dir)?)
    }

    fn freeze(&self, dir: &Path, frozen: bool) -> Result<()> {
        Ok(ioctl::set_read_only(dir, frozen)?)
    }

    fn remove(&self, dir: &Path) -> Result<()> {
        if ioctl::is_subvolume(dir) {
            ioctl::subvol_delete(dir)?;
        } else {
            std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
                op: "remove",
                path: dir.to_owned(),
                source,
            })?;
        }
        Ok(())
    }
}

/// `io.containerd.snapshotter.v1 btrfs`.
pub fn registration() -> crated_plugin::Registration {
    crated_snapshotter_meta::plugin::registration("btrfs", open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/x\\134y"), "/x\\y");
    }

    #[test]
    fn other_filesystems_are_refused_with_containerds_message() {
        let dir = tempfile::tempdir().unwrap();
        let Err(err) = open(dir.path()) else {
            // The temporary directory happens to be on btrfs.
            return;
        };
        assert!(matches!(err, Error::NotBtrfs { .. }), "{err}");
        assert!(
            crated_snapshotter_meta::plugin::OpenError::not_applicable(&err),
            "skips the plugin"
        );
        let err = crated_core::Error::from(err);
        assert_eq!(err.kind(), crated_core::Kind::FailedPrecondition);
        assert!(
            err.message()
                .contains("must be a btrfs filesystem to be used with the btrfs snapshotter"),
            "{err}"
        );
    }
}
