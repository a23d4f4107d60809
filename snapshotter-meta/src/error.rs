//! The errors of the snapshot record store and the directory engine, each
//! with its containerd kind.

use std::path::PathBuf;

use crated_core::error::{io_kind, KindError};
use crated_core::Kind;

/// What can go wrong in the snapshot records or the directory engine.
/// Every variant names the snapshot key, name or path involved and keeps
/// the underlying error as its source; `?` turns it into a
/// [`crated_core::Error`] of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on a snapshot directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"rename"`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The record database could not be opened.
    #[error("snapshot metadata: open {}: {source}", path.display())]
    Open {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// Another process holds the record database.
    #[error("snapshot metadata {} is in use by another process", path.display())]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// An earlier handle of this process still holds the database's files
    /// (writes still in flight on sled's IO threads let go a moment after
    /// the drop).
    #[error("snapshot metadata {} is still open in this process: {source}", path.display())]
    StillOpen {
        /// The database directory.
        path: PathBuf,
        /// sled's refusal.
        #[source]
        source: sled::Error,
    },
    /// The database's lock file could not be locked.
    #[error("snapshot metadata: lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The flock error.
        #[source]
        source: nix::errno::Errno,
    },
    /// A read, scan or write of the record database failed.
    #[error("snapshot metadata: {op}: {source}")]
    Storage {
        /// What was being done (`"read"`, `"scan"`, `"write"`, `"flush"`).
        op: &'static str,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// A snapshot record does not parse.
    #[error("snapshot metadata: decode snapshot {name:?}: {source}")]
    Decode {
        /// The snapshot.
        name: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A snapshot record could not be encoded.
    #[error("snapshot metadata: encode snapshot {name:?}: {source}")]
    Encode {
        /// The snapshot.
        name: String,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A record names a parent that has no record.
    #[error("snapshot metadata: parent chain: missing parent {parent:?}")]
    MissingParent {
        /// The missing parent.
        parent: String,
    },
    /// The id counter is not the 8 bytes it is written as.
    #[error("snapshot metadata: next id: {len} bytes, not 8")]
    BadNextId {
        /// Its length.
        len: usize,
    },
    /// No snapshot of this key.
    #[error("snapshot {key:?} does not exist")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// No active snapshot of this key to commit.
    #[error("active snapshot {key:?} does not exist")]
    ActiveNotFound {
        /// The key asked for.
        key: String,
    },
    /// The parent named does not exist.
    #[error("parent snapshot {parent:?} does not exist")]
    ParentNotFound {
        /// The parent named.
        parent: String,
    },
    /// The parent named is not committed.
    #[error("parent {parent:?} of snapshot {key:?} is not a committed snapshot")]
    ParentNotCommitted {
        /// The parent named.
        parent: String,
        /// The snapshot being created.
        key: String,
    },
    /// A snapshot of this key exists.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A commit's name is taken.
    #[error("committed snapshot {name:?} already exists")]
    CommittedExists {
        /// The name.
        name: String,
    },
    /// A snapshot key was empty.
    #[error("snapshot key must not be empty")]
    EmptyKey,
    /// A commit's name was empty.
    #[error("snapshot name must not be empty")]
    EmptyName,
    /// Committed snapshots are made by commit only.
    #[error("snapshot {key:?}: only active snapshots and views can be created")]
    CreateCommitted {
        /// The key.
        key: String,
    },
    /// Mounts were asked of a committed snapshot.
    #[error("snapshot {key:?} is committed: only active snapshots and views have mounts")]
    NotMountable {
        /// The key.
        key: String,
    },
    /// A commit of a snapshot that is not active.
    #[error("snapshot {key:?} is not active: only active snapshots can be committed")]
    NotActive {
        /// The key.
        key: String,
    },
    /// A removal of a snapshot other snapshots are based on.
    #[error("cannot remove snapshot {key:?}: it has children")]
    HasChildren {
        /// The key.
        key: String,
    },
    /// A snapshotter operation's blocking task panicked or was cancelled.
    #[error("snapshotter operation failed: {source}")]
    Task {
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The blocking task opening a snapshotter panicked or was cancelled.
    #[error("open snapshotter {id}: {source}")]
    OpenTask {
        /// The plugin id.
        id: &'static str,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// An I/O error while doing `op` to `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The kind of a sled error: its I/O errors by [`io_kind`], the rest
/// (corruption, bugs) Unknown.
fn sled_kind(err: &sled::Error) -> Kind {
    match err {
        sled::Error::Io(io) => io_kind(io),
        _ => Kind::Unknown,
    }
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Io { source, .. } => io_kind(source),
            Error::Open { source, .. } | Error::Storage { source, .. } => sled_kind(source),
            Error::Lock { source, .. } => io_kind(&std::io::Error::from(*source)),
            Error::InUse { .. } | Error::StillOpen { .. } => Kind::Unavailable,
            Error::NotFound { .. }
            | Error::ActiveNotFound { .. }
            | Error::ParentNotFound { .. } => Kind::NotFound,
            Error::AlreadyExists { .. } | Error::CommittedExists { .. } => Kind::AlreadyExists,
            Error::ParentNotCommitted { .. }
            | Error::EmptyKey
            | Error::EmptyName
            | Error::CreateCommitted { .. } => Kind::InvalidArgument,
            Error::NotMountable { .. } | Error::NotActive { .. } | Error::HasChildren { .. } => {
                Kind::FailedPrecondition
            }
            Error::Decode { .. }
            | Error::Encode { .. }
            | Error::MissingParent { .. }
            | Error::BadNextId { .. }
            | Error::Task { .. }
            | Error::OpenTask { .. } => Kind::Unknown,
        }
    }
}
