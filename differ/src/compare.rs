//! Writing the difference of two trees as a layer: containerd's
//! `archive.WriteDiff` over a double walk (`fs.Changes`). What is only in
//! `upper`, or differs in type, mode, owner, size, mtime, link target or
//! device, is written with its parent directories; what is only in
//! `lower` becomes a whiteout (`.wh.<name>`). Hard links within the layer
//! stay hard links; extended attributes go in PAX `SCHILY.xattr.` records.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CString, OsString};
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::error::{Error, Result};

fn io_error(path: &Path, op: &'static str, source: io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Writes the tar of what changed from `lower` to `upper` into `out`;
/// with `epoch` (seconds since 1970), no entry is dated later and
/// whiteouts are dated then.
pub fn write_diff(lower: &Path, upper: &Path, out: impl Write, epoch: Option<u64>) -> Result<()> {
    write(Some(lower), upper, out, epoch)
}

/// Writes the whole tree under `root` as a tar into `out` (containerd's
/// `archive.Diff` from nothing): a checkpoint image, for one.
pub fn write_tree(root: &Path, out: impl Write) -> Result<()> {
    write(None, root, out, None)
}

fn write(lower: Option<&Path>, upper: &Path, out: impl Write, epoch: Option<u64>) -> Result<()> {
    let mut writer = DiffWriter {
        tar: tar::Builder::new(out),
        epoch,
        upper: upper.to_owned(),
        written_dirs: BTreeSet::new(),
        links: HashMap::new(),
    };
    writer.tar.mode(tar::HeaderMode::Complete);
    diff_dir(&mut writer, lower, upper, Path::new(""))?;
    writer
        .tar
        .finish()
        .map_err(|source| Error::FinishDiff { source })
}

struct DiffWriter<W: Write> {
    tar: tar::Builder<W>,
    /// No entry is dated later than this (seconds since 1970).
    epoch: Option<u64>,
    upper: PathBuf,
    /// Directories already in the tar, so parents are written once.
    written_dirs: BTreeSet<PathBuf>,
    /// (dev, inode) of files written, for hard links.
    links: HashMap<(u64, u64), PathBuf>,
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)
        .map_err(|e| io_error(dir, "read directory", e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| io_error(dir, "read directory", e))?;
    names.sort();
    Ok(names)
}

/// Whether an entry present on both sides changed, as containerd's
/// `compareFile`/`sameFile` judge it (content is not read: same size and
/// mtime mean unchanged, as containerd when mtimes have nanoseconds).
fn changed(lower: &Metadata, upper: &Metadata, lpath: &Path, upath: &Path) -> Result<bool> {
    let (lt, ut) = (lower.file_type(), upper.file_type());
    if lower.mode() != upper.mode() || lower.uid() != upper.uid() || lower.gid() != upper.gid() {
        return Ok(true);
    }
    if lt.is_dir() && ut.is_dir() {
        // A directory's own entry changes with its mode or owner only.
        return Ok(false);
    }
    if lower.rdev() != upper.rdev() || lower.size() != upper.size() {
        return Ok(true);
    }
    if lt.is_symlink() {
        let (a, b) = (
            fs::read_link(lpath).map_err(|e| io_error(lpath, "read link", e))?,
            fs::read_link(upath).map_err(|e| io_error(upath, "read link", e))?,
        );
        return Ok(a != b);
    }
    Ok(lower.mtime() != upper.mtime() || lower.mtime_nsec() != upper.mtime_nsec())
}

fn diff_dir<W: Write>(
    w: &mut DiffWriter<W>,
    lower: Option<&Path>,
    upper: &Path,
    rel: &Path,
) -> Result<()> {
    let upper_names = sorted_names(upper)?;
    let lower_names = match lower {
        Some(l) => sorted_names(l)?,
        None => Vec::new(),
    };
    let (mut i, mut j) = (0, 0);
    while i < lower_names.len() || j < upper_names.len() {
        let order = match (lower_names.get(i), upper_names.get(j)) {
            (Some(l), Some(u)) => l.cmp(u),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                // Only in lower: deleted.
                w.whiteout(&rel.join(&lower_names[i]))?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let name = &upper_names[j];
                let upath = upper.join(name);
                let meta = fs::symlink_metadata(&upath).map_err(|e| io_error(&upath, "stat", e))?;
                w.add(&rel.join(name), &upath, &meta)?;
                if meta.is_dir() {
                    diff_dir(w, None, &upath, &rel.join(name))?;
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let name = &upper_names[j];
                let (lpath, upath) = (
                    lower.map(|l| l.join(name)).unwrap_or_default(),
                    upper.join(name),
                );
                let lmeta =
                    fs::symlink_metadata(&lpath).map_err(|e| io_error(&lpath, "stat", e))?;
                let umeta =
                    fs::symlink_metadata(&upath).map_err(|e| io_error(&upath, "stat", e))?;
                let same_type = lmeta.file_type() == umeta.file_type()
                    || (lmeta.file_type().is_file() && umeta.file_type().is_file());
                if !same_type || changed(&lmeta, &umeta, &lpath, &upath)? {
                    w.add(&rel.join(name), &upath, &umeta)?;
                }
                if umeta.is_dir() {
                    let lower_dir = lmeta.is_dir().then_some(lpath.as_path());
                    diff_dir(w, lower_dir, &upath, &rel.join(name))?;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(cpath) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: `cpath` is a valid C string, `names` a writable buffer of
    // the length passed.
    let len = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len <= 0 {
        return Vec::new();
    }
    names.truncate(len as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        // Overlay's own attributes are not part of the tree's content.
        if crate::archive::is_overlay_xattr(name) {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 64 << 10];
        // SAFETY: valid C strings and a writable buffer of the length passed.
        let n = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if n < 0 {
            continue;
        }
        value.truncate(n as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    out
}

impl<W: Write> DiffWriter<W> {
    fn tar_error(&self, rel: &Path, source: io::Error) -> Error {
        Error::WriteDiffEntry {
            entry: rel.to_owned(),
            source,
        }
    }

    /// Writes the parent directories of `rel` not yet in the tar.
    fn parents(&mut self, rel: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut parent = rel.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            if self.written_dirs.contains(p) {
                break;
            }
            missing.push(p.to_owned());
            parent = p.parent();
        }
        for dir in missing.into_iter().rev() {
            let path = self.upper.join(&dir);
            let meta = fs::symlink_metadata(&path).map_err(|e| io_error(&path, "stat", e))?;
            self.entry(&dir, &path, &meta)?;
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path) -> Result<()> {
        self.parents(rel)?;
        let name = rel
            .file_name()
            .map(|n| {
                let mut w = OsString::from(".wh.");
                w.push(n);
                w
            })
            .ok_or_else(|| Error::WhiteoutName {
                entry: rel.to_owned(),
            })?;
        let path = rel.with_file_name(name);
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        // Undated unless the caller dates layers: one layer whenever made.
        header.set_mtime(self.epoch.unwrap_or(0));
        header.set_uid(0);
        header.set_gid(0);
        self.tar
            .append_data(&mut header, &path, io::empty())
            .map_err(|e| self.tar_error(rel, e))
    }

    fn add(&mut self, rel: &Path, path: &Path, meta: &Metadata) -> Result<()> {
        self.parents(rel)?;
        self.entry(rel, path, meta)
    }

    fn entry(&mut self, rel: &Path, path: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        let mtime = meta.mtime().max(0) as u64;
        header.set_mtime(self.epoch.map_or(mtime, |epoch| mtime.min(epoch)));
        header.set_size(0);
        let attrs = xattrs(path);
        if !attrs.is_empty() {
            let records: Vec<(String, Vec<u8>)> = attrs
                .into_iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
                .collect();
            self.tar
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(|e| self.tar_error(rel, e))?;
        }
        if ft.is_dir() {
            header.set_entry_type(EntryType::Directory);
            self.written_dirs.insert(rel.to_owned());
            return self
                .tar
                .append_data(&mut header, rel, io::empty())
                .map_err(|e| self.tar_error(rel, e));
        }
        if ft.is_symlink() {
            header.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(path).map_err(|e| io_error(path, "read link", e))?;
            return self
                .tar
                .append_link(&mut header, rel, &target)
                .map_err(|e| self.tar_error(rel, e));
        }
        if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&key).cloned() {
                    header.set_entry_type(EntryType::Link);
                    return self
                        .tar
                        .append_link(&mut header, rel, &first)
                        .map_err(|e| self.tar_error(rel, e));
                }
                self.links.insert(key, rel.to_owned());
            }
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.size());
            let file = fs::File::open(path).map_err(|e| io_error(path, "open", e))?;
            return self
                .tar
                .append_data(&mut header, rel, file)
                .map_err(|e| self.tar_error(rel, e));
        }
        let kind = if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else {
            // Sockets are not archived (containerd skips them too).
            return Ok(());
        };
        header.set_entry_type(kind);
        let rdev = meta.rdev();
        header
            .set_device_major(libc::major(rdev))
            .and_then(|_| header.set_device_minor(libc::minor(rdev)))
            .map_err(|e| self.tar_error(rel, e))?;
        self.tar
            .append_data(&mut header, rel, io::empty())
            .map_err(|e| self.tar_error(rel, e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::archive::{apply, Whiteouts};

    /// A diff applied onto a copy of lower reproduces upper.
    #[test]
    fn a_diff_applied_onto_lower_gives_upper() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper, out) = (
            dir.path().join("lower"),
            dir.path().join("upper"),
            dir.path().join("out"),
        );
        for root in [&lower, &out] {
            fs::create_dir_all(root.join("keep/sub")).unwrap();
            fs::write(root.join("keep/same"), "same").unwrap();
            fs::write(root.join("keep/sub/gone"), "x").unwrap();
            fs::create_dir(root.join("dropped")).unwrap();
            fs::write(root.join("dropped/f"), "f").unwrap();
            fs::write(root.join("edited"), "old").unwrap();
            std::os::unix::fs::symlink("keep", root.join("link")).unwrap();
        }
        // out = lower; upper = lower + changes.
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(&lower)
            .arg(&upper)
            .status()
            .unwrap();
        assert!(cp.success());
        let t = filetime_of(&upper.join("keep/same"));
        fs::remove_file(upper.join("keep/sub/gone")).unwrap();
        fs::remove_dir_all(upper.join("dropped")).unwrap();
        fs::write(upper.join("edited"), "new content").unwrap();
        fs::create_dir_all(upper.join("new/deep")).unwrap();
        fs::write(upper.join("new/deep/file"), "hello").unwrap();
        fs::hard_link(upper.join("new/deep/file"), upper.join("new/hard")).unwrap();
        fs::remove_file(upper.join("link")).unwrap();
        std::os::unix::fs::symlink("new", upper.join("link")).unwrap();
        assert_eq!(filetime_of(&upper.join("keep/same")), t);

        let mut tar = Vec::new();
        write_diff(&lower, &upper, &mut tar, None).unwrap();
        let names = tar_names(&tar);
        assert!(
            !names.iter().any(|n| n.contains("same")),
            "unchanged file in the diff: {names:?}"
        );
        assert!(names.contains(&"keep/sub/.wh.gone".to_owned()), "{names:?}");
        assert!(names.contains(&".wh.dropped".to_owned()), "{names:?}");
        apply(&tar[..], &out, Whiteouts::Delete).unwrap();

        assert_eq!(
            fs::read_to_string(out.join("edited")).unwrap(),
            "new content"
        );
        assert!(!out.join("keep/sub/gone").exists() && out.join("keep/sub").is_dir());
        assert!(!out.join("dropped").exists());
        assert_eq!(
            fs::read_to_string(out.join("new/deep/file")).unwrap(),
            "hello"
        );
        assert_eq!(
            out.join("new/hard").metadata().unwrap().ino(),
            out.join("new/deep/file").metadata().unwrap().ino()
        );
        assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("new"));
    }

    /// With an epoch, what is newer is dated then, what is older keeps its
    /// time, and whiteouts carry the epoch: the same change, the same layer.
    #[test]
    fn an_epoch_clamps_entry_times_and_dates_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        fs::create_dir_all(lower.join("d")).unwrap();
        fs::write(lower.join("d/gone"), "x").unwrap();
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::write(upper.join("d/new"), "now").unwrap();
        fs::write(upper.join("old"), "from 1990").unwrap();
        let in_1990 = nix::sys::time::TimeSpec::new(631_152_000, 0);
        nix::sys::stat::utimensat(
            None,
            &upper.join("old"),
            &in_1990,
            &in_1990,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let epoch = 1_000_000_000; // 2001
        let layer = |epoch| {
            let mut tar = Vec::new();
            write_diff(&lower, &upper, &mut tar, epoch).unwrap();
            tar
        };
        let dated = layer(Some(epoch));
        let times: std::collections::BTreeMap<String, u64> = tar::Archive::new(&dated[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(times["d/new"], epoch);
        assert_eq!(times["d/.wh.gone"], epoch);
        assert_eq!(times["old"], 631_152_000);
        assert_eq!(times["d"], epoch);
        // Made again later: byte for byte the same layer.
        fs::write(upper.join("d/new"), "now").unwrap();
        assert_eq!(layer(Some(epoch)), dated);
        // Without one, the new file keeps its own (recent) time.
        let undated = layer(None);
        let new_time = tar::Archive::new(&undated[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap() == Path::new("d/new"))
            .map(|e| e.header().mtime().unwrap())
            .unwrap();
        assert!(new_time > epoch);
    }

    fn filetime_of(p: &Path) -> (i64, i64) {
        let m = p.metadata().unwrap();
        (m.mtime(), m.mtime_nsec())
    }

    fn tar_names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }
}
