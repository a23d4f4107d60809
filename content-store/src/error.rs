//! The local content store's errors, each with its containerd kind.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crated_core::digest::Digest;
use crated_core::error::{io_kind, KindError};
use crated_core::Kind;

/// What can go wrong in the local content store. Every variant names the
/// digest, ingest ref or path involved and keeps the underlying error as
/// its source; `?` turns it into a [`crated_core::Error`] of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"stat blob"`, `"rename into"`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A read of a committed blob failed.
    #[error("read content {digest} at {offset}: {source}")]
    Read {
        /// The blob.
        digest: Digest,
        /// Where the read was.
        offset: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No blob of this digest.
    #[error("content {digest} not found")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// The blob is already committed.
    #[error("content {digest} already exists")]
    AlreadyExists {
        /// The committed digest.
        digest: Digest,
    },
    /// An ingest ref was empty.
    #[error("ingest ref must not be empty")]
    EmptyRef,
    /// No ingest of this ref.
    #[error("ingest ref {ref:?} not found")]
    IngestNotFound {
        /// The ref asked for.
        r#ref: String,
    },
    /// Another writer holds the ref past the wait.
    #[error("ref {ref:?} is locked: a writer has held it for {:.3}s", held_for.as_secs_f64())]
    RefLocked {
        /// The locked ref.
        r#ref: String,
        /// How long the holder has had it.
        held_for: Duration,
    },
    /// The digest's algorithm is not the one the store hashes with.
    #[error(
        "unsupported digest algorithm {:?} in {digest}: the local content store writes {supported} only",
        digest.algorithm()
    )]
    UnsupportedAlgorithm {
        /// The digest named.
        digest: Digest,
        /// The algorithm the store writes.
        supported: &'static str,
    },
    /// A writer was asked to grow by truncation.
    #[error("cannot truncate ingest ref {ref:?} to {size} bytes: it holds {offset}")]
    TruncateBeyondEnd {
        /// The ingest.
        r#ref: String,
        /// The size asked for.
        size: u64,
        /// What the ingest holds.
        offset: u64,
    },
    /// After a truncation the data file was shorter than asked.
    #[error("truncate {}: {left} bytes left, expected {size}", path.display())]
    TruncatedShort {
        /// The ingest's data file.
        path: PathBuf,
        /// Bytes left in it.
        left: u64,
        /// The size asked for.
        size: u64,
    },
    /// A writer whose blocking operation was abandoned or panicked.
    #[error(
        "writer of ingest ref {ref:?} is unusable after an interrupted operation; open a new one to resume"
    )]
    WriterUnusable {
        /// The writer's ref.
        r#ref: String,
    },
    /// The ingest's data file no longer matches what this writer wrote.
    #[error(
        "ingest ref {ref:?} changed on disk: {on_disk} bytes, {written} written by this writer"
    )]
    IngestChanged {
        /// The ingest.
        r#ref: String,
        /// The data file's size.
        on_disk: u64,
        /// What the writer wrote.
        written: u64,
    },
    /// The commit's size is not what was written.
    #[error("unexpected commit size {written} of ingest ref {ref:?}, expected {expected}")]
    UnexpectedSize {
        /// The ingest.
        r#ref: String,
        /// What was written.
        written: u64,
        /// The size the commit named.
        expected: u64,
    },
    /// The commit's digest is not that of what was written.
    #[error("unexpected commit digest {digest} of ingest ref {ref:?}, expected {expected}")]
    UnexpectedDigest {
        /// The ingest.
        r#ref: String,
        /// The digest of what was written.
        digest: Digest,
        /// The digest the commit named.
        expected: Digest,
    },
    /// The ingest was removed while its commit ran.
    #[error("ingest ref {ref:?} was aborted while being committed")]
    AbortedDuringCommit {
        /// The ingest.
        r#ref: String,
        /// The failed rename.
        #[source]
        source: std::io::Error,
    },
    /// The blob was committed but its labels could not be written.
    #[error("content {digest} committed, but its labels were not set: {source}")]
    LabelsNotSet {
        /// The committed blob.
        digest: Digest,
        /// Why the labels were not set.
        #[source]
        source: Box<Error>,
    },
    /// A labels file is not the JSON object the store writes.
    #[error("labels of {digest} in {} are unreadable: {source}", path.display())]
    LabelsUnreadable {
        /// The blob.
        digest: Digest,
        /// The labels file.
        path: PathBuf,
        /// The parse (or read) error.
        #[source]
        source: serde_json::Error,
    },
    /// Labels could not be encoded.
    #[error("encode labels of {digest}: {source}")]
    LabelsUnencodable {
        /// The blob.
        digest: Digest,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A time could not be written as RFC 3339.
    #[error("format time {time:?}: {source}")]
    FormatTime {
        /// The time.
        time: SystemTime,
        /// The formatting error.
        #[source]
        source: time::error::Format,
    },
    /// Blocking file work of an ingest panicked or was cancelled.
    #[error("{op} ingest ref {ref:?} failed: {source}")]
    IngestTask {
        /// The operation (`"commit of"`, `"close of"`, …).
        op: &'static str,
        /// The ingest.
        r#ref: String,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Other blocking file work panicked or was cancelled.
    #[error("content store file operation failed: {source}")]
    Task {
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// An I/O error while doing `op` to `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Io { source, .. } | Error::Read { source, .. } => io_kind(source),
            Error::NotFound { .. }
            | Error::IngestNotFound { .. }
            | Error::AbortedDuringCommit { .. } => Kind::NotFound,
            Error::AlreadyExists { .. } => Kind::AlreadyExists,
            Error::EmptyRef
            | Error::UnsupportedAlgorithm { .. }
            | Error::TruncateBeyondEnd { .. } => Kind::InvalidArgument,
            Error::RefLocked { .. } => Kind::Unavailable,
            Error::WriterUnusable { .. }
            | Error::IngestChanged { .. }
            | Error::UnexpectedSize { .. }
            | Error::UnexpectedDigest { .. } => Kind::FailedPrecondition,
            Error::LabelsNotSet { source, .. } => source.kind(),
            // A labels file that cannot be read is an I/O error; one that
            // does not parse is corrupt.
            Error::LabelsUnreadable { source, .. } => source
                .io_error_kind()
                .map_or(Kind::Unknown, |k| io_kind(&k.into())),
            Error::TruncatedShort { .. }
            | Error::LabelsUnencodable { .. }
            | Error::FormatTime { .. }
            | Error::IngestTask { .. }
            | Error::Task { .. } => Kind::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_sources_survive_conversion() {
        let err = Error::io(
            "stat blob",
            "/x",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        let core: crated_core::Error = err.into();
        assert_eq!(core.kind(), Kind::FailedPrecondition);
        assert!(core.message().starts_with("stat blob /x: "), "{core}");
        let source = std::error::Error::source(&core).and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(
            source,
            Some(Error::Io {
                op: "stat blob",
                ..
            })
        ));
    }
}
