//! The native snapshotter's errors, each with its containerd kind.

use std::path::PathBuf;
use std::process::ExitStatus;

use crated_core::error::{io_kind, KindError};
use crated_core::Kind;

/// What can go wrong making a native snapshot's files; `?` turns it into a
/// [`crated_core::Error`] of its kind. Opening the snapshotter fails with
/// [`crated_snapshotter_meta::Error`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on a snapshot directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"chmod"`).
        op: &'static str,
        /// The directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `cp` could not be started.
    #[error("run cp to copy {}: {source}", from.display())]
    SpawnCopy {
        /// The tree to copy.
        from: PathBuf,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// `cp` failed to copy the parent's tree.
    #[error("copy {} to {}: {stderr}", from.display(), to.display())]
    Copy {
        /// The parent's tree.
        from: PathBuf,
        /// The new snapshot's directory.
        to: PathBuf,
        /// How `cp` exited.
        status: ExitStatus,
        /// What `cp` said.
        stderr: String,
    },
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Io { source, .. } | Error::SpawnCopy { source, .. } => io_kind(source),
            Error::Copy { .. } => Kind::Unknown,
        }
    }
}
