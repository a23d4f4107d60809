//! The btrfs snapshotter's errors, each with its containerd kind.

use std::path::PathBuf;

use crated_core::error::{io_kind, KindError};
use crated_core::Kind;
use nix::errno::Errno;

/// What can go wrong opening the btrfs snapshotter or making, freezing and
/// removing its subvolumes. Every variant names the path involved and
/// keeps the underlying error; `?` turns it into a [`crated_core::Error`]
/// of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"btrfs open"`, `"remove"`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The filesystem of the root could not be asked for.
    #[error("statfs {}: {source}", path.display())]
    Statfs {
        /// The snapshotter's root.
        path: PathBuf,
        /// The error of statfs(2).
        #[source]
        source: Errno,
    },
    /// The root is not on btrfs (containerd's message): the plugin does
    /// not apply here.
    #[error(
        "path {} must be a btrfs filesystem to be used with the btrfs snapshotter",
        path.display()
    )]
    NotBtrfs {
        /// The snapshotter's root.
        path: PathBuf,
    },
    /// No btrfs mount in this mount namespace holds the root.
    #[error("no btrfs mount holds {}", path.display())]
    NoBtrfsMount {
        /// The snapshotter's root, resolved.
        path: PathBuf,
    },
    /// A btrfs ioctl on a subvolume failed.
    #[error("btrfs {op} {}: {source}", path.display())]
    Ioctl {
        /// The operation (`"create subvolume"`, `"set the flags of"`, …).
        op: &'static str,
        /// The subvolume.
        path: PathBuf,
        /// The ioctl's error.
        #[source]
        source: Errno,
    },
    /// A btrfs snapshot of a subvolume failed.
    #[error("btrfs snapshot {} as {}: {source}", from.display(), path.display())]
    Snapshot {
        /// The subvolume snapshotted.
        from: PathBuf,
        /// The new subvolume.
        path: PathBuf,
        /// The ioctl's error.
        #[source]
        source: Errno,
    },
    /// A subvolume path without a parent directory.
    #[error("btrfs subvolume path {} has no parent directory", path.display())]
    NoParent {
        /// The path.
        path: PathBuf,
    },
    /// A subvolume name longer than btrfs allows.
    #[error("btrfs subvolume name of {} is longer than {max} bytes", path.display())]
    NameTooLong {
        /// The path.
        path: PathBuf,
        /// The longest name btrfs takes here.
        max: usize,
    },
    /// The snapshot records or directories failed.
    #[error(transparent)]
    Meta(#[from] crated_snapshotter_meta::Error),
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Io { source, .. } => io_kind(source),
            Error::Statfs { source, .. }
            | Error::Ioctl { source, .. }
            | Error::Snapshot { source, .. } => io_kind(&std::io::Error::from(*source)),
            Error::NotBtrfs { .. } | Error::NoBtrfsMount { .. } => Kind::FailedPrecondition,
            Error::NoParent { .. } | Error::NameTooLong { .. } => Kind::InvalidArgument,
            Error::Meta(err) => err.kind(),
        }
    }
}

impl crated_snapshotter_meta::plugin::OpenError for Error {
    fn not_applicable(&self) -> bool {
        matches!(self, Error::NotBtrfs { .. } | Error::NoBtrfsMount { .. })
    }
}
