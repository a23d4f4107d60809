//! Disk use of a tree, as containerd's `fs.DiskUsage`: allocated blocks
//! and distinct inodes (hard links count once), the root included.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crated_core::snapshots::Usage;

use crate::Error;

/// Measures the tree at `root` without following symlinks.
pub fn measure(root: &Path) -> Result<Usage, Error> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += i64::try_from(meta.blocks() * 512).unwrap_or(i64::MAX);
        }
        if meta.is_dir() {
            let entries = fs::read_dir(&path).map_err(|e| Error::io("read", &path, e))?;
            for entry in entries {
                pending.push(entry.map_err(|e| Error::io("read", &path, e))?.path());
            }
        }
    }
    Ok(usage)
}
