//! Files written so that a crash leaves either the old content or the new,
//! never a torn mix, and nothing acknowledged is lost.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `data` to `path` durably: into a new temporary sibling (its own
/// name, so concurrent writers never share one and a leftover of a crash
/// is never reused) created with `mode`, synced, renamed over `path`, and
/// the directory synced. A reader sees the whole old file or the whole
/// new one.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("status.json");
/// crated_core::fs::write_durably(&path, b"{}", 0o600).unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"{}");
/// ```
pub fn write_durably(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = tmp_sibling(path);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(data)?;
            file.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("write {}", tmp.display()), e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("rename into {}", path.display()), e));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("sync {}", dir.display()), e)),
        _ => Ok(()),
    }
}

/// `openat2(2)`, tried again while the kernel answers EAGAIN: with
/// `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH` it does so whenever a rename or
/// a mount anywhere on the machine raced the resolution, which a busy node
/// (containers starting, layers unpacking) makes a matter of time. Gives
/// up (EAGAIN) after many tries in a row.
pub fn openat2_retrying<P: ?Sized + nix::NixPath>(
    dirfd: std::os::fd::RawFd,
    path: &P,
    how: nix::fcntl::OpenHow,
) -> nix::Result<std::os::fd::RawFd> {
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(dirfd, path, how) {
            Err(nix::errno::Errno::EAGAIN) if tries < 1000 => tries += 1,
            other => return other,
        }
    }
}

/// A hidden sibling of `path` named after it and a unique part, ending in
/// `.tmp`: a directory reader that picks files by extension (CNI's
/// `.conf`/`.conflist`) or skips dot files passes it over.
fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", crate::identifiers::unique_part()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn replaces_whole_files_with_the_mode_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.conflist");
        write_durably(&path, b"first, and longer", 0o644).unwrap();
        write_durably(&path, b"second", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/a.json");
        let err = write_durably(&path, b"x", 0o600).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("missing/.a.json."), "{err}");
    }
}
