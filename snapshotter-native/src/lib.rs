#![doc = include_str!("../README.md")]

mod error;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use crated_core::mount::Mount;
use crated_core::snapshots::{Kind, Usage};
use crated_core::Result;
use crated_snapshotter_meta::{usage, DirSnapshotter, Dirs, Layout, Snapshot};

pub use error::Error;

/// The native snapshotter.
pub type Native = DirSnapshotter<NativeLayout>;

/// Opens the native snapshotter at `root`.
pub fn open(root: &Path) -> Result<Native, crated_snapshotter_meta::Error> {
    DirSnapshotter::open(root, NativeLayout)
}

/// Each snapshot a plain directory tree; active ones start as a copy of
/// their parent.
pub struct NativeLayout;

impl Layout for NativeLayout {
    fn create(&self, dir: &Path, _kind: Kind, parent: Option<&Path>) -> Result<()> {
        fs::create_dir(dir).map_err(|e| io_error("create", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("chmod", dir, e))?;
        if let Some(parent) = parent {
            copy_tree(parent, dir)?;
        }
        Ok(())
    }

    fn view_needs_files(&self, _parent_ids: &[String]) -> bool {
        // A view mounts its parent read-only.
        false
    }

    fn mounts(&self, dirs: &Dirs, s: &Snapshot) -> Vec<Mount> {
        let path = |id: &str| dirs.snapshot(id).display().to_string();
        match (s.info.kind, s.parent_ids.first()) {
            (Kind::View, Some(parent)) => vec![Mount::bind(path(parent), true)],
            (kind, _) => vec![Mount::bind(path(&s.id), kind == Kind::View)],
        }
    }

    fn usage(&self, dir: &Path) -> Result<Usage> {
        Ok(usage::measure(dir)?)
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Copies the tree at `from` into the existing directory `to`, keeping
/// every file type, hard links, owners, modes, times and extended
/// attributes: GNU cp's `-a` does all of that, and shares extents where the
/// filesystem can (`--reflink=auto`).
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(from.join("."))
        .arg(to)
        .output()
        .map_err(|source| Error::SpawnCopy {
            from: from.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Copy {
            from: from.to_owned(),
            to: to.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// `io.containerd.snapshotter.v1 native`.
pub fn registration() -> crated_plugin::Registration {
    crated_snapshotter_meta::plugin::registration("native", open)
}
