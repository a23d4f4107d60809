//! The metadata database's errors, each with its containerd kind.

use std::fmt;
use std::path::PathBuf;

use crated_core::digest::Digest;
use crated_core::error::{io_kind, KindError};
use crated_core::Kind;

/// A snapshot as a namespace names it: its key, in one snapshotter, in one
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId {
    /// The namespace.
    pub namespace: String,
    /// The snapshotter's name.
    pub snapshotter: String,
    /// The snapshot's key (or name, once committed).
    pub key: String,
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snapshot {:?} of snapshotter {:?} in namespace {:?}",
            self.key, self.snapshotter, self.namespace
        )
    }
}

/// What can go wrong in the metadata database and the namespaced content
/// and snapshot views over it. Every variant names the namespace, id, key,
/// digest or path involved and keeps the underlying error as its source;
/// `?` turns it into a [`crated_core::Error`] of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The database itself.
    /// A file operation on the database directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create metadata directory"`, `"open"`).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the database.
    #[error("metadata database {} is in use by another process", path.display())]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// An earlier handle of this process still holds sled's files (writes
    /// still in flight on sled's IO threads let go a moment after the drop).
    #[error("metadata database {} is still open in this process: {source}", path.display())]
    StillOpen {
        /// The database directory.
        path: PathBuf,
        /// sled's refusal.
        #[source]
        source: sled::Error,
    },
    /// The database's lock file could not be locked.
    #[error("lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The flock error.
        #[source]
        source: nix::errno::Errno,
    },
    /// sled could not open the database.
    #[error("open metadata database {}: {}", path.display(), describe(source))]
    Open {
        /// The database directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// A read, write or flush of the database failed.
    #[error("{}", describe(.0))]
    Storage(#[source] sled::Error),
    /// A record does not parse.
    #[error("metadata record of {what} is unreadable: {source}")]
    Decode {
        /// The object the record is of (`image "x"`, `content sha256:…`).
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("encode metadata record of {what}: {source}")]
    Encode {
        /// The object the record is of.
        what: String,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The schema version key does not hold a number.
    #[error("metadata schema version {raw:?} is not a number")]
    SchemaUnreadable {
        /// What it holds.
        raw: String,
    },
    /// The database was written by a newer crated.
    #[error(
        "metadata schema version {version} is newer than {newest}, the newest this crated understands"
    )]
    SchemaTooNew {
        /// The database's version.
        version: u32,
        /// This build's version.
        newest: u32,
    },
    /// No migration leads on from the database's version.
    #[error("no migration from metadata schema version {from}")]
    NoMigration {
        /// The database's version.
        from: u32,
    },
    /// The blocking task opening the database panicked or was cancelled.
    #[error("open metadata database: {source}")]
    OpenTask {
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The plugin's `content_sharing_policy` is neither value it takes.
    #[error("content_sharing_policy {value:?} is not supported: use \"shared\" or \"isolated\"")]
    SharingPolicy {
        /// The configured value.
        value: String,
    },
    /// The plugin's `cache_capacity` is too small to be a cache.
    #[error(
        "cache_capacity {value} is below the minimum of {minimum} bytes (the default is {default})"
    )]
    CacheCapacity {
        /// The configured value.
        value: u64,
        /// The least accepted.
        minimum: u64,
        /// What the daemon uses when the key is absent.
        default: u64,
    },

    // Namespaces.
    /// The namespace exists.
    #[error("namespace {namespace:?} already exists")]
    NamespaceExists {
        /// The namespace.
        namespace: String,
    },
    /// No such namespace.
    #[error("namespace {namespace:?} not found")]
    NamespaceNotFound {
        /// The namespace.
        namespace: String,
    },
    /// A delete of a namespace that still holds objects.
    #[error("namespace {namespace:?} must be empty, but it still has {}", held.join(", "))]
    NamespaceNotEmpty {
        /// The namespace.
        namespace: String,
        /// The kinds of object it holds (containerd's words: `images`, …).
        held: Vec<&'static str>,
    },
    /// An update of a namespace field that cannot be updated.
    #[error("cannot update {path:?} field on namespace {namespace:?}")]
    NamespaceField {
        /// The namespace.
        namespace: String,
        /// The field path.
        path: String,
    },

    // Images.
    /// No such image.
    #[error("image {name:?} not found in namespace {namespace:?}")]
    ImageNotFound {
        /// The namespace.
        namespace: String,
        /// The image name.
        name: String,
    },
    /// The image exists.
    #[error("image {name:?} already exists")]
    ImageExists {
        /// The image name.
        name: String,
    },
    /// An image name was empty.
    #[error("image name must not be empty")]
    ImageNameEmpty,
    /// An image name holds the key separator.
    #[error("image name {name:?} must not contain NUL")]
    ImageNameNul {
        /// The image name.
        name: String,
    },
    /// An update of an image field that cannot be updated.
    #[error("cannot update {path:?} field on image {name:?}")]
    ImageField {
        /// The image name.
        name: String,
        /// The field path.
        path: String,
    },

    // Containers.
    /// No such container.
    #[error("container {id:?} not found in namespace {namespace:?}")]
    ContainerNotFound {
        /// The namespace.
        namespace: String,
        /// The container id.
        id: String,
    },
    /// The container exists.
    #[error("container {id:?} already exists")]
    ContainerExists {
        /// The container id.
        id: String,
    },
    /// An extension with an empty key (containerd's message).
    #[error("container.Extension keys must not be zero-length")]
    ExtensionKeyEmpty {
        /// The container id.
        id: String,
    },
    /// A container without a runtime.
    #[error("container.Runtime.Name must be set for container {id:?}")]
    RuntimeNameMissing {
        /// The container id.
        id: String,
    },
    /// A container without a spec.
    #[error("container.Spec must be set for container {id:?}")]
    SpecMissing {
        /// The container id.
        id: String,
    },
    /// A snapshot key without its snapshotter.
    #[error(
        "container.Snapshotter must be set if container.SnapshotKey is set (container {id:?})"
    )]
    SnapshotterMissing {
        /// The container id.
        id: String,
    },
    /// A full replace that changes an immutable field.
    #[error("{field} field is immutable (container {id:?})")]
    Immutable {
        /// The field (`container.Runtime.Name`, `container.Snapshotter`).
        field: &'static str,
        /// The container id.
        id: String,
    },
    /// An update of a container field that cannot be updated.
    #[error("cannot update {path:?} field on {id:?}")]
    ContainerField {
        /// The container id.
        id: String,
        /// The field path.
        path: String,
    },

    // Leases.
    /// No such lease.
    #[error("lease {id:?} not found in namespace {namespace:?}")]
    LeaseNotFound {
        /// The namespace.
        namespace: String,
        /// The lease id.
        id: String,
    },
    /// The lease exists.
    #[error("lease {id:?} already exists")]
    LeaseExists {
        /// The lease id.
        id: String,
    },

    // Content.
    /// The namespace has no record of the blob.
    #[error("content {digest} not found in namespace {namespace:?}")]
    ContentNotFound {
        /// The namespace.
        namespace: String,
        /// The blob.
        digest: Digest,
    },
    /// The namespace has the blob.
    #[error("content {digest} already exists")]
    ContentExists {
        /// The blob.
        digest: Digest,
    },
    /// An update of a content field that cannot be updated.
    #[error("cannot update {path:?} field on content info {digest}")]
    ContentField {
        /// The blob.
        digest: Digest,
        /// The field path.
        path: String,
    },
    /// An ingest ref was empty.
    #[error("ingest ref must not be empty")]
    EmptyRef,
    /// The namespace has no ingest of this ref.
    #[error("ingest {ref:?} not found in namespace {namespace:?}")]
    IngestNotFound {
        /// The namespace.
        namespace: String,
        /// The ref as the namespace names it.
        r#ref: String,
        /// The content store's error, naming its own ref.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// Another writer holds the ref.
    #[error("ref {ref:?} is locked: another writer is active")]
    RefLocked {
        /// The ref as the namespace names it.
        r#ref: String,
        /// The content store's error, naming its own ref.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A writer standing for a shared blob was asked to grow by truncation.
    #[error(
        "cannot truncate ingest {ref:?} to {size} bytes: its shared content {digest} has {shared_size}"
    )]
    TruncateShared {
        /// The ingest.
        r#ref: String,
        /// The size asked for.
        size: u64,
        /// The shared blob.
        digest: Digest,
        /// Its size.
        shared_size: u64,
    },
    /// A shared blob ended early while an ingest copied it.
    #[error("content {digest} ended at {at} of its {size} bytes while ingest {ref:?} copied it")]
    SharedContentShort {
        /// The shared blob.
        digest: Digest,
        /// Where it ended.
        at: u64,
        /// Its size.
        size: u64,
        /// The ingest.
        r#ref: String,
    },
    /// A writer still stands for a shared blob after its copy (a bug).
    #[error("ingest {ref:?} is still shared after its copy")]
    StillShared {
        /// The ingest.
        r#ref: String,
    },
    /// The commit's size is not the shared blob's.
    #[error("unexpected commit size {written} of ingest ref {ref:?}, expected {expected}")]
    UnexpectedSize {
        /// The ingest.
        r#ref: String,
        /// The shared blob's size.
        written: u64,
        /// The size the commit named.
        expected: u64,
    },
    /// The commit's digest is not the shared blob's.
    #[error("unexpected commit digest {digest} of ingest ref {ref:?}, expected {expected}")]
    UnexpectedDigest {
        /// The ingest.
        r#ref: String,
        /// The shared blob.
        digest: Digest,
        /// The digest the commit named.
        expected: Digest,
    },
    /// The shared blob was deleted everywhere before its commit here.
    #[error(
        "content {digest} was removed before ingest {ref:?} committed it in namespace {namespace:?}"
    )]
    SharedContentRemoved {
        /// The namespace.
        namespace: String,
        /// The ingest.
        r#ref: String,
        /// The blob.
        digest: Digest,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },

    // Snapshots.
    /// No snapshotter of this name is loaded.
    #[error("snapshotter not loaded: {name}")]
    SnapshotterNotLoaded {
        /// The snapshotter's name.
        name: String,
    },
    /// No such snapshot.
    #[error("{snapshot} does not exist")]
    SnapshotNotFound {
        /// The snapshot.
        snapshot: SnapshotId,
    },
    /// The parent named does not exist.
    #[error("parent {parent} does not exist")]
    ParentNotFound {
        /// The parent.
        parent: SnapshotId,
    },
    /// The parent named is not committed.
    #[error("parent {parent} is not committed")]
    ParentNotCommitted {
        /// The parent.
        parent: SnapshotId,
    },
    /// The snapshot exists.
    #[error("{snapshot} already exists")]
    SnapshotExists {
        /// The snapshot.
        snapshot: SnapshotId,
    },
    /// The snapshot a prepare's target label names exists (an unpack
    /// already made it).
    #[error("target {target} already exists")]
    TargetExists {
        /// The target snapshot.
        target: SnapshotId,
    },
    /// A snapshot key was empty.
    #[error("snapshot key must not be empty")]
    SnapshotKeyEmpty,
    /// A commit's name was empty.
    #[error("snapshot name must not be empty")]
    SnapshotNameEmpty,
    /// Mounts were asked of a committed snapshot.
    #[error("{snapshot} is committed: only active snapshots and views have mounts")]
    SnapshotNotMountable {
        /// The snapshot.
        snapshot: SnapshotId,
    },
    /// A commit of a snapshot that is not active.
    #[error("{snapshot} is not active: only active snapshots can be committed")]
    SnapshotNotActive {
        /// The snapshot.
        snapshot: SnapshotId,
    },
    /// A removal of a snapshot others are based on.
    #[error("cannot remove {snapshot}: it has children")]
    SnapshotHasChildren {
        /// The snapshot.
        snapshot: SnapshotId,
    },
}

/// A sled error as people read it: its I/O error, or corruption with where.
fn describe(err: &sled::Error) -> String {
    match err {
        sled::Error::Io(io) => format!("metadata database i/o: {io}"),
        sled::Error::Corruption { at, .. } => format!(
            "metadata database is corrupt{}",
            at.map(|p| format!(" at {p:?}")).unwrap_or_default()
        ),
        other => format!("metadata database: {other}"),
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
        use Error as E;
        match self {
            E::Io { source, .. } => io_kind(source),
            E::Lock { source, .. } => io_kind(&std::io::Error::from(*source)),
            E::Open { source, .. } | E::Storage(source) => sled_kind(source),
            E::InUse { .. } | E::StillOpen { .. } | E::RefLocked { .. } => Kind::Unavailable,
            E::NamespaceNotFound { .. }
            | E::ImageNotFound { .. }
            | E::ContainerNotFound { .. }
            | E::LeaseNotFound { .. }
            | E::ContentNotFound { .. }
            | E::IngestNotFound { .. }
            | E::SharedContentRemoved { .. }
            | E::SnapshotNotFound { .. }
            | E::ParentNotFound { .. } => Kind::NotFound,
            E::NamespaceExists { .. }
            | E::ImageExists { .. }
            | E::ContainerExists { .. }
            | E::LeaseExists { .. }
            | E::ContentExists { .. }
            | E::SnapshotExists { .. }
            | E::TargetExists { .. } => Kind::AlreadyExists,
            E::SharingPolicy { .. }
            | E::CacheCapacity { .. }
            | E::NamespaceField { .. }
            | E::ImageNameEmpty
            | E::ImageNameNul { .. }
            | E::ImageField { .. }
            | E::ExtensionKeyEmpty { .. }
            | E::RuntimeNameMissing { .. }
            | E::SpecMissing { .. }
            | E::SnapshotterMissing { .. }
            | E::Immutable { .. }
            | E::ContainerField { .. }
            | E::ContentField { .. }
            | E::EmptyRef
            | E::TruncateShared { .. }
            | E::SnapshotterNotLoaded { .. }
            | E::ParentNotCommitted { .. }
            | E::SnapshotKeyEmpty
            | E::SnapshotNameEmpty => Kind::InvalidArgument,
            E::SchemaUnreadable { .. }
            | E::SchemaTooNew { .. }
            | E::NoMigration { .. }
            | E::NamespaceNotEmpty { .. }
            | E::SharedContentShort { .. }
            | E::UnexpectedSize { .. }
            | E::UnexpectedDigest { .. }
            | E::SnapshotNotMountable { .. }
            | E::SnapshotNotActive { .. }
            | E::SnapshotHasChildren { .. } => Kind::FailedPrecondition,
            E::Decode { .. } | E::Encode { .. } | E::OpenTask { .. } | E::StillShared { .. } => {
                Kind::Unknown
            }
        }
    }
}
