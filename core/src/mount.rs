//! Mounts as snapshotters return them and runtimes perform them.

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
}
