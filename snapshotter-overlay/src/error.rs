//! The overlayfs snapshotter's errors, each with its containerd kind.

use std::path::PathBuf;

use crated_core::error::{io_kind, KindError};
use crated_core::Kind;

/// What can go wrong making an overlay snapshot's directories; `?` turns it
/// into a [`crated_core::Error`] of its kind. Opening the snapshotter fails
/// with [`crated_snapshotter_meta::Error`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on a snapshot directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"chmod"`, `"chown"`, `"stat"`).
        op: &'static str,
        /// The directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Io { source, .. } => io_kind(source),
        }
    }
}
