//! Installing binaries from image layers into a directory (containerd's
//! `Client.Install`, behind `ctr install`): only the direct children of the
//! layers' `bin/` (and, if asked, `lib/`) are written, into `<dest>/bin` and
//! `<dest>/lib`. Nothing else of a layer is ever written anywhere, whatever
//! its paths and links say: an entry's name is reduced to `bin`/`lib` and one
//! plain name, and files are created in those two directories only, each
//! through a temporary file renamed into place.
//!
//! The layers are read twice: once to find what the stacked layers leave in
//! `bin/` and `lib/` (later layers win, whiteouts remove), then to write
//! exactly that, so an existing file is refused before anything is written.
//!
//! ```no_run
//! # fn f(layer: std::fs::File) -> crated_core::Result<()> {
//! use crated_differ::install::{install, InstallOptions};
//! let layers = vec![layer];
//! let installed = install(
//!     std::path::Path::new("/opt/crated"),
//!     layers.len(),
//!     |i| {
//!         let layer = layers[i].try_clone().map_err(|e| crated_core::Error::io("clone layer", e))?;
//!         Ok(Box::new(layer) as Box<dyn std::io::Read>)
//!     },
//!     &InstallOptions { libs: false, replace: false },
//! )?;
//! println!("installed {installed:?}");
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crated_core::Result;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat2, OFlag, RenameFlags};
use nix::sys::stat::{fchmod, Mode};
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};

use crate::archive::{OPAQUE, WHITEOUT_PREFIX};
use crate::error::Error;
use crate::CopyError;

/// What [`install`] takes.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Also install `lib/`.
    pub libs: bool,
    /// Replace files that are already there (else the install fails before
    /// writing anything).
    pub replace: bool,
}

/// The two directories an install writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Dir {
    Bin,
    Lib,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Bin => "bin",
            Dir::Lib => "lib",
        }
    }
}

/// What an entry of the final tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Symlink(Vec<u8>),
    /// A hard link to another installed name in the same directory.
    Link(Vec<u8>),
}

/// The entry of `bin/<name>` or `lib/<name>` the stacked layers end with.
#[derive(Debug, Clone)]
struct Planned {
    layer: usize,
    kind: Kind,
}

type Key = (Dir, Vec<u8>);

/// What an entry's path means for an install.
enum Selected {
    /// `bin/<name>` (or `lib/<name>`).
    Child(Dir, Vec<u8>),
    /// `bin` (or `lib`) itself.
    Dir(Dir),
    /// Anything else: never written.
    Other,
}

/// The components of a tar path, without `.`, empty parts and a leading
/// `/`; None when it holds `..` (never installed, whatever it points at).
fn components(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            part => out.push(part),
        }
    }
    Some(out)
}

fn select(raw: &[u8], libs: bool) -> Selected {
    let Some(parts) = components(raw) else {
        return Selected::Other;
    };
    let dir = match parts.first() {
        Some(&b"bin") => Dir::Bin,
        Some(&b"lib") if libs => Dir::Lib,
        _ => return Selected::Other,
    };
    // A PAX name may hold NUL, which no file name can.
    if parts.iter().any(|p| p.contains(&0)) {
        return Selected::Other;
    }
    match parts.len() {
        1 => Selected::Dir(dir),
        2 => Selected::Child(dir, parts[1].to_vec()),
        _ => Selected::Other,
    }
}

fn read_error(layer: usize) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::ReadInstallLayer { layer, source }
}

/// A tar path as a path, for errors.
fn entry_path(raw: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(raw))
}

/// Walks every entry of `layer` (decompressed) with `each`.
fn for_each_entry(
    layer: usize,
    blob: impl Read,
    mut each: impl FnMut(&mut tar::Entry<'_, Box<dyn Read + '_>>) -> Result<()>,
) -> Result<()> {
    let mut archive = tar::Archive::new(crate::decompress(blob)?);
    for entry in archive.entries().map_err(read_error(layer))? {
        let mut entry = entry.map_err(read_error(layer))?;
        each(&mut entry)?;
    }
    Ok(())
}

/// Pass one: what the layers, stacked, leave in `bin/` and `lib/`.
fn plan<'a>(
    count: usize,
    open: &mut impl FnMut(usize) -> Result<Box<dyn Read + 'a>>,
    libs: bool,
) -> Result<BTreeMap<Key, Planned>> {
    let mut plan: BTreeMap<Key, Planned> = BTreeMap::new();
    for layer in 0..count {
        for_each_entry(layer, open(layer)?, |entry| {
            let path = entry.path_bytes().into_owned();
            let header = entry.header();
            match select(&path, libs) {
                Selected::Other => {}
                // `bin` replaced by something that is not a directory (a
                // symlink to /etc, say): what lower layers had there is gone.
                Selected::Dir(dir) => {
                    if !header.entry_type().is_dir() {
                        plan.retain(|(d, _), _| *d != dir);
                    }
                }
                Selected::Child(dir, name) => {
                    if name == OPAQUE.as_bytes() {
                        // Opaque: lower layers' entries are hidden, this
                        // layer's own stay.
                        plan.retain(|(d, _), p| *d != dir || p.layer == layer);
                    } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                        plan.remove(&(dir, hidden.to_vec()));
                    } else {
                        let kind = match header.entry_type() {
                            t if t.is_file() => Some(Kind::File),
                            t if t.is_symlink() => entry
                                .link_name_bytes()
                                .map(|target| Kind::Symlink(target.into_owned())),
                            t if t.is_hard_link() => entry.link_name_bytes().and_then(|target| {
                                match select(&target, libs) {
                                    Selected::Child(d, n) if d == dir => Some(Kind::Link(n)),
                                    _ => None,
                                }
                            }),
                            // Directories, devices and fifos are not
                            // binaries: not installed.
                            _ => None,
                        };
                        match kind {
                            Some(kind) => {
                                plan.insert((dir, name), Planned { layer, kind });
                            }
                            // Something else now has the name.
                            None => {
                                plan.remove(&(dir, name));
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
    // A hard link names the file at the end of its chain; one to a name
    // that is not installed (or a loop) has nothing to link to.
    let resolved: Vec<(Key, Option<Vec<u8>>)> = plan
        .iter()
        .filter_map(|((dir, name), p)| match &p.kind {
            Kind::Link(target) => {
                let mut at = target.clone();
                let mut hops = 0;
                let end = loop {
                    match plan.get(&(*dir, at.clone())).map(|p| &p.kind) {
                        Some(Kind::Link(next)) if hops < plan.len() => {
                            at = next.clone();
                            hops += 1;
                        }
                        Some(Kind::Link(_)) | None => break None,
                        Some(_) => break Some(at),
                    }
                };
                Some(((*dir, name.clone()), end))
            }
            _ => None,
        })
        .collect();
    for (key, end) in resolved {
        match end {
            Some(target) => {
                if let Some(p) = plan.get_mut(&key) {
                    p.kind = Kind::Link(target);
                }
            }
            None => {
                plan.remove(&key);
            }
        }
    }
    // Room for the temporary name beside it (NAME_MAX is 255).
    if let Some((dir, name)) = plan.keys().find(|(_, name)| name.len() > 200) {
        return Err(Error::NameTooLong {
            entry: display(*dir, name),
        }
        .into());
    }
    Ok(plan)
}

fn display(dir: Dir, name: &[u8]) -> String {
    format!("{}/{}", dir.name(), String::from_utf8_lossy(name))
}

fn cstring(name: &[u8]) -> Result<CString, Error> {
    CString::new(name).map_err(|_| Error::NulByte {
        entry: entry_path(name),
    })
}

/// One of the destination directories, opened once.
struct Target {
    fd: OwnedFd,
    path: PathBuf,
    dir: Dir,
}

impl Target {
    fn open(dest: &Path, dir: Dir) -> Result<Self, Error> {
        let path = dest.join(dir.name());
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            op: "create",
            path: path.clone(),
            source,
        })?;
        let fd = nix::fcntl::open(
            &path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| Error::Sys {
            op: "open",
            path: path.clone(),
            source,
        })?;
        // SAFETY: open returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, path, dir })
    }

    fn error(&self, name: &[u8], op: &'static str, source: Errno) -> Error {
        Error::Sys {
            op,
            path: self.path.join(OsStr::from_bytes(name)),
            source,
        }
    }

    fn io_error(&self, name: &[u8], op: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: self.path.join(OsStr::from_bytes(name)),
            source,
        }
    }

    fn exists(&self, name: &[u8]) -> Result<bool, Error> {
        let c = cstring(name)?;
        match nix::sys::stat::fstatat(
            Some(self.fd.as_raw_fd()),
            c.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(self.error(name, "stat", e)),
        }
    }

    /// A temporary name beside `name`, for the atomic rename.
    fn temp_name(name: &[u8]) -> Vec<u8> {
        let mut temp = b".".to_vec();
        temp.extend_from_slice(name);
        temp.extend_from_slice(
            format!(".install-{}", crated_core::identifiers::unique_part()).as_bytes(),
        );
        temp
    }

    /// Moves `temp` to `name`: over an existing file only if `replace`
    /// (RENAME_NOREPLACE closes the window after the up-front check).
    fn commit(&self, temp: &[u8], name: &[u8], replace: bool) -> Result<(), Error> {
        let (t, n) = (cstring(temp)?, cstring(name)?);
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::RENAME_NOREPLACE
        };
        let fd = self.fd.as_raw_fd();
        renameat2(Some(fd), t.as_c_str(), Some(fd), n.as_c_str(), flags).map_err(|e| {
            let _ = unlinkat(Some(fd), t.as_c_str(), UnlinkatFlags::NoRemoveDir);
            if e == Errno::EEXIST {
                Error::AppearedDuringInstall {
                    path: self.path.join(OsStr::from_bytes(name)),
                }
            } else {
                self.error(name, "rename into", e)
            }
        })
    }

    /// Writes `data` as `name` with `mode`, durably, then renames it in.
    fn write_file(
        &self,
        name: &[u8],
        data: &mut impl Read,
        mode: u32,
        replace: bool,
    ) -> Result<(), Error> {
        let temp = Self::temp_name(name);
        let c = cstring(&temp)?;
        let fd = openat(
            Some(self.fd.as_raw_fd()),
            c.as_c_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.error(&temp, "create", e))?;
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        let mut file = unsafe { File::from_raw_fd(fd) };
        let written = (|| -> Result<(), Error> {
            crate::copy(data, &mut file, &mut Vec::new()).map_err(|e| match e {
                CopyError::Read(source) => Error::ReadEntry {
                    entry: Path::new(self.dir.name()).join(OsStr::from_bytes(name)),
                    source,
                },
                CopyError::Write(source) => self.io_error(name, "write", source),
            })?;
            // Setuid and setgid bits are not carried over from an image.
            fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode & 0o777))
                .map_err(|e| self.error(name, "chmod", e))?;
            file.flush().map_err(|e| self.io_error(name, "write", e))?;
            file.sync_all().map_err(|e| self.io_error(name, "sync", e))
        })();
        drop(file);
        if let Err(e) = written {
            let _ = unlinkat(
                Some(self.fd.as_raw_fd()),
                c.as_c_str(),
                UnlinkatFlags::NoRemoveDir,
            );
            return Err(e);
        }
        self.commit(&temp, name, replace)
    }

    fn write_symlink(&self, name: &[u8], target: &[u8], replace: bool) -> Result<(), Error> {
        let temp = Self::temp_name(name);
        let (t, link) = (cstring(&temp)?, cstring(target)?);
        symlinkat(link.as_c_str(), Some(self.fd.as_raw_fd()), t.as_c_str())
            .map_err(|e| self.error(name, "symlink", e))?;
        self.commit(&temp, name, replace)
    }

    fn write_link(&self, name: &[u8], target: &[u8], replace: bool) -> Result<(), Error> {
        let temp = Self::temp_name(name);
        let (t, existing) = (cstring(&temp)?, cstring(target)?);
        let fd = self.fd.as_raw_fd();
        linkat(
            Some(fd),
            existing.as_c_str(),
            Some(fd),
            t.as_c_str(),
            nix::fcntl::AtFlags::empty(),
        )
        .map_err(|e| self.error(name, "link", e))?;
        self.commit(&temp, name, replace)
    }

    fn sync(&self) -> Result<(), Error> {
        nix::unistd::fsync(self.fd.as_raw_fd()).map_err(|source| Error::Sys {
            op: "sync",
            path: self.path.clone(),
            source,
        })
    }
}

/// Installs the `bin/` (and with `libs`, `lib/`) files of `count` layers,
/// bottom first, into `dest/bin` and `dest/lib`; `open(i)` gives layer `i`'s
/// blob (compressed or not), and is called twice per layer. Returns the
/// paths written. Without `replace`, an existing file fails the install
/// (AlreadyExists) before anything is written.
pub fn install<'a>(
    dest: &Path,
    count: usize,
    mut open: impl FnMut(usize) -> Result<Box<dyn Read + 'a>>,
    options: &InstallOptions,
) -> Result<Vec<PathBuf>> {
    let plan = plan(count, &mut open, options.libs)?;
    if plan.is_empty() {
        return Err(Error::NothingToInstall { libs: options.libs }.into());
    }
    let mut targets: BTreeMap<Dir, Target> = BTreeMap::new();
    for (dir, _) in plan.keys() {
        if !targets.contains_key(dir) {
            targets.insert(*dir, Target::open(dest, *dir)?);
        }
    }
    let target = |dir: &Dir| {
        targets
            .get(dir)
            .ok_or_else(|| Error::NotOpened { dir: dir.name() })
    };
    if !options.replace {
        for (dir, name) in plan.keys() {
            if target(dir)?.exists(name)? {
                return Err(Error::InstallExists {
                    entry: display(*dir, name),
                    dest: dest.to_owned(),
                }
                .into());
            }
        }
    }
    let mut installed: Vec<PathBuf> = Vec::new();
    // A name a layer holds twice is written twice: the second replaces
    // this install's own first.
    let mut written = std::collections::HashSet::new();
    for layer in 0..count {
        if !plan
            .values()
            .any(|p| p.layer == layer && p.kind == Kind::File)
        {
            continue;
        }
        for_each_entry(layer, open(layer)?, |entry| {
            let path = entry.path_bytes().into_owned();
            let Selected::Child(dir, name) = select(&path, options.libs) else {
                return Ok(());
            };
            let key = (dir, name);
            match plan.get(&key) {
                Some(p) if p.layer == layer && p.kind == Kind::File => {
                    let mode = entry.header().mode().map_err(|source| Error::Header {
                        entry: entry_path(&path),
                        field: "mode",
                        source,
                    })?;
                    let replace = options.replace || written.contains(&key);
                    target(&dir)?.write_file(&key.1, entry, mode, replace)?;
                    if written.insert(key.clone()) {
                        installed.push(dest.join(dir.name()).join(OsStr::from_bytes(&key.1)));
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    // Symlinks, then hard links once every file they may name is in place.
    for ((dir, name), planned) in &plan {
        if let Kind::Symlink(to) = &planned.kind {
            target(dir)?.write_symlink(name, to, options.replace)?;
            installed.push(dest.join(dir.name()).join(OsStr::from_bytes(name)));
        }
    }
    for ((dir, name), planned) in &plan {
        if let Kind::Link(to) = &planned.kind {
            target(dir)?.write_link(name, to, options.replace)?;
            installed.push(dest.join(dir.name()).join(OsStr::from_bytes(name)));
        }
    }
    for target in targets.values() {
        target.sync()?;
    }
    Ok(installed)
}
