//! Mounts as snapshotters return them and runtimes perform them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// One mount, as containerd's `mount.Mount`: performed as
/// `mount -t <type> -o <options> <source> <target>`.
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

/// mount(8) or umount(8) failing.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The command exited unsuccessfully; `stderr` is what it said.
    #[error("{what}: {stderr}")]
    Failed {
        /// What was being mounted or unmounted where.
        what: String,
        /// How the command exited.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
    },
}

impl crate::error::KindError for MountError {
    fn kind(&self) -> crate::Kind {
        // mount(8) reports every failure by exit status 32 with a message
        // for people: nothing finer to tell apart.
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

/// Performs `mounts` in order on `target` with mount(8), as containerd's
/// `mount.All`: bind mounts by flag, long overlay options compacted.
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
        let mut cmd = Command::new("mount");
        // Bind mounts are a flag of mount(8), not a filesystem type.
        let fstype = if m.r#type == "bind" {
            "none"
        } else {
            &m.r#type
        };
        cmd.args(["-t", fstype]);
        let (dir, options) = m.compacted();
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        if !options.is_empty() {
            cmd.args(["-o", &options.join(",")]);
        }
        // `--`: a source starting with `-` is not an option.
        cmd.arg("--").arg(&m.source).arg(&at);
        run(&mut cmd, || {
            format!("mount {} {} on {}", m.r#type, m.source, at.display())
        })?;
        guard.depth += 1;
    }
    Ok(guard)
}

/// Unmounts the top mount at `target` with umount(8). A mount that is busy
/// for a moment (a process forked elsewhere briefly holding a descriptor
/// into it) is retried for up to a second, then detached lazily, so it is
/// gone from the tree either way.
pub fn unmount(target: &Path) -> Result<()> {
    let what = || format!("unmount {}", target.display());
    let mut last = None;
    for _ in 0..20 {
        match run(Command::new("umount").arg(target), what) {
            Ok(()) => return Ok(()),
            Err(err) => last = Some(err),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if run(Command::new("umount").arg("--lazy").arg(target), what).is_ok() {
        return Ok(());
    }
    Err(last.unwrap_or_else(|| {
        MountError::Failed {
            what: what(),
            status: std::process::ExitStatus::default(),
            stderr: String::new(),
        }
        .into()
    }))
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

/// Unmounts everything stacked at `target`, as containerd's `UnmountAll`.
pub fn unmount_all(target: &Path) -> Result<()> {
    while is_mountpoint(target)? {
        unmount(target)?;
    }
    Ok(())
}
