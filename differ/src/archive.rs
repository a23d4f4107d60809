//! Applying a layer's tar stream onto a directory, safely.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT)` from a descriptor
//! of the root: the kernel resolves it as if the root were `/`, so an
//! absolute symlink planted by a layer points into the root and `..` stops
//! at it — containerd's `fs.RootPath`, done by the kernel, race-free. Real
//! images rely on it (`/var/run -> /run`, then files under `var/run/`);
//! nothing ever resolves outside. The final component is then created or
//! changed with `*at` calls that do not follow it. Names and hard-link
//! targets holding `..` are refused outright (InvalidArgument): a layer
//! that needs them is broken or hostile.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use crate::error::{Error, Result};
use crate::CopyError;

/// How OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Onto a merged tree: a whiteout deletes what it names; an opaque
    /// marker deletes what lower layers put in its directory.
    Delete,
    /// Into an overlayfs upper dir: a whiteout becomes a 0/0 character
    /// device, an opaque marker the `trusted.overlay.opaque` xattr.
    Overlay,
}

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE: &str = ".wh..wh..opq";

fn os_error(entry: &Path, op: &'static str, err: Errno) -> Error {
    match err {
        // openat2 in the root: a symlink loop or a /proc magic link.
        Errno::ELOOP => Error::SymlinkLoop {
            entry: entry.to_owned(),
        },
        source => Error::Entry {
            entry: entry.to_owned(),
            op,
            source,
        },
    }
}

fn header_error<'a>(entry: &'a Path, field: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Header {
        entry: entry.to_owned(),
        field,
        source,
    }
}

/// `/proc/self/fd/<fd>`: the node behind an `O_PATH` descriptor, for the
/// calls that have no `*at` form (setxattr).
/// Whether `name` is one of overlayfs's own xattrs: they describe how the
/// layers stack (opaque directories, whiteouts, redirects, origins), never
/// a file's content.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

fn proc_fd_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}"))
        .expect("a /proc/self/fd path is digits and slashes, never a NUL byte")
}

/// The relative path of an entry, without `.` components; `..` is refused
/// outright (containerd would clamp it at the root; a layer that needs it
/// is hostile or broken).
fn clean(raw: &[u8]) -> Result<PathBuf> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(Error::EscapesRoot {
                    entry: path.to_owned(),
                })
            }
            Component::Prefix(_) => {
                return Err(Error::PathPrefix {
                    entry: path.to_owned(),
                })
            }
        }
    }
    Ok(out)
}

/// The root of an apply and what the layer has put there so far.
struct Target {
    root: OwnedFd,
    whiteouts: Whiteouts,
    /// Paths this layer wrote, which its own opaque markers keep.
    unpacked: HashSet<PathBuf>,
    /// Directories whose times are set last: their children change them.
    dir_times: Vec<(PathBuf, i64)>,
    /// What file data is copied through, one for the whole layer.
    buf: Vec<u8>,
}

fn open_in_root(dirfd: RawFd, path: &Path, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let mut how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    if flags.contains(OFlag::O_CREAT) {
        // Owner-only until the entry's own mode is set.
        how = how.mode(Mode::from_bits_truncate(0o600));
    }
    let fd = crated_core::fs::openat2_retrying(dirfd, path, how)?;
    // SAFETY: openat2 returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cstring(name: &OsStr, entry: &Path) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| Error::NulByte {
        entry: entry.to_owned(),
    })
}

impl Target {
    /// A descriptor of the directory `dir` (relative to the root), made
    /// with mode 0755 where missing, as containerd creates parents.
    fn dir(&self, dir: &Path, entry: &Path) -> Result<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        match open_in_root(self.root.as_raw_fd(), dir, flags) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(os_error(entry, "open parent directory", e)),
        }
        // containerd's MkdirAll of the root-resolved path: walked one
        // component at a time, never following anything by itself. A
        // symlink met on the way (dangling, or its target is what is
        // missing) restarts the walk on its target read as root-relative,
        // `..` stopping at the root; what is missing is made, 0755.
        let mut pending = dir.to_owned();
        let mut hops = 0;
        'walk: loop {
            let mut so_far = PathBuf::new();
            let mut fd = open_in_root(self.root.as_raw_fd(), Path::new(""), flags)
                .map_err(|e| os_error(entry, "open root", e))?;
            let components: Vec<Component<'_>> = pending.components().collect();
            for (i, component) in components.iter().enumerate() {
                let name = match component {
                    Component::Normal(name) => *name,
                    Component::ParentDir => {
                        so_far.pop();
                        fd = open_in_root(self.root.as_raw_fd(), &so_far, flags)
                            .map_err(|e| os_error(entry, "open parent directory", e))?;
                        continue;
                    }
                    _ => continue,
                };
                let stat = fstatat(
                    Some(fd.as_raw_fd()),
                    name,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                );
                match stat.map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT) {
                    Ok(SFlag::S_IFLNK) => {
                        hops += 1;
                        if hops > 40 {
                            return Err(os_error(entry, "open parent directory", Errno::ELOOP));
                        }
                        let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), name)
                            .map_err(|e| os_error(entry, "read symlink", e))?;
                        let target = Path::new(&target);
                        let mut next = match target.strip_prefix("/") {
                            Ok(from_root) => from_root.to_owned(),
                            Err(_) => so_far.join(target),
                        };
                        next.extend(components[i + 1..].iter());
                        pending = next;
                        continue 'walk;
                    }
                    Ok(SFlag::S_IFDIR) => {}
                    Ok(_) => return Err(os_error(entry, "open parent directory", Errno::ENOTDIR)),
                    Err(Errno::ENOENT) => {
                        match mkdirat(Some(fd.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                            Ok(()) | Err(Errno::EEXIST) => {}
                            Err(e) => return Err(os_error(entry, "create parent directory", e)),
                        }
                    }
                    Err(e) => return Err(os_error(entry, "open parent directory", e)),
                }
                so_far.push(name);
                // O_NOFOLLOW on the last component: what was checked to be
                // a directory is what is opened.
                fd = open_in_root(fd.as_raw_fd(), Path::new(name), flags | OFlag::O_NOFOLLOW)
                    .map_err(|e| os_error(entry, "open parent directory", e))?;
            }
            return Ok(fd);
        }
    }

    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let path = clean(&entry.path_bytes())?;
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            // The root itself: its attributes are the snapshot's.
            return Ok(());
        };
        let name = name.to_owned();
        let parent_fd = self.dir(parent, &path)?;
        let pfd = parent_fd.as_raw_fd();
        // On bytes: a whiteout of a name that is not UTF-8 names it exactly.
        if let Some(target) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return if name.as_bytes() == OPAQUE.as_bytes() {
                self.opaque(&parent_fd, parent, &path)
            } else {
                self.whiteout(pfd, OsStr::from_bytes(target), &path)
            };
        }

        let header = entry.header().clone();
        let kind = header.entry_type();
        match kind {
            EntryType::Directory
            | EntryType::Regular
            | EntryType::Continuous
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => {}
            // Metadata for what follows, read by tar itself.
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            // Checked before anything at the path is touched.
            entry_type => {
                return Err(Error::UnsupportedEntryType {
                    entry: path,
                    entry_type,
                })
            }
        }
        let existing = fstatat(
            Some(pfd),
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ok();
        let existing_is_dir =
            existing.is_some_and(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFDIR);
        // Anything in the way goes, except a directory replaced by one.
        if existing.is_some() && !(kind == EntryType::Directory && existing_is_dir) {
            remove(pfd, &name, existing_is_dir, &path)?;
        }
        let mode = Mode::from_bits_truncate(header.mode().map_err(header_error(&path, "mode"))?);
        match kind {
            EntryType::Directory => {
                if !existing_is_dir {
                    mkdirat(Some(pfd), name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| os_error(&path, "create directory", e))?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let how = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW;
                let fd = open_in_root(pfd, Path::new(&name), how)
                    .map_err(|e| os_error(&path, "create file", e))?;
                copy_data(&mut entry, File::from(fd), &path, &mut self.buf)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::MissingLinkTarget {
                        entry: path.clone(),
                        link: "symlink",
                    })?;
                let target = cstring(OsStr::from_bytes(&target), &path)?;
                symlinkat(target.as_c_str(), Some(pfd), name.as_os_str())
                    .map_err(|e| os_error(&path, "create symlink", e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::MissingLinkTarget {
                        entry: path.clone(),
                        link: "hard link",
                    })?;
                let target = clean(&target)?;
                let (Some(tparent), Some(tname)) = (target.parent(), target.file_name()) else {
                    return Err(Error::HardLinkToRoot { entry: path });
                };
                let tparent_fd = open_in_root(
                    self.root.as_raw_fd(),
                    tparent,
                    OFlag::O_PATH | OFlag::O_DIRECTORY,
                )
                .map_err(|e| os_error(&path, "open hard link target", e))?;
                linkat(
                    Some(tparent_fd.as_raw_fd()),
                    tname,
                    Some(pfd),
                    name.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|e| os_error(&path, "create hard link", e))?;
                self.unpacked.insert(path);
                // A hard link shares its target's attributes.
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let dev_kind = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = libc::makedev(major, minor);
                mknodat(Some(pfd), name.as_os_str(), dev_kind, mode, dev)
                    .map_err(|e| os_error(&path, "create device node", e))?;
            }
            // Refused or skipped before anything was touched.
            _ => return Ok(()),
        }

        let uid = header.uid().map_err(header_error(&path, "uid"))?;
        let gid = header.gid().map_err(header_error(&path, "gid"))?;
        let out_of_range = |id, value| Error::IdOutOfRange {
            entry: path.clone(),
            id,
            value,
        };
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| out_of_range("uid", uid))?,
            u32::try_from(gid).map_err(|_| out_of_range("gid", gid))?,
        );
        fchownat(
            Some(pfd),
            name.as_os_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| os_error(&path, "chown", e))?;
        if kind != EntryType::Symlink {
            // After chown, which clears set-id bits. The entry was just
            // created by us and is not a symlink, so following is moot.
            fchmodat(
                Some(pfd),
                name.as_os_str(),
                mode,
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| os_error(&path, "chmod", e))?;
            self.xattrs(&mut entry, pfd, &name, &path)?;
        }
        let mtime =
            i64::try_from(header.mtime().map_err(header_error(&path, "mtime"))?).unwrap_or(0);
        if kind == EntryType::Directory {
            self.dir_times.push((path.clone(), mtime));
        } else {
            set_times(pfd, &name, mtime, &path)?;
        }
        self.unpacked.insert(path);
        Ok(())
    }

    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        pfd: RawFd,
        name: &OsStr,
        path: &Path,
    ) -> Result<()> {
        let read_error = |source| Error::ReadEntry {
            entry: path.to_owned(),
            source,
        };
        let Some(extensions) = entry.pax_extensions().map_err(read_error)? else {
            return Ok(());
        };
        let mut xattrs = Vec::new();
        for ext in extensions {
            let ext = ext.map_err(read_error)?;
            if let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                if is_overlay_xattr(key) {
                    return Err(Error::OverlayXattr {
                        entry: path.to_owned(),
                        name: String::from_utf8_lossy(key).into_owned(),
                    });
                }
                xattrs.push((key.to_vec(), ext.value_bytes().to_vec()));
            }
        }
        if xattrs.is_empty() {
            return Ok(());
        }
        // Through /proc/self/fd of an O_PATH descriptor of the node itself:
        // no device is opened and no symlink followed.
        let node = open_in_root(pfd, Path::new(name), OFlag::O_PATH | OFlag::O_NOFOLLOW)
            .map_err(|e| os_error(path, "open for xattrs", e))?;
        let proc_path = proc_fd_path(node.as_raw_fd());
        for (key, value) in xattrs {
            let key = CString::new(key).map_err(|_| Error::XattrNameNul {
                entry: path.to_owned(),
            })?;
            // SAFETY: both strings are NUL-terminated and live across the
            // call; `value` is a valid buffer of the given length.
            let rc = unsafe {
                libc::setxattr(
                    proc_path.as_ptr(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            if rc != 0 {
                let errno = Errno::last();
                // As containerd: a filesystem without xattrs, or `user.`
                // ones refused on special files, is not a failed apply.
                let user = key.as_bytes().starts_with(b"user.");
                match errno {
                    Errno::ENOTSUP => continue,
                    Errno::EPERM if user => continue,
                    source => {
                        return Err(Error::SetXattr {
                            entry: path.to_owned(),
                            name: key.to_string_lossy().into_owned(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, pfd: RawFd, target: &OsStr, entry: &Path) -> Result<()> {
        if target.is_empty() || target == "." || target == ".." {
            return Err(Error::WhiteoutOfNothing {
                entry: entry.to_owned(),
            });
        }
        let existing = fstatat(Some(pfd), target, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        match self.whiteouts {
            Whiteouts::Delete => {
                if let Some(st) = existing {
                    remove(
                        pfd,
                        target,
                        (st.st_mode & libc::S_IFMT) == libc::S_IFDIR,
                        entry,
                    )?;
                }
            }
            Whiteouts::Overlay => {
                if let Some(st) = existing {
                    remove(
                        pfd,
                        target,
                        (st.st_mode & libc::S_IFMT) == libc::S_IFDIR,
                        entry,
                    )?;
                }
                mknodat(
                    Some(pfd),
                    target,
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    libc::makedev(0, 0),
                )
                .map_err(|e| os_error(entry, "create whiteout", e))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir_fd: &OwnedFd, dir: &Path, entry: &Path) -> Result<()> {
        match self.whiteouts {
            Whiteouts::Overlay => {
                let proc_path = proc_fd_path(dir_fd.as_raw_fd());
                // SAFETY: NUL-terminated strings and a 1-byte value that
                // outlive the call.
                let rc = unsafe {
                    libc::setxattr(
                        proc_path.as_ptr(),
                        c"trusted.overlay.opaque".as_ptr(),
                        b"y".as_ptr().cast(),
                        1,
                        0,
                    )
                };
                if rc != 0 {
                    return Err(os_error(entry, "mark directory opaque", Errno::last()));
                }
            }
            Whiteouts::Delete => {
                // What lower layers put here goes; what this layer wrote stays.
                let listing = open_in_root(
                    self.root.as_raw_fd(),
                    dir,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                )
                .map_err(|e| os_error(entry, "open opaque directory", e))?;
                let list_error = |source| Error::Io {
                    op: "list",
                    path: dir.to_owned(),
                    source,
                };
                let children = std::fs::read_dir(format!("/proc/self/fd/{}", listing.as_raw_fd()))
                    .map_err(list_error)?;
                for child in children {
                    let child = child.map_err(list_error)?;
                    if self.unpacked.contains(&dir.join(child.file_name())) {
                        continue;
                    }
                    let is_dir = child.file_type().is_ok_and(|t| t.is_dir());
                    remove(dir_fd.as_raw_fd(), &child.file_name(), is_dir, entry)?;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        // Deepest first, so setting a parent's times is the last change to it.
        let mut dirs = self.dir_times;
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, mtime) in dirs {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let fd = open_in_root(
                self.root.as_raw_fd(),
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            )
            .map_err(|e| os_error(&path, "open for times", e))?;
            set_times(fd.as_raw_fd(), name, mtime, &path)?;
        }
        Ok(())
    }
}

/// Copies an entry's data: a failed read is the layer's problem, a failed
/// write the disk's.
fn copy_data(entry: &mut impl Read, mut file: File, path: &Path, buf: &mut Vec<u8>) -> Result<()> {
    crate::copy(entry, &mut file, buf).map_err(|e| match e {
        CopyError::Read(source) => Error::ReadEntry {
            entry: path.to_owned(),
            source,
        },
        CopyError::Write(source) => Error::WriteEntry {
            entry: path.to_owned(),
            source,
        },
    })
}

fn set_times(pfd: RawFd, name: &OsStr, mtime: i64, entry: &Path) -> Result<()> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(Some(pfd), name, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| os_error(entry, "set times", e))
}

/// Removes `name` in the directory `pfd`: a whole tree if it is a directory
/// (std's removal does not follow symlinks), else the entry.
fn remove(pfd: RawFd, name: &OsStr, is_dir: bool, entry: &Path) -> Result<()> {
    if is_dir {
        let path = Path::new(&format!("/proc/self/fd/{pfd}")).join(name);
        std::fs::remove_dir_all(&path).map_err(|source| Error::RemoveEntry {
            entry: entry.to_owned(),
            name: PathBuf::from(name),
            source,
        })
    } else {
        unlinkat(Some(pfd), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| os_error(entry, "remove", e))
    }
}

/// Applies the tar stream `input` onto the directory `root`; returns the
/// input, positioned after the archive's end (the caller may need the rest,
/// to hash the whole stream).
pub fn apply<R: Read>(input: R, root: &Path, whiteouts: Whiteouts) -> Result<R> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| Error::Sys {
        op: "open",
        path: root.to_owned(),
        source,
    })?;
    let mut target = Target {
        // SAFETY: open returned a fresh descriptor that nothing else owns.
        root: unsafe { OwnedFd::from_raw_fd(root_fd) },
        whiteouts,
        unpacked: HashSet::new(),
        dir_times: Vec::new(),
        buf: Vec::new(),
    };
    let mut archive = tar::Archive::new(input);
    {
        let entries = archive
            .entries()
            .map_err(|source| Error::ReadLayer { source })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::ReadLayer { source })?;
            target.apply(entry)?;
        }
    }
    target.finish()?;
    Ok(archive.into_inner())
}
