//! Files written so that a crash leaves either the old content or the new,
//! never a torn mix, and nothing acknowledged is lost.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `data` to `path` durably: into a temporary sibling created with
/// `mode`, synced, renamed over `path`, and the directory synced. A reader
/// sees the whole old file or the whole new one.
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
        .create(true)
        .truncate(true)
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

/// `path` with `.tmp` added to its name (not replacing an extension: two
/// targets `a.x` and `a.y` must not share one): one name per target, so
/// callers serialise writers of one file; a directory reader that picks
/// files by extension (CNI's `.conf`/`.conflist`) passes it over.
fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
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
        assert!(!dir.path().join("a.conflist.tmp").exists());
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/a.json");
        let err = write_durably(&path, b"x", 0o600).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("missing/a.json.tmp"), "{err}");
    }
}
