#![doc = include_str!("../README.md")]

mod error;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crated_core::mount::Mount;
use crated_core::snapshots::{Kind, Usage};
use crated_core::Result;
use crated_snapshotter_meta::{usage, DirSnapshotter, Dirs, Layout, Snapshot};

pub use error::Error;

/// The overlayfs snapshotter.
pub type Overlay = DirSnapshotter<OverlayLayout>;

/// Opens the overlayfs snapshotter at `root`.
pub fn open(root: &Path) -> Result<Overlay, crated_snapshotter_meta::Error> {
    DirSnapshotter::open(root, OverlayLayout::for_this_kernel())
}

/// Each snapshot `<id>/fs` (its layer: the upper dir while active, a lower
/// dir once committed) and `<id>/work` (overlay's work dir), as containerd.
pub struct OverlayLayout {
    /// Whether to mount with `index=off`: kernels with the index feature
    /// refuse lower dirs that another overlay used with a different upper
    /// dir, which shared committed layers always are.
    index_off: bool,
}

impl OverlayLayout {
    /// The options this kernel needs, as containerd decides them.
    pub fn for_this_kernel() -> Self {
        Self {
            index_off: Path::new("/sys/module/overlay/parameters/index").exists(),
        }
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn upper(dirs: &Dirs, id: &str) -> PathBuf {
    dirs.snapshot(id).join("fs")
}

impl Layout for OverlayLayout {
    fn create(&self, dir: &Path, kind: Kind, parent: Option<&Path>) -> Result<()> {
        let fs_dir = dir.join("fs");
        fs::create_dir(dir).map_err(|e| io_error("create", dir, e))?;
        fs::create_dir(&fs_dir).map_err(|e| io_error("create", &fs_dir, e))?;
        fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("chmod", &fs_dir, e))?;
        if kind == Kind::Active {
            let work = dir.join("work");
            fs::create_dir(&work).map_err(|e| io_error("create", &work, e))?;
            fs::set_permissions(&work, fs::Permissions::from_mode(0o711))
                .map_err(|e| io_error("chmod", &work, e))?;
        }
        // The mounted root shows the upper dir's owner: keep the parent's.
        if let Some(parent) = parent {
            let parent_fs = parent.join("fs");
            let meta = fs::metadata(&parent_fs).map_err(|e| io_error("stat", &parent_fs, e))?;
            std::os::unix::fs::lchown(&fs_dir, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| io_error("chown", &fs_dir, e))?;
        }
        Ok(())
    }

    fn view_needs_files(&self, _parent_ids: &[String]) -> bool {
        // A view is its parents' layers mounted read-only.
        false
    }

    fn mounts(&self, dirs: &Dirs, s: &Snapshot) -> Vec<Mount> {
        let path = |id: &str| upper(dirs, id).display().to_string();
        let read_only = s.info.kind == Kind::View;
        // No parents: the layer itself. A view of one layer: that layer.
        match (s.parent_ids.as_slice(), read_only) {
            ([], _) => return vec![Mount::bind(path(&s.id), read_only)],
            ([parent], true) => return vec![Mount::bind(path(parent), true)],
            _ => {}
        }
        let mut options = Vec::new();
        if self.index_off {
            options.push("index=off".to_owned());
        }
        if !read_only {
            let work = dirs.snapshot(&s.id).join("work");
            options.push(format!("workdir={}", work.display()));
            options.push(format!("upperdir={}", path(&s.id)));
        }
        let lower: Vec<String> = s.parent_ids.iter().map(|id| path(id)).collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        vec![Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options,
        }]
    }

    fn give_root(&self, dir: &Path, snapshot: &Snapshot, uid: u32, gid: u32) -> Result<()> {
        // Without parents the snapshot mounts as an ID-mapped bind of its
        // own directory, which shifts its owner like any other file.
        if snapshot.parent_ids.is_empty() {
            return Ok(());
        }
        let fs_dir = dir.join("fs");
        std::os::unix::fs::lchown(&fs_dir, Some(uid), Some(gid))
            .map_err(|e| io_error("chown", &fs_dir, e))?;
        Ok(())
    }

    fn usage(&self, dir: &Path) -> Result<Usage> {
        Ok(usage::measure(&dir.join("fs"))?)
    }
}

/// `io.containerd.snapshotter.v1 overlayfs`.
pub fn registration() -> crated_plugin::Registration {
    crated_snapshotter_meta::plugin::registration("overlayfs", open)
}
