//! Mounts as snapshotters return them and runtimes perform them.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags};

use crate::{Error, Result};

pub mod idmap;

/// One mount, as containerd's `mount.Mount`: performed as
/// `mount -t <type> -o <options> <source> <target>` would, by mount(2).
///
/// ```
/// use crated_core::mount::Mount;
///
/// let m = Mount::bind("/var/lib/x/snapshots/1", true);
/// assert_eq!(m.r#type, "bind");
/// assert_eq!(m.options, ["rbind", "ro"]);
/// assert!(m.is_read_only());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// Filesystem type: `bind`, `overlay`, `btrfs`, …
    pub r#type: String,
    /// Source: a directory for bind mounts, a device, or the type again.
    pub source: String,
    /// Where to mount, relative to the mount root; usually empty.
    pub target: String,
    /// Options as `mount -o` takes them (`ro`, `lowerdir=…`, …).
    pub options: Vec<String>,
}

impl Mount {
    /// A recursive bind mount of `source`, read-only or read-write, as
    /// containerd's native snapshotter returns.
    pub fn bind(source: impl Into<String>, read_only: bool) -> Self {
        Self {
            r#type: "bind".into(),
            source: source.into(),
            target: String::new(),
            options: vec!["rbind".into(), if read_only { "ro" } else { "rw" }.into()],
        }
    }

    /// Whether the mount is read-only (an `ro` option).
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// The options to mount with, and the directory to mount from.
    ///
    /// mount(2) takes at most a page of options, which an overlay of a deep
    /// chain of absolute `lowerdir` paths exceeds; as containerd does, such
    /// a mount gives its lower dirs relative to their common parent and is
    /// performed with that directory as the working directory.
    ///
    /// ```
    /// use crated_core::mount::Mount;
    ///
    /// let root = "/var/lib/crated/io.containerd.snapshotter.v1.overlayfs/snapshots";
    /// let lower: Vec<String> = (0..128).map(|i| format!("{root}/{i}/fs")).collect();
    /// let m = Mount {
    ///     r#type: "overlay".into(),
    ///     source: "overlay".into(),
    ///     options: vec![format!("lowerdir={}", lower.join(":")), "index=off".into()],
    ///     ..Default::default()
    /// };
    /// let (dir, options) = m.compacted();
    /// assert_eq!(dir, Some(format!("{root}/")));
    /// assert!(options[1].starts_with("lowerdir=0/fs:1/fs:"));
    /// ```
    pub fn compacted(&self) -> (Option<String>, Vec<String>) {
        const PAGE: usize = 4096;
        let size: usize = self.options.iter().map(|o| o.len() + 1).sum();
        if self.r#type != "overlay" || size < PAGE - 512 {
            return (None, self.options.clone());
        }
        let Some(index) = self.options.iter().position(|o| o.starts_with("lowerdir=")) else {
            return (None, self.options.clone());
        };
        let dirs: Vec<&str> = self.options[index]["lowerdir=".len()..]
            .split(':')
            .collect();
        let (Some(min), Some(max)) = (dirs.iter().min(), dirs.iter().max()) else {
            return (None, self.options.clone());
        };
        if dirs.len() < 2 {
            return (None, self.options.clone());
        }
        let common = min
            .bytes()
            .zip(max.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        // Back to a directory boundary: snapshot ids are digits, so the
        // common prefix may end inside one (`snapshots/1` of 10 and 12).
        // Found on bytes: the prefix may end inside a multi-byte character,
        // and `/` never is part of one.
        let Some(slash) = min.as_bytes()[..common]
            .iter()
            .rposition(|b| *b == b'/')
            .filter(|&i| i > 0)
        else {
            return (None, self.options.clone());
        };
        let dir = &min[..=slash];
        let relative: Vec<&str> = dirs.iter().map(|d| &d[dir.len()..]).collect();
        let mut options = self.options.clone();
        options.remove(index);
        options.push(format!("lowerdir={}", relative.join(":")));
        (Some(dir.to_owned()), options)
    }
}

/// Mounts performed on a target directory, undone (last first) when dropped
/// — also when the caller fails or panics.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    depth: usize,
}

impl MountGuard {
    /// Where the mounts are.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Leaves the mounts in place for good (`ctr images mount`).
    pub fn keep(mut self) {
        self.depth = 0;
    }

    /// Unmounts now, reporting a failure (drop ignores them).
    pub fn unmount(mut self) -> Result<()> {
        while self.depth > 0 {
            unmount(&self.target)?;
            self.depth -= 1;
        }
        Ok(())
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        for _ in 0..self.depth {
            let _ = unmount(&self.target);
        }
    }
}

/// A mount or unmount failing.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// mount(8) or umount(8) exited unsuccessfully; `stderr` is what it
    /// said.
    #[error("{what}: {stderr}")]
    Failed {
        /// What was being mounted or unmounted where.
        what: String,
        /// How the command exited.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
    },
    /// mount(2) or umount2(2) refused.
    #[error("{what}: {errno}")]
    Syscall {
        /// What was being mounted or unmounted where, with the options.
        what: String,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
}

impl crate::error::KindError for MountError {
    fn kind(&self) -> crate::Kind {
        // mount(8) reports every failure by exit status 32 with a message
        // for people, and mount(2)'s EINVAL covers most of what can be
        // wrong: nothing finer to tell apart.
        crate::Kind::Unknown
    }
}

fn run(cmd: &mut Command, what: impl Fn() -> String) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("{}: run {:?}", what(), cmd.get_program()), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(MountError::Failed {
        what: what(),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    }
    .into())
}

/// How mount(2) performs a mount: its flags, the propagation change made
/// after it, and the filesystem's own options.
#[derive(Debug, PartialEq, Eq)]
struct Syscall {
    flags: MsFlags,
    propagation: MsFlags,
    data: String,
}

/// The options mount(8) turns into mount(2) flags, as containerd's
/// `parseMountOptions`: each sets its flag, or (`true`) clears it.
const FLAG_OPTIONS: &[(&str, bool, MsFlags)] = &[
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

/// Propagation options: applied by a second mount(2) on the target.
const PROPAGATION_OPTIONS: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

impl Mount {
    /// The mount(2) calls this mount is, or None where mount(8) adds
    /// something of its own: a loop device (`loop`), options only it reads
    /// (`x-…`), a helper program for the type (`/sbin/mount.<type>`: fuse,
    /// nfs, …).
    fn syscall(&self, options: &[String]) -> Option<Syscall> {
        if self.r#type.starts_with("fuse") || helper_exists(&self.r#type) {
            return None;
        }
        let mut flags = MsFlags::empty();
        let mut propagation = MsFlags::empty();
        let mut data = Vec::new();
        for option in options {
            if option == "loop" || option.starts_with("x-") {
                return None;
            }
            if let Some((_, clear, flag)) = FLAG_OPTIONS.iter().find(|(name, ..)| name == option) {
                if *clear {
                    flags.remove(*flag);
                } else {
                    flags.insert(*flag);
                }
            } else if let Some((_, flag)) =
                PROPAGATION_OPTIONS.iter().find(|(name, _)| name == option)
            {
                propagation.insert(*flag);
            } else {
                data.push(option.as_str());
            }
        }
        if self.r#type == "bind" {
            flags.insert(MsFlags::MS_BIND);
        }
        Some(Syscall {
            flags,
            propagation,
            data: data.join(","),
        })
    }
}

/// Whether mount(8) would run a helper program for filesystem `fstype`.
fn helper_exists(fstype: &str) -> bool {
    !fstype.is_empty()
        && !fstype.contains('/')
        && ["/sbin", "/usr/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(format!("mount.{fstype}")).exists())
}

/// Performs one mount with mount(2), as containerd's Linux `Mount`: the
/// mount itself, then its propagation, then a read-only bind's remount
/// (a bind mount ignores `ro` until remounted).
fn mount_syscall(m: &Mount, call: &Syscall, at: &Path) -> Result<()> {
    let what = || {
        format!(
            "mount {} {} on {} (options {:?})",
            m.r#type,
            m.source,
            at.display(),
            m.options.join(",")
        )
    };
    let failed = |errno| -> Error {
        MountError::Syscall {
            what: what(),
            errno,
        }
        .into()
    };
    let flags = call.flags;
    let data = (!call.data.is_empty()).then_some(call.data.as_str());
    let is_bind = flags.contains(MsFlags::MS_BIND);
    // A remount without new data changes only the flags below.
    let mounted = !flags.contains(MsFlags::MS_REMOUNT) || data.is_some();
    if mounted {
        let fstype = (!is_bind).then_some(m.r#type.as_str());
        nix::mount::mount(Some(m.source.as_str()), at, fstype, flags, data).map_err(failed)?;
    }
    let finish = || -> nix::Result<()> {
        if !call.propagation.is_empty() {
            let pflags = call.propagation | (flags & MsFlags::MS_REC);
            nix::mount::mount(None::<&str>, at, None::<&str>, pflags, None::<&str>)?;
        }
        if is_bind && flags.contains(MsFlags::MS_RDONLY) {
            let remount = flags | MsFlags::MS_REMOUNT;
            nix::mount::mount(None::<&str>, at, None::<&str>, remount, None::<&str>)?;
        }
        Ok(())
    };
    if let Err(errno) = finish() {
        // Not left half done: a bind meant read-only must not stay
        // writable.
        if mounted {
            let _ = nix::mount::umount2(at, MntFlags::MNT_DETACH);
        }
        return Err(failed(errno));
    }
    Ok(())
}

/// Performs one mount with mount(8), from `dir` if given (a compacted
/// overlay's relative lower dirs).
fn mount_command(m: &Mount, dir: Option<String>, options: &[String], at: &Path) -> Result<()> {
    let mut cmd = Command::new("mount");
    // Bind mounts are a flag of mount(8), not a filesystem type.
    let fstype = if m.r#type == "bind" {
        "none"
    } else {
        &m.r#type
    };
    cmd.args(["-t", fstype]);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    if !options.is_empty() {
        cmd.args(["-o", &options.join(",")]);
    }
    // `--`: a source starting with `-` is not an option.
    cmd.arg("--").arg(&m.source).arg(at);
    run(&mut cmd, || {
        format!("mount {} {} on {}", m.r#type, m.source, at.display())
    })
}

/// Performs `mounts` in order on `target`, as containerd's `mount.All`:
/// with mount(2) (no process started), or with mount(8) where it adds
/// something (see [`Mount`]'s helpers: a loop device, a helper program) or
/// where long overlay options are compacted, which needs a working
/// directory of their own.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<MountGuard> {
    // Absolute: a compacted overlay mounts from another working directory.
    let target = target
        .canonicalize()
        .map_err(|e| Error::io(format!("mount target {}", target.display()), e))?;
    let mut guard = MountGuard {
        target: target.clone(),
        depth: 0,
    };
    for m in mounts {
        // A sub-target stays beneath the target: no absolute path, no `..`.
        let sub = Path::new(&m.target);
        if sub
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::invalid_argument(format!(
                "mount target {:?} must be a relative path without \"..\"",
                m.target
            )));
        }
        let at = target.join(sub);
        match idmap::Mapped::split(m)? {
            Some(mapped) => mapped.mount(&at)?,
            None => mount_one(m, &at)?,
        }
        guard.depth += 1;
    }
    Ok(guard)
}

/// Performs one mount at `at`: with mount(2), or mount(8) where it is
/// needed.
fn mount_one(m: &Mount, at: &Path) -> Result<()> {
    let (dir, options) = m.compacted();
    match (&dir, m.syscall(&options)) {
        (None, Some(call)) => mount_syscall(m, &call, at),
        _ => mount_command(m, dir, &options, at),
    }
}

/// Unmounts the top mount at `target` with umount2(2). A mount that is
/// busy for a moment (a process forked elsewhere briefly holding a
/// descriptor into it) is retried for up to a second, then detached
/// lazily, so it is gone from the tree either way.
pub fn unmount(target: &Path) -> Result<()> {
    let failed = |errno| -> Error {
        MountError::Syscall {
            what: format!("unmount {}", target.display()),
            errno,
        }
        .into()
    };
    for _ in 0..20 {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(failed(errno)),
        }
    }
    nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(failed)
}

/// Whether something is mounted at `target`.
pub fn is_mountpoint(target: &Path) -> Result<bool> {
    let target = target
        .canonicalize()
        .map_err(|e| Error::io(target.display(), e))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    // Field 5 is the mount point, with spaces and the like octal-escaped.
    let wanted = target.to_string_lossy().replace(' ', "\\040");
    Ok(mountinfo
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str())))
}

/// Detaches every mount strictly beneath `dir`, deepest first, so that
/// removing `dir` cannot reach into what they show (a volume, an image
/// layer) — whatever a process that died half-way left there.
pub fn unmount_beneath(dir: &Path) -> Result<()> {
    let dir = match dir.canonicalize() {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir.display(), e)),
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    let mut beneath: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point.starts_with(&dir) && point != &dir)
        .collect();
    beneath.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    // A point listed twice has mounts stacked on it: one detach each.
    for point in beneath {
        match nix::mount::umount2(&point, MntFlags::MNT_DETACH) {
            // Gone with a mount above it.
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(errno) => {
                return Err(MountError::Syscall {
                    what: format!("unmount {}", point.display()),
                    errno,
                }
                .into())
            }
        }
    }
    Ok(())
}

/// A mountinfo path field with its octal escapes (`\040` for a space)
/// turned back into bytes.
fn unescape_mountinfo(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt as _;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Unmounts everything stacked at `target`, as containerd's `UnmountAll`.
pub fn unmount_all(target: &Path) -> Result<()> {
    while is_mountpoint(target)? {
        unmount(target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(r#type: &str, options: &[&str]) -> Mount {
        Mount {
            r#type: r#type.into(),
            source: "src".into(),
            target: String::new(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    fn syscall(m: &Mount) -> Option<Syscall> {
        m.syscall(&m.options)
    }

    #[test]
    fn flag_options_become_flags_and_the_rest_data() {
        let m = mount(
            "overlay",
            &["index=off", "nosuid", "lowerdir=/a:/b", "ro", "rw", "nodev"],
        );
        assert_eq!(
            syscall(&m),
            Some(Syscall {
                // `rw` after `ro` clears it again.
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                propagation: MsFlags::empty(),
                data: "index=off,lowerdir=/a:/b".into(),
            })
        );
    }

    #[test]
    fn binds_and_propagation() {
        let rbind = syscall(&mount("bind", &["rbind", "ro", "rslave"])).unwrap();
        assert_eq!(
            rbind.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(rbind.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(rbind.data, "");
        // The type alone makes a bind.
        let plain = syscall(&mount("bind", &["rw"])).unwrap();
        assert_eq!(plain.flags, MsFlags::MS_BIND);
    }

    #[test]
    fn what_only_mount8_does_is_left_to_it() {
        assert_eq!(syscall(&mount("ext4", &["loop", "ro"])), None);
        assert_eq!(syscall(&mount("tmpfs", &["x-systemd.automount"])), None);
        assert_eq!(syscall(&mount("fuse.sshfs", &[])), None);
        assert!(syscall(&mount("tmpfs", &["size=1m"])).is_some());
    }
}
