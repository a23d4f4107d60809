//! ID-mapped mounts: how a container in a user namespace of its own sees
//! files owned by the node.
//!
//! A pod with `hostUsers: false` runs as, say, host IDs 65536–131071, its
//! root being 65536. Image layers and volumes belong to the node's IDs, so
//! to the pod they would all look owned by nobody. An ID-mapped mount
//! (`mount_setattr(MOUNT_ATTR_IDMAP)`, Linux 5.12) shifts the owners it
//! shows by a user namespace's mapping instead: a file of host uid 0 shows
//! as 65536 — the pod's root — and what the pod's root writes is stored as
//! uid 0. Nothing on disk is rewritten, so one unpacked image serves every
//! pod whatever its range.
//!
//! containerd passes the mapping of a root filesystem as mount options,
//! `uidmap=<container>:<host>:<size>` and `gidmap=…` (several mappings
//! joined by `,`), which [`super::mount_all`] performs: an overlay gets
//! ID-mapped lower directories (overlayfs itself cannot be ID-mapped, its
//! layers can, since Linux 5.19), any other mount is made and then
//! re-attached ID-mapped.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use crate::{Error, Result};

/// One range of a user namespace's ID mapping: `size` IDs from
/// `container` inside map to as many from `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdMap {
    /// First ID inside the namespace.
    pub container: u32,
    /// The host ID it maps to.
    pub host: u32,
    /// How many IDs the range holds.
    pub size: u32,
}

impl IdMap {
    /// The host ID that `id` inside maps to, if the range holds it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container)?;
        (offset < self.size).then(|| self.host.checked_add(offset))?
    }

    /// Parses containerd's option value: `container:host:size` ranges
    /// joined by `,`.
    ///
    /// ```
    /// use crated_core::mount::idmap::IdMap;
    ///
    /// let maps = IdMap::parse_list("0:65536:65536").unwrap();
    /// assert_eq!(maps[0].to_host(0), Some(65536));
    /// assert!(IdMap::parse_list("0:65536").is_err());
    /// assert!(IdMap::parse_list("0:4294967295:2").is_err());
    /// ```
    pub fn parse_list(value: &str) -> Result<Vec<IdMap>> {
        let bad = |why: &str| Error::invalid_argument(format!("ID mapping {value:?}: {why}"));
        let mut maps = Vec::new();
        for range in value.split(',') {
            let fields: Vec<&str> = range.split(':').collect();
            let [container, host, size] = fields[..] else {
                return Err(bad("want container:host:size"));
            };
            let number = |s: &str| {
                s.parse::<u32>()
                    .map_err(|_| bad(&format!("{s:?} is not an ID")))
            };
            let map = IdMap {
                container: number(container)?,
                host: number(host)?,
                size: number(size)?,
            };
            map.check().map_err(|why| bad(&why))?;
            maps.push(map);
        }
        Ok(maps)
    }

    /// Why the range cannot be written to a user namespace, if it cannot:
    /// empty, or running past the last ID.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.size == 0 {
            return Err("a range of size 0".into());
        }
        let end = |start: u32| u64::from(start) + u64::from(self.size) - 1;
        if end(self.container) >= u64::from(u32::MAX) || end(self.host) >= u64::from(u32::MAX) {
            return Err(format!("the range {self} runs past the last ID"));
        }
        Ok(())
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.size)
    }
}

/// Formats ranges as [`IdMap::parse_list`] reads them.
pub fn format_list(maps: &[IdMap]) -> String {
    maps.iter()
        .map(IdMap::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A user namespace holding a mapping, kept by a descriptor only: what
/// `mount_setattr` takes to shift a mount's owners.
#[derive(Debug)]
pub struct UserNamespace {
    fd: OwnedFd,
}

impl UserNamespace {
    /// A new user namespace with these mappings.
    pub fn with_mappings(uids: &[IdMap], gids: &[IdMap]) -> Result<Self> {
        let holder = NamespaceHolder::spawn(uids, gids, 0)?;
        let path = holder.path("user");
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Ok(Self {
            fd: OwnedFd::from(file),
        })
    }
}

/// A process in a new user namespace with the given mappings (and the
/// other new namespaces asked for, which that user namespace owns), there
/// so that its namespaces can be opened or bind-mounted from `/proc`
/// ([`NamespaceHolder::path`]); killed when dropped.
///
/// A user namespace belongs to a process, and a multi-threaded one cannot
/// enter a new one: a forked child makes it, tells, and waits while its
/// mappings are written.
#[derive(Debug)]
pub struct NamespaceHolder {
    pid: nix::unistd::Pid,
}

impl NamespaceHolder {
    /// Forks the holder: `unshare(CLONE_NEWUSER | also)`, then the
    /// mappings written.
    pub fn spawn(uids: &[IdMap], gids: &[IdMap], also: libc::c_int) -> Result<Self> {
        if uids.is_empty() || gids.is_empty() {
            return Err(Error::invalid_argument(
                "a user namespace needs a uid and a gid mapping",
            ));
        }
        let lines = |maps: &[IdMap]| {
            maps.iter()
                .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
                .collect::<String>()
        };
        let (uid_map, gid_map) = (lines(uids), lines(gids));
        let io = |what: &str, e: std::io::Error| Error::io(format!("user namespace: {what}"), e);
        // Close-on-exec: a program another thread starts meanwhile must
        // not keep the pipe.
        let (ready_r, ready_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("pipe", e.into()))?;
        let parent = nix::unistd::getpid().as_raw();
        // SAFETY: the child only makes async-signal-safe system calls
        // (unshare, write, pause) until it is killed, so forking a
        // multi-threaded process is sound.
        let pid = match unsafe { nix::unistd::fork() } {
            Err(e) => return Err(io("fork", e.into())),
            Ok(nix::unistd::ForkResult::Child) => {
                // SAFETY: plain system calls on a descriptor this child owns.
                unsafe {
                    // Never outlive a parent that dies before killing it.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    if libc::getppid() != parent {
                        libc::_exit(1);
                    }
                    let ok = libc::unshare(libc::CLONE_NEWUSER | also) == 0;
                    let byte = [u8::from(ok)];
                    libc::write(ready_w.as_raw_fd(), byte.as_ptr().cast(), 1);
                    loop {
                        libc::pause();
                    }
                }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => child,
        };
        // From here the child is killed whatever happens.
        let holder = Self { pid };
        drop(ready_w);
        let mut byte = [0u8; 1];
        let n = nix::unistd::read(ready_r.as_raw_fd(), &mut byte)
            .map_err(|e| io("wait for the child", e.into()))?;
        if n != 1 || byte[0] != 1 {
            return Err(Error::failed_precondition(
                "user namespace: the kernel refused a new one (unshare(CLONE_NEWUSER))",
            ));
        }
        std::fs::write(holder.proc_file("uid_map"), &uid_map)
            .map_err(|e| io(&format!("write uid_map {:?}", uid_map.trim()), e))?;
        std::fs::write(holder.proc_file("gid_map"), &gid_map)
            .map_err(|e| io(&format!("write gid_map {:?}", gid_map.trim()), e))?;
        Ok(holder)
    }

    fn proc_file(&self, name: &str) -> std::path::PathBuf {
        Path::new("/proc").join(self.pid.to_string()).join(name)
    }

    /// The holder's namespace of a kind (`user`, `net`, …) under `/proc`.
    pub fn path(&self, kind: &str) -> std::path::PathBuf {
        self.proc_file("ns").join(kind)
    }
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        // Killed rather than told to exit: a child forked meanwhile by
        // another thread holds copies of this one's descriptors.
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid_argument(format!("path {} holds a NUL byte", path.display())))
}

fn syscall_failed(what: String) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

/// How [`idmapped_tree`] copies a mount tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeOptions {
    /// The mounts beneath come along.
    pub recursive: bool,
    /// The copy is read-only (an overlay's lower directory: nothing may
    /// write through it, whoever finds it).
    pub read_only: bool,
}

/// A detached copy of the mount tree at `source`, showing its owners
/// shifted by `userns`'s mapping. Nothing is attached until [`attach`].
pub fn idmapped_tree(source: &Path, userns: &UserNamespace, how: TreeOptions) -> Result<OwnedFd> {
    let recursive = how.recursive;
    let path = c_path(source)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(syscall_failed(format!(
            "open_tree {} to ID-map it",
            source.display()
        )));
    }
    // SAFETY: open_tree returned a new descriptor this now owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP
            | if how.read_only {
                libc::MOUNT_ATTR_RDONLY
            } else {
                0
            },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.fd.as_raw_fd() as u64,
    };
    let mut at = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        at |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: an empty path on a descriptor, and a mount_attr of the size
    // given; the result is checked.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            at,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::failed_precondition(format!(
            "ID-map the mount of {}: {e} (the filesystem must support ID-mapped mounts, Linux 5.12 or later)",
            source.display()
        )));
    }
    Ok(tree)
}

/// Attaches a detached tree from [`idmapped_tree`] at `target`.
pub fn attach(tree: OwnedFd, target: &Path) -> Result<()> {
    let path = c_path(target)?;
    // SAFETY: a descriptor this owns, NUL-terminated paths; checked.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(syscall_failed(format!(
            "attach the ID-mapped mount at {}",
            target.display()
        )));
    }
    Ok(())
}

/// Whether the kernel can ID-map a mount of the filesystem holding
/// `dir` (the snapshotters' root) and mount overlays over such mounts
/// (Linux 5.19): a copy of its mount ID-mapped by a fresh user namespace,
/// then dropped without being attached. (A tmpfs volume needs 6.3; its
/// mount fails naming it on older kernels.)
pub fn supported(dir: &Path) -> bool {
    // An overlay over ID-mapped layers needs 5.19, more than ID-mapped
    // mounts themselves (5.12).
    if !crate::kernel::at_least(5, 19) {
        return false;
    }
    let one = [IdMap {
        container: 0,
        host: 65536,
        size: 65536,
    }];
    UserNamespace::with_mappings(&one, &one)
        .and_then(|ns| idmapped_tree(dir, &ns, TreeOptions::default()))
        .is_ok()
}

/// A mount whose options ask for ID mapping (`uidmap=`, `gidmap=`), split
/// from them.
#[derive(Debug)]
pub(super) struct Mapped {
    mount: super::Mount,
    uids: Vec<IdMap>,
    gids: Vec<IdMap>,
}

impl Mapped {
    /// The mount without its mapping options, if it has any; both or
    /// neither must be there.
    pub(super) fn split(m: &super::Mount) -> Result<Option<Self>> {
        let (mut uids, mut gids) = (None, None);
        let mut mount = m.clone();
        mount.options.clear();
        for option in &m.options {
            if let Some(value) = option.strip_prefix("uidmap=") {
                uids = Some(IdMap::parse_list(value)?);
            } else if let Some(value) = option.strip_prefix("gidmap=") {
                gids = Some(IdMap::parse_list(value)?);
            } else {
                mount.options.push(option.clone());
            }
        }
        match (uids, gids) {
            (None, None) => Ok(None),
            (Some(uids), Some(gids)) => Ok(Some(Self { mount, uids, gids })),
            _ => Err(Error::invalid_argument(format!(
                "mount {} {}: uidmap and gidmap go together",
                m.r#type, m.source
            ))),
        }
    }

    /// Performs the mount at `at`, its owners shifted: an overlay over
    /// ID-mapped copies of its lower directories, anything else made in a
    /// scratch directory and attached at `at` ID-mapped. The scratch
    /// mounts are gone afterwards (an overlay keeps private copies of its
    /// layers), whether or not the mount succeeded.
    pub(super) fn mount(&self, at: &Path) -> Result<()> {
        let userns = UserNamespace::with_mappings(&self.uids, &self.gids)?;
        let mut scratch = ScratchDir::beside(at)?;
        if self.mount.r#type == "overlay" {
            let mut mount = self.mount.clone();
            let Some(lower) = mount
                .options
                .iter_mut()
                .find(|o| o.starts_with("lowerdir="))
            else {
                return Err(Error::invalid_argument(format!(
                    "ID-mapped overlay on {} has no lowerdir",
                    at.display()
                )));
            };
            let mut mapped = Vec::new();
            for (i, dir) in lower["lowerdir=".len()..].split(':').enumerate() {
                let copy = scratch.mount_point(&i.to_string(), true)?;
                let how = TreeOptions {
                    recursive: false,
                    read_only: true,
                };
                attach(idmapped_tree(Path::new(dir), &userns, how)?, &copy)?;
                mapped.push(copy.to_string_lossy().into_owned());
            }
            *lower = format!("lowerdir={}", mapped.join(":"));
            super::mount_one(&mount, at)
        } else {
            let made = scratch.mount_point("0", true)?;
            super::mount_one(&self.mount, &made)?;
            let how = TreeOptions {
                recursive: true,
                read_only: false,
            };
            attach(idmapped_tree(&made, &userns, how)?, at)
        }
    }
}

/// How the scratch directories beside mount targets are named: a
/// directory listing mount targets (a pod's image volumes) skips them, or
/// removes what a crash left (with [`super::unmount_beneath`] first).
pub const SCRATCH_PREFIX: &str = ".idmap-";

/// A private (0700) directory of mount points for mounts that only live
/// while something else is mounted from them: the ID-mapped copies of an
/// overlay's layers, or of a container's volumes until runc has bound
/// them. Dropping it detaches its mounts and removes it, whatever went
/// wrong before.
#[derive(Debug)]
pub struct ScratchDir {
    dir: std::path::PathBuf,
    points: Vec<std::path::PathBuf>,
}

impl ScratchDir {
    /// Makes `dir` (and its parents) for mount points.
    pub fn create(dir: std::path::PathBuf) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("scratch directory {}", dir.display()), e))?;
        Ok(Self {
            dir,
            points: Vec::new(),
        })
    }

    /// A scratch directory beside mount target `target`, named apart from
    /// it: its name may hold what `lowerdir=` cannot (`,`, `:`).
    fn beside(target: &Path) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::create(target.with_file_name(format!("{SCRATCH_PREFIX}{}-{n}", std::process::id())))
    }

    /// A new mount point `name` in it: a directory, or an empty file to
    /// bind a file on.
    pub fn mount_point(&mut self, name: &str, directory: bool) -> Result<std::path::PathBuf> {
        let point = self.dir.join(name);
        let made = if directory {
            std::fs::create_dir(&point)
        } else {
            std::fs::File::create(&point).map(drop)
        };
        made.map_err(|e| Error::io(format!("create mount point {}", point.display()), e))?;
        self.points.push(point.clone());
        Ok(point)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        for point in &self.points {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(point).or_else(|_| std::fs::remove_dir(point));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
