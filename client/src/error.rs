//! The client's errors, each with its containerd kind.
//!
//! The client drives the daemon's services; what they answer keeps its kind.
//! Where the client says more about a service's error (which image, which
//! container, which layer of a pull), the variant keeps that error as its
//! source and takes its kind. What the client finds wrong itself maps as
//! containerd's client does: an image, archive, checkpoint or spec that is
//! not what it must be is InvalidArgument, a container or task in the wrong
//! state FailedPrecondition, something looked up and missing NotFound. A
//! failed file operation or system call takes its kind through core's one
//! I/O mapping ([`io_kind`]).

use std::io;
use std::num::ParseIntError;
use std::path::PathBuf;
use std::time::Duration;

use crated_core::digest::Digest;
use crated_core::error::{io_kind, KindError};
use crated_core::Kind;
use nix::errno::Errno;

/// What can go wrong driving crated (or containerd) through the client.
/// Every variant names the image, reference, container, digest, archive
/// entry, snapshot or path involved and keeps the underlying error as its
/// source; `?` turns it into a [`crated_core::Error`] of its kind, which a
/// caller may downcast back to this type.
///
/// ```
/// use crated_client::Error;
/// use crated_core::Kind;
///
/// let err: crated_core::Error = Error::ContainerHasTask { id: "web".into() }.into();
/// assert_eq!(err.kind(), Kind::FailedPrecondition);
/// assert_eq!(err.to_string(), "cannot delete container \"web\": it has a task");
/// let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<Error>());
/// assert!(matches!(source, Some(Error::ContainerHasTask { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on this host (a fifo directory, a scratch
    /// directory, the root of an image's files).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"open root"`).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Blocking work of the client panicked or was cancelled.
    #[error("{what}: {source}")]
    Blocking {
        /// What the work was (`"export"`, `"install <image>"`, …).
        what: String,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A document the client writes could not be encoded.
    #[error("encode {what}: {source}")]
    Encode {
        /// The document (`"manifest.json"`, `"docker manifest"`).
        what: &'static str,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },

    /// The daemon's socket did not answer within the connect timeout.
    #[error("failed to dial {address:?}: connect timeout of {timeout:?} expired")]
    DialTimeout {
        /// The socket's path.
        address: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The daemon's socket could not be reached.
    #[error("failed to dial {address:?}: {source}")]
    Dial {
        /// The socket's path.
        address: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },

    /// The images service failed on an image record.
    #[error("image {name:?}: {source}")]
    Image {
        /// The image's name.
        name: String,
        /// The service's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// An image whose config names no layers, looked up by name.
    #[error("image {name:?} has no layers")]
    ImageHasNoLayers {
        /// The image's name.
        name: String,
    },
    /// An image whose config names no layers, unpacked by its target.
    #[error("image {digest} has no layers")]
    TargetHasNoLayers {
        /// The image's target.
        digest: Digest,
    },
    /// The containers service failed on a container record.
    #[error("container {id:?}: {source}")]
    Container {
        /// The container's id.
        id: String,
        /// The service's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A container record without a spec.
    #[error("container {id:?} has no spec")]
    ContainerHasNoSpec {
        /// The container's id.
        id: String,
    },
    /// A container to delete still has a task.
    #[error("cannot delete container {id:?}: it has a task")]
    ContainerHasTask {
        /// The container's id.
        id: String,
    },
    /// A container's snapshot to remove, with no snapshotter recorded.
    #[error("container {id:?}: container.Snapshotter must be set to cleanup rootfs snapshot")]
    NoSnapshotter {
        /// The container's id.
        id: String,
    },
    /// The tasks service returned no metrics of the task.
    #[error("no metrics for task {id:?}")]
    NoMetrics {
        /// The task's id.
        id: String,
    },

    /// A fifo of a process's stdio could not be made.
    #[error("mkfifo {}: {source}", path.display())]
    Mkfifo {
        /// The fifo.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },

    /// A part of a spec could not be built.
    #[error("build {part} of spec: {source}")]
    BuildSpec {
        /// The part (`"rlimit"`, `"linux section"`).
        part: &'static str,
        /// The builder's error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A spec (or an exec process's) could not be encoded as JSON.
    #[error("encode {what}: {source}")]
    EncodeSpec {
        /// `"spec"` or `"process spec"`.
        what: &'static str,
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A container record's spec of another type.
    #[error("spec has type {type_url:?}, not {}", crate::spec::SPEC_TYPE_URL)]
    SpecType {
        /// The type URL it has.
        type_url: String,
    },
    /// A container record's spec that is not a spec's JSON.
    #[error("decode spec: {source}")]
    DecodeSpec {
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// An image config document that does not parse.
    #[error("image config is not valid: {source}")]
    ImageConfig {
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A file of an image's root filesystem could not be opened.
    #[error("open {path} in the image: {source}")]
    OpenImageFile {
        /// The file, as the image sees it.
        path: String,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A file of an image's root filesystem could not be read.
    #[error("{op} {path} in the image: {source}")]
    ImageFile {
        /// What was being done (`"stat"`, `"read"`).
        op: &'static str,
        /// The file, as the image sees it.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file of an image read as a user database is not a regular file.
    #[error("{path} in the image is not a regular file")]
    NotRegularFile {
        /// The file, as the image sees it.
        path: String,
    },
    /// A file of an image read as a user database is too large to be one.
    #[error("{path} in the image is larger than {limit} bytes")]
    ImageFileTooLarge {
        /// The file, as the image sees it.
        path: String,
        /// The most that is read.
        limit: u64,
    },
    /// A user or group name, with no root filesystem to look it up in.
    #[error("user {user:?} names a user or group: the root filesystem is needed to look it up")]
    UserNeedsRootfs {
        /// The user as given.
        user: String,
    },
    /// A user name not in the image's `/etc/passwd`.
    #[error("no users found for {name:?} in the image's /etc/passwd")]
    UserNotFound {
        /// The user name.
        name: String,
    },
    /// A user's line of `/etc/passwd` whose uid is not a number.
    #[error("bad uid for {name:?} in /etc/passwd: {source}")]
    BadUid {
        /// The user name.
        name: String,
        /// The parse error.
        #[source]
        source: ParseIntError,
    },
    /// A group name not in the image's `/etc/group`.
    #[error("no groups found for {group:?} in the image's /etc/group")]
    GroupNotFound {
        /// The group name.
        group: String,
    },

    /// A descriptor whose size does not fit a walked node's.
    #[error("{reference}: size {size} of {digest} is out of range")]
    SizeOutOfRange {
        /// The reference pulled or pushed.
        reference: String,
        /// The descriptor's digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A walked node with a negative size.
    #[error("{digest} has a negative size")]
    NegativeSize {
        /// The node's digest.
        digest: Digest,
        /// Its size.
        size: i64,
    },
    /// A pull met a blob that is neither a manifest nor an index where one
    /// must be.
    #[error("{reference}: cannot pull {digest} of media type {media_type:?}")]
    UnpullableMediaType {
        /// The reference pulled.
        reference: String,
        /// The blob.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// Indexes nested deeper than a pull follows.
    #[error(
        "{reference}: index {digest} is nested more than {limit} indexes deep; refusing to follow"
    )]
    IndexTooDeep {
        /// The reference pulled.
        reference: String,
        /// The index past the limit.
        digest: Digest,
        /// The limit.
        limit: usize,
    },
    /// An index with no manifest for the platforms pulled.
    #[error("{reference}: no match for platform in manifest {digest}: not found")]
    NoPlatformMatch {
        /// The reference pulled.
        reference: String,
        /// The index.
        digest: Digest,
    },
    /// A pull could not open a content writer for a blob.
    #[error("failed to open writer for {key}: {source}")]
    OpenWriter {
        /// The ingest ref (`layer-sha256:…`).
        key: String,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A pull could not commit a fetched blob.
    #[error("failed to commit {key}: {source}")]
    CommitBlob {
        /// The ingest ref.
        key: String,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A registry sent more than a blob's descriptor says.
    #[error("{digest}: registry sent more than the {size} bytes of its descriptor")]
    LongerThanDescriptor {
        /// The blob.
        digest: Digest,
        /// Its descriptor's size.
        size: u64,
    },
    /// A push could not walk the image's manifests.
    #[error("failed to push {reference}: {source}")]
    Push {
        /// The reference pushed to.
        reference: String,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A blob to push is not in the content store.
    #[error("cannot push {key}: {source}")]
    PushBlob {
        /// The blob's ingest ref.
        key: String,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A layer an unpack waited for was not fetched.
    #[error("layer {digest} was not fetched: {source}")]
    LayerNotFetched {
        /// The layer.
        digest: Digest,
        /// Why the fetch failed.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// An image whose config and manifest count different layers.
    #[error(
        "mismatched image rootfs and manifest layers of image {digest}: {diff_ids} diff ids, {layers} layers"
    )]
    LayerCountMismatch {
        /// The image's target.
        digest: Digest,
        /// Diff ids in its config.
        diff_ids: usize,
        /// Layers in the manifest.
        layers: usize,
    },
    /// A snapshot of an unpack could not be stat'ed, prepared or committed.
    #[error("failed to {op} snapshot {key:?}: {source}")]
    Snapshot {
        /// What was being done (`"stat"`, `"prepare extraction"`, `"commit"`).
        op: &'static str,
        /// The snapshot's key (or chain id).
        key: String,
        /// The snapshotter's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// The diff service could not apply a layer.
    #[error("failed to extract layer {diff_id}: {source}")]
    ExtractLayer {
        /// The layer blob.
        layer: Digest,
        /// Its diff id.
        diff_id: Digest,
        /// The diff service's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// An applied layer's content is not the diff id its image names.
    #[error("wrong diff id calculated on extraction {:?}, expected {expected}", digest.to_string())]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The diff id the image's config names.
        expected: Digest,
        /// The diff id of what was applied.
        digest: Digest,
    },

    /// An index exported with no manifest for the platforms asked for.
    #[error("{image}: no manifest found for platform")]
    NoManifestForPlatform {
        /// The image's name.
        image: String,
    },
    /// An image whose target is neither a manifest nor an index.
    #[error("{image}: only manifests may be exported, not {media_type}")]
    NotExportable {
        /// The image's name.
        image: String,
        /// Its target's media type.
        media_type: String,
    },
    /// A manifest without a config.
    #[error("manifest {digest} has no config")]
    ManifestWithoutConfig {
        /// The manifest.
        digest: Digest,
    },
    /// A blob of an image to export is not in the content store.
    #[error("{digest} is not in the content store: {source}")]
    BlobNotInStore {
        /// The blob.
        digest: Digest,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// An entry of an export could not be written (or its blob read).
    #[error("write archive entry {entry:?}: {source}")]
    WriteEntry {
        /// The entry's path in the archive.
        entry: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint archive cannot be written where it was asked for.
    #[error("checkpoint archive {}: {reason}", path.display())]
    ArchiveDestination {
        /// The archive's path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The end of an export could not be written.
    #[error("write archive: {source}")]
    FinishArchive {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A blob read for an export does not hash to its digest.
    #[error("blob {digest} in the content store does not match its digest")]
    BlobDigestMismatch {
        /// The blob.
        digest: Digest,
    },

    /// An archive to import could not be read as a tar.
    #[error("read archive: {source}")]
    ReadArchive {
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// A JSON file of an archive (`oci-layout`, `manifest.json`) does not
    /// parse.
    #[error("archive's {entry}: {source}")]
    ArchiveJson {
        /// The file's path in the archive.
        entry: &'static str,
        /// The parse (or read) error.
        #[source]
        source: serde_json::Error,
    },
    /// A file of an archive could not be stored as a blob.
    #[error("failed to ingest {entry:?}: {source}")]
    Ingest {
        /// The entry's path in the archive.
        entry: String,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A file of an archive ended before its size.
    #[error("archive entry {entry:?} ended after {read} of {size} bytes")]
    EntryTruncated {
        /// The entry's path in the archive.
        entry: String,
        /// Bytes there were.
        read: u64,
        /// Its header's size.
        size: u64,
    },
    /// A `blobs/<alg>/<hex>` file of an archive with another digest.
    #[error("archive blob {entry:?} does not match its name: its digest is {digest}")]
    BlobNameMismatch {
        /// The entry's path in the archive.
        entry: String,
        /// The digest of its content.
        digest: Digest,
    },
    /// A layer of a `docker save` archive could not be gzipped.
    #[error("compress layer {digest}: {source}")]
    CompressLayer {
        /// The layer blob.
        digest: Digest,
        /// The read, compression or write error.
        #[source]
        source: io::Error,
    },
    /// A symlink of a `docker save` archive to nothing in it.
    #[error("no target for symlink layer from {link:?} to {target:?}")]
    SymlinkWithoutTarget {
        /// The symlink's path in the archive.
        link: String,
        /// The path it points at.
        target: String,
    },
    /// A file `manifest.json` names that the archive does not hold.
    #[error("{what} {path:?} not found in the archive")]
    NotInArchive {
        /// `"image config"` or `"layer"`.
        what: &'static str,
        /// The path `manifest.json` names.
        path: String,
    },
    /// A zstd layer in a `docker save` archive.
    #[error("layer {path:?}: zstd is not a compression of docker save layers")]
    ZstdDockerLayer {
        /// The layer's path in the archive.
        path: String,
    },
    /// An image config of a `docker save` archive that does not parse.
    #[error("image config {path:?}: {source}")]
    ArchiveImageConfig {
        /// The config's path in the archive.
        path: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A repo tag of a `docker save` archive that is not a reference.
    #[error("normalize image ref {tag:?}: {source}")]
    RepoTag {
        /// The tag.
        tag: String,
        /// The parse error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// An OCI layout of a version other than 1.0.0.
    #[error("unsupported OCI version {version:?}")]
    UnsupportedOciVersion {
        /// The `imageLayoutVersion`.
        version: String,
    },
    /// An OCI layout without its `index.json`.
    #[error("missing index.json in OCI layout 1.0.0")]
    MissingIndex,
    /// An archive that is neither an OCI layout nor a `docker save`.
    #[error(
        "unrecognized image format: neither an OCI layout (oci-layout) nor a docker save archive (manifest.json)"
    )]
    UnrecognizedArchive,
    /// An archive's index that does not parse.
    #[error("archive index {digest}: {source}")]
    ArchiveIndex {
        /// The index blob.
        digest: Digest,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// An archive with no image for the platforms imported.
    #[error("the archive holds no image for this platform (use --all-platforms or --platform)")]
    NoImageForPlatform,

    /// The daemon has no opt plugin.
    #[error("opt service not enabled: the daemon has no io.containerd.internal.v1.opt plugin")]
    OptNotEnabled,
    /// The daemon's opt plugin did not start.
    #[error("opt service failed to start: {reason}")]
    OptFailed {
        /// Why, as the daemon reports it.
        reason: String,
    },
    /// The daemon's opt plugin exports no path.
    #[error("opt path not exported by the opt plugin")]
    OptPathNotExported,
    /// A layer of an image to install is not in the content store.
    #[error("layer {digest} of image {name:?} (fetch the image's content first): {source}")]
    LayerNotInStore {
        /// The image's name.
        name: String,
        /// The layer.
        digest: Digest,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// An install under a relative path.
    #[error("install path {} must be absolute", path.display())]
    InstallPathNotAbsolute {
        /// The path.
        path: PathBuf,
    },
    /// An install asked for a layer the image does not have.
    #[error("install of {name} asked for layer {index} of {count}")]
    InstallLayerIndex {
        /// The image's name.
        name: String,
        /// The layer asked for.
        index: usize,
        /// The image's layers.
        count: usize,
    },
    /// The files of an image could not be installed.
    #[error("install {name}: {source}")]
    Install {
        /// The image's name.
        name: String,
        /// The differ's error.
        #[source]
        source: Box<crated_core::Error>,
    },

    /// A checkpoint of a task asked of a container without one.
    #[error("container {id:?} has no task to checkpoint")]
    NoTaskToCheckpoint {
        /// The container's id.
        id: String,
    },
    /// A checkpoint with the image asked of a container without one.
    #[error("container {id:?} has no image to include")]
    NoImageToInclude {
        /// The container's id.
        id: String,
    },
    /// A checkpoint with the read-write layer asked of a container without
    /// a snapshot.
    #[error("container {id:?} has no snapshot: no read-write layer to include")]
    NoSnapshotToInclude {
        /// The container's id.
        id: String,
    },
    /// The task was dumped for a checkpoint, but stayed paused.
    #[error("checkpoint {name:?} dumped, but task {id:?} could not be resumed: {source}")]
    NotResumed {
        /// The checkpoint image's name.
        name: String,
        /// The task's id.
        id: String,
        /// The tasks service's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A checkpoint image's index could not be read.
    #[error("checkpoint {name:?}: {source}")]
    Checkpoint {
        /// The checkpoint image's name.
        name: String,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A checkpoint image whose target is not an index.
    #[error("checkpoint {name:?} is not an index: {source}")]
    NotAnIndex {
        /// The checkpoint image's name.
        name: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint index without an annotation restore needs.
    #[error("checkpoint {name:?}: {what} not found in index")]
    CheckpointAnnotation {
        /// The checkpoint image's name.
        name: String,
        /// `"image name"` or `"runtime"`.
        what: &'static str,
    },
    /// A checkpoint without the container's spec.
    #[error("checkpoint {name:?} has no container spec (checkpointed without --task)")]
    NoContainerSpec {
        /// The checkpoint image's name.
        name: String,
    },
    /// A checkpoint without criu's dump of the task.
    #[error("checkpoint {name:?} holds no task dump (checkpointed without --task)")]
    NoTaskDump {
        /// The checkpoint image's name.
        name: String,
    },
    /// A checkpoint without the read-write layer.
    #[error("checkpoint {name:?} holds no read-write layer (checkpointed without --rw)")]
    NoRwLayer {
        /// The checkpoint image's name.
        name: String,
    },
    /// A part of a checkpoint (its spec, its runtime options) that is not
    /// a protobuf `Any`.
    #[error("checkpoint {name:?}: {part} {digest}: {source}")]
    CheckpointPart {
        /// The checkpoint image's name.
        name: String,
        /// `"spec"` or `"runtime options"`.
        part: &'static str,
        /// The part's blob.
        digest: Digest,
        /// The decoding error.
        #[source]
        source: prost::DecodeError,
    },
    /// The image a checkpoint names is not in the image store.
    #[error("the checkpoint's image must be pulled (and unpacked) first: {source}")]
    CheckpointImage {
        /// The image's name.
        image: String,
        /// The images service's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// The snapshot of a restored container could not be prepared.
    #[error("snapshot {key:?} on {image} (is it unpacked?): {source}")]
    RestoreSnapshot {
        /// The snapshot's key (the container's id).
        key: String,
        /// The checkpoint's image.
        image: String,
        /// The snapshotter's error.
        #[source]
        source: Box<crated_core::Error>,
    },
}

impl Error {
    /// An I/O error while doing `op` to `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The kind of an errno, through core's one I/O mapping.
fn errno_kind(errno: Errno) -> Kind {
    io_kind(&io::Error::from(errno))
}

/// The kind of a failed read of an archive being imported: a failed
/// system call takes its I/O kind; what that mapping cannot place is the
/// archive's fault (InvalidArgument) — the tar crate reports a malformed
/// header as `Other`, and an archive that breaks off as `UnexpectedEof`.
fn archive_kind(err: &io::Error) -> Kind {
    match io_kind(err) {
        Kind::Unknown => Kind::InvalidArgument,
        kind => kind,
    }
}

/// The kind of an I/O error that may carry the content store's error (a
/// [`crated_differ::BlobReader`] wraps it, and tar may wrap that again):
/// the store's kind if so, else its I/O kind.
fn blob_io_kind(err: &io::Error) -> Kind {
    type Dyn = dyn std::error::Error + 'static;
    let mut next = err.get_ref().map(|inner| inner as &Dyn);
    while let Some(e) = next {
        if let Some(store) = e.downcast_ref::<crated_core::Error>() {
            return store.kind();
        }
        // io::Error's own source() skips the error it wraps: look inside.
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &Dyn),
            None => e.source(),
        };
    }
    io_kind(err)
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Io { source, .. } | Error::ImageFile { source, .. } => io_kind(source),
            Error::Mkfifo { source, .. } | Error::OpenImageFile { source, .. } => {
                errno_kind(*source)
            }
            Error::WriteEntry { source, .. }
            | Error::FinishArchive { source }
            | Error::CompressLayer { source, .. } => blob_io_kind(source),
            Error::ReadArchive { source } => archive_kind(source),
            // A JSON file that cannot be read is the archive's read error;
            // one that does not parse is a bad archive.
            Error::ArchiveJson { source, .. } => source
                .io_error_kind()
                .map_or(Kind::InvalidArgument, |k| archive_kind(&k.into())),

            // What a service said keeps its kind.
            Error::Image { source, .. }
            | Error::Container { source, .. }
            | Error::OpenWriter { source, .. }
            | Error::CommitBlob { source, .. }
            | Error::Push { source, .. }
            | Error::PushBlob { source, .. }
            | Error::Snapshot { source, .. }
            | Error::ExtractLayer { source, .. }
            | Error::BlobNotInStore { source, .. }
            | Error::Ingest { source, .. }
            | Error::RepoTag { source, .. }
            | Error::LayerNotInStore { source, .. }
            | Error::Install { source, .. }
            | Error::NotResumed { source, .. }
            | Error::Checkpoint { source, .. }
            | Error::CheckpointImage { source, .. }
            | Error::RestoreSnapshot { source, .. } => source.kind(),
            // The unpack gives up because the pull failed, as containerd's
            // unpacker does when its fetch is cancelled.
            Error::LayerNotFetched { .. } => Kind::Aborted,

            Error::DialTimeout { .. } => Kind::DeadlineExceeded,
            Error::Dial { .. } => Kind::Unavailable,

            Error::ImageHasNoLayers { .. }
            | Error::TargetHasNoLayers { .. }
            | Error::NoSnapshotter { .. }
            | Error::BuildSpec { .. }
            | Error::EncodeSpec { .. }
            | Error::SpecType { .. }
            | Error::DecodeSpec { .. }
            | Error::ImageConfig { .. }
            | Error::NotRegularFile { .. }
            | Error::ImageFileTooLarge { .. }
            | Error::UserNeedsRootfs { .. }
            | Error::BadUid { .. }
            | Error::SizeOutOfRange { .. }
            | Error::NegativeSize { .. }
            | Error::LayerCountMismatch { .. }
            | Error::NotExportable { .. }
            | Error::ManifestWithoutConfig { .. }
            | Error::EntryTruncated { .. }
            | Error::BlobNameMismatch { .. }
            | Error::SymlinkWithoutTarget { .. }
            | Error::NotInArchive { .. }
            | Error::ZstdDockerLayer { .. }
            | Error::ArchiveImageConfig { .. }
            | Error::UnsupportedOciVersion { .. }
            | Error::MissingIndex
            | Error::UnrecognizedArchive
            | Error::ArchiveIndex { .. }
            | Error::InstallPathNotAbsolute { .. }
            | Error::NotAnIndex { .. }
            | Error::CheckpointAnnotation { .. }
            | Error::NoContainerSpec { .. }
            | Error::NoTaskDump { .. }
            | Error::NoRwLayer { .. }
            | Error::CheckpointPart { .. } => Kind::InvalidArgument,

            Error::NoMetrics { .. }
            | Error::UserNotFound { .. }
            | Error::GroupNotFound { .. }
            | Error::NoPlatformMatch { .. }
            | Error::NoManifestForPlatform { .. }
            | Error::NoImageForPlatform
            | Error::OptNotEnabled
            | Error::OptPathNotExported => Kind::NotFound,

            Error::ContainerHasNoSpec { .. }
            | Error::ContainerHasTask { .. }
            | Error::LongerThanDescriptor { .. }
            | Error::DiffIdMismatch { .. }
            | Error::BlobDigestMismatch { .. }
            | Error::OptFailed { .. }
            | Error::NoTaskToCheckpoint { .. }
            | Error::NoImageToInclude { .. }
            | Error::NoSnapshotToInclude { .. } => Kind::FailedPrecondition,

            Error::UnpullableMediaType { .. } => Kind::NotImplemented,
            Error::IndexTooDeep { .. } | Error::ArchiveDestination { .. } => Kind::InvalidArgument,

            Error::Blocking { .. } | Error::Encode { .. } | Error::InstallLayerIndex { .. } => {
                Kind::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn digest() -> Digest {
        Digest::sha256(b"x")
    }

    #[test]
    fn kinds_and_sources_survive_conversion() {
        let err = Error::io(
            "create",
            "/run/x",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        let core: crated_core::Error = err.into();
        assert_eq!(core.kind(), Kind::FailedPrecondition);
        assert!(core.message().starts_with("create /run/x: "), "{core}");
        let source = std::error::Error::source(&core).and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(source, Some(Error::Io { op: "create", .. })));
    }

    #[test]
    fn errnos_take_their_io_kind() {
        let err = Error::Mkfifo {
            path: "/run/x".into(),
            source: Errno::EEXIST,
        };
        assert_eq!(err.kind(), Kind::AlreadyExists);
        let err = Error::OpenImageFile {
            path: "/etc/passwd".into(),
            source: Errno::EACCES,
        };
        assert_eq!(err.kind(), Kind::FailedPrecondition);
    }

    #[test]
    fn service_errors_keep_their_kind_and_message() {
        let err = Error::Image {
            name: "a:1".into(),
            source: Box::new(crated_core::Error::not_found("image not found")),
        };
        assert_eq!(err.kind(), Kind::NotFound);
        assert_eq!(err.to_string(), "image \"a:1\": image not found");
        let err = Error::LayerNotFetched {
            digest: digest(),
            source: Box::new(crated_core::Error::unavailable("registry down")),
        };
        assert_eq!(err.kind(), Kind::Aborted);
    }

    #[test]
    fn a_broken_archive_is_invalid_not_unknown() {
        let malformed = Error::ReadArchive {
            source: io::Error::other("numeric field was not a number"),
        };
        assert_eq!(malformed.kind(), Kind::InvalidArgument);
        let short = Error::ReadArchive {
            source: io::Error::from(io::ErrorKind::UnexpectedEof),
        };
        assert_eq!(short.kind(), Kind::InvalidArgument);
        let denied = Error::ReadArchive {
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(denied.kind(), Kind::FailedPrecondition);
        let json = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let err = Error::ArchiveJson {
            entry: "manifest.json",
            source: json,
        };
        assert_eq!(err.kind(), Kind::InvalidArgument);
    }

    #[test]
    fn a_blob_read_error_keeps_the_store_kind() {
        let store = crated_core::Error::not_found("content sha256:x not found");
        let wrapped = io::Error::other(io::Error::other(store));
        let err = Error::WriteEntry {
            entry: "blobs/sha256/x".into(),
            source: wrapped,
        };
        assert_eq!(err.kind(), Kind::NotFound);
        let err = Error::FinishArchive {
            source: io::Error::from(io::ErrorKind::BrokenPipe),
        };
        assert_eq!(err.kind(), Kind::Unavailable);
    }
}
