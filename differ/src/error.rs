//! The differ's errors, each with its containerd kind.
//!
//! A layer that cannot be read or holds something we refuse is
//! InvalidArgument; a failed system call takes the kind of its errno
//! through core's one I/O mapping ([`io_kind`]).

use std::io;
use std::path::{Path, PathBuf};

use crated_core::digest::Digest;
use crated_core::error::{io_kind, KindError};
use crated_core::Kind;
use nix::errno::Errno;

/// What can go wrong applying, comparing or installing layers. Every
/// variant names the layer entry, path, digest or media type involved and
/// keeps the underlying error as its source; `?` turns it into a
/// [`crated_core::Error`] of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on a path of ours (the scratch directory, the root
    /// of an apply, a side of a compare, an install directory).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"stat"`, `"read link"`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A system call on a path of ours failed.
    #[error("{op} {}: {source}", path.display())]
    Sys {
        /// What was being done (`"open"`, `"sync"`, `"rename into"`, …).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// The layer stream could not be read: corrupt, truncated, or its blob
    /// unreadable.
    #[error("read layer: {source}")]
    ReadLayer {
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// Layer `layer` (counted from the bottom) of an install could not be
    /// read.
    #[error("read layer {layer}: {source}")]
    ReadInstallLayer {
        /// The layer's index, bottom first.
        layer: usize,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// The data or extended header of an entry could not be read.
    #[error("layer entry {}: read layer: {source}", quoted(entry))]
    ReadEntry {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// A field of an entry's tar header does not parse.
    #[error(
        "layer entry {}: invalid {field} in its tar header: {source}",
        quoted(entry)
    )]
    Header {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// The field (`"mode"`, `"uid"`, …).
        field: &'static str,
        /// The parse error.
        #[source]
        source: io::Error,
    },
    /// A name or hard-link target holds `..`: it would resolve outside the
    /// root, which a layer never needs.
    #[error("layer entry {}: contains \"..\"", quoted(entry))]
    EscapesRoot {
        /// The entry's path, or the hard-link target holding `..`.
        entry: PathBuf,
    },
    /// A name has a path prefix (not a Unix path).
    #[error("layer entry {}: has a path prefix", quoted(entry))]
    PathPrefix {
        /// The entry's path in the layer.
        entry: PathBuf,
    },
    /// A name or link target holds a NUL byte, which no file name can.
    #[error("layer entry {}: contains a NUL byte", quoted(entry))]
    NulByte {
        /// The entry's path.
        entry: PathBuf,
    },
    /// An extended attribute's name holds a NUL byte.
    #[error("layer entry {}: xattr name with a NUL byte", quoted(entry))]
    XattrNameNul {
        /// The entry's path in the layer.
        entry: PathBuf,
    },
    /// An entry carries one of overlayfs's own xattrs (`trusted.overlay.*`,
    /// or `user.overlay.*` for unprivileged mounts): applied to an upper
    /// directory it would forge an opaque directory, a whiteout or a
    /// redirect to another layer's files. Whiteouts travel in a layer as
    /// `.wh.` entries, never as these.
    #[error(
        "layer entry {}: refused xattr {name}: overlayfs's own attributes may not come from a layer",
        quoted(entry)
    )]
    OverlayXattr {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// The xattr's name.
        name: String,
    },
    /// An entry of a type that is not applied (a GNU sparse file, say).
    #[error(
        "layer entry {}: unhandled tar header type {entry_type:?}",
        quoted(entry)
    )]
    UnsupportedEntryType {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// Its type.
        entry_type: tar::EntryType,
    },
    /// A symlink or hard link without a target.
    #[error("layer entry {}: {link} without a target", quoted(entry))]
    MissingLinkTarget {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// `"symlink"` or `"hard link"`.
        link: &'static str,
    },
    /// A hard link to the root directory.
    #[error("layer entry {}: hard link to the root", quoted(entry))]
    HardLinkToRoot {
        /// The entry's path in the layer.
        entry: PathBuf,
    },
    /// An owner that does not fit a Linux id.
    #[error("layer entry {}: {id} {value} out of range", quoted(entry))]
    IdOutOfRange {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// `"uid"` or `"gid"`.
        id: &'static str,
        /// The id in the header.
        value: u64,
    },
    /// A whiteout naming nothing (`.wh.`, `.wh..`).
    #[error("layer entry {}: whiteout of nothing", quoted(entry))]
    WhiteoutOfNothing {
        /// The whiteout's path in the layer.
        entry: PathBuf,
    },
    /// Resolving an entry's path met a symlink loop or a `/proc` magic link.
    #[error("layer entry {}: symlink loop or magic link", quoted(entry))]
    SymlinkLoop {
        /// The entry's path in the layer.
        entry: PathBuf,
    },
    /// A system call applying an entry failed.
    #[error("layer entry {}: {op}: {source}", quoted(entry))]
    Entry {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// What was being done (`"create file"`, `"chown"`, …).
        op: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// An extended attribute of an entry could not be set.
    #[error("layer entry {}: set xattr {name:?}: {source}", quoted(entry))]
    SetXattr {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// The attribute.
        name: String,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// An entry's data could not be written.
    #[error("layer entry {}: write: {source}", quoted(entry))]
    WriteEntry {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// The write error.
        #[source]
        source: io::Error,
    },
    /// What was in an entry's way (or a whiteout's target) could not be
    /// removed.
    #[error("layer entry {}: remove {}: {source}", quoted(entry), name.display())]
    RemoveEntry {
        /// The entry's path in the layer.
        entry: PathBuf,
        /// The name removed in the entry's directory.
        name: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A layer of a media type the differ does not apply.
    #[error("unsupported diff media type {media_type:?} of {digest}")]
    UnsupportedLayer {
        /// The descriptor's media type.
        media_type: String,
        /// The layer.
        digest: Digest,
    },
    /// A compare asked for a media type the differ does not write.
    #[error("unsupported diff media type: {media_type}: not implemented")]
    UnsupportedDiffType {
        /// The media type asked for.
        media_type: String,
    },
    /// An apply onto read-only mounts.
    #[error("cannot apply {digest} onto read-only mounts")]
    ReadOnlyMounts {
        /// The layer.
        digest: Digest,
    },
    /// A compare without upper mounts.
    #[error("diff: no upper mounts to compare")]
    NoUpperMounts,
    /// An entry could not be written into the diff's tar.
    #[error("write diff entry {}: {source}", entry.display())]
    WriteDiffEntry {
        /// The entry's path in the diff.
        entry: PathBuf,
        /// The I/O error (reading the file, or writing the tar).
        #[source]
        source: io::Error,
    },
    /// The diff's tar could not be finished.
    #[error("finish diff tar: {source}")]
    FinishDiff {
        /// The write error.
        #[source]
        source: io::Error,
    },
    /// The compressed diff could not be flushed into the content ingest.
    #[error("write diff: {source}")]
    WriteDiff {
        /// The write error.
        #[source]
        source: io::Error,
    },
    /// A whiteout for a path without a name (the root).
    #[error("whiteout of {}", entry.display())]
    WhiteoutName {
        /// The path.
        entry: PathBuf,
    },
    /// The blocking apply of a layer panicked or was cancelled.
    #[error("apply {digest}: {source}")]
    ApplyTask {
        /// The layer.
        digest: Digest,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The blocking producer of [`crate::stream_into`] panicked or was
    /// cancelled.
    #[error("producer task: {source}")]
    ProducerTask {
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A name too long for an install's temporary name beside it.
    #[error("layer entry {entry}: name too long to install")]
    NameTooLong {
        /// `bin/<name>` or `lib/<name>`.
        entry: String,
    },
    /// The layers leave nothing in `bin/` (or `lib/`).
    #[error("the image has no files in /bin{} to install", if *libs { " or /lib" } else { "" })]
    NothingToInstall {
        /// Whether `lib/` was asked for too.
        libs: bool,
    },
    /// An install would replace a file and was not told to.
    #[error("cannot replace {entry} in {}: it exists (use --replace)", dest.display())]
    InstallExists {
        /// `bin/<name>` or `lib/<name>`.
        entry: String,
        /// The install's destination.
        dest: PathBuf,
    },
    /// A file appeared at an installed name while the install ran.
    #[error("cannot replace {} (it appeared during the install)", path.display())]
    AppearedDuringInstall {
        /// The file.
        path: PathBuf,
    },
    /// An install directory that should have been opened was not.
    #[error("{dir} was not opened")]
    NotOpened {
        /// `bin` or `lib`.
        dir: &'static str,
    },
}

/// Result with the differ's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An entry path as today's messages quote it: a Rust string literal.
fn quoted(entry: &Path) -> String {
    format!("{:?}", entry.display().to_string())
}

/// The kind of an errno, through core's one I/O mapping.
fn errno_kind(errno: Errno) -> Kind {
    io_kind(&io::Error::from(errno))
}

/// The kind of a failed read of a layer: the content store's own kind when
/// its blob could not be read (a [`crate::BlobReader`] carries the store's
/// error inside the I/O error); otherwise a layer that ends early or does
/// not decompress or parse is a broken layer (InvalidArgument) — tar and
/// the decompressors report those as `UnexpectedEof` or `Other` — and
/// anything else takes its I/O kind.
fn layer_read_kind(err: &io::Error) -> Kind {
    if let Some(store) = store_error(err) {
        return store.kind();
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::Other => Kind::InvalidArgument,
        _ => io_kind(err),
    }
}

/// The content store's error behind an I/O error, if one is wrapped in it
/// (possibly under tar's own wrapper).
fn store_error(err: &io::Error) -> Option<&crated_core::Error> {
    type Dyn = dyn std::error::Error + 'static;
    let mut next = err.get_ref().map(|inner| inner as &Dyn);
    while let Some(e) = next {
        if let Some(store) = e.downcast_ref::<crated_core::Error>() {
            return Some(store);
        }
        // io::Error's own source() skips the error it wraps: look inside.
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &Dyn),
            None => e.source(),
        };
    }
    None
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Io { source, .. }
            | Error::WriteEntry { source, .. }
            | Error::RemoveEntry { source, .. }
            | Error::WriteDiffEntry { source, .. }
            | Error::FinishDiff { source }
            | Error::WriteDiff { source } => io_kind(source),
            Error::Sys { source, .. }
            | Error::Entry { source, .. }
            | Error::SetXattr { source, .. } => errno_kind(*source),
            Error::ReadLayer { source }
            | Error::ReadInstallLayer { source, .. }
            | Error::ReadEntry { source, .. } => layer_read_kind(source),
            Error::Header { .. }
            | Error::EscapesRoot { .. }
            | Error::PathPrefix { .. }
            | Error::NulByte { .. }
            | Error::XattrNameNul { .. }
            | Error::OverlayXattr { .. }
            | Error::UnsupportedEntryType { .. }
            | Error::MissingLinkTarget { .. }
            | Error::HardLinkToRoot { .. }
            | Error::IdOutOfRange { .. }
            | Error::WhiteoutOfNothing { .. }
            | Error::SymlinkLoop { .. }
            | Error::ReadOnlyMounts { .. }
            | Error::NoUpperMounts
            | Error::NameTooLong { .. } => Kind::InvalidArgument,
            Error::UnsupportedLayer { .. } | Error::UnsupportedDiffType { .. } => {
                Kind::NotImplemented
            }
            Error::NothingToInstall { .. } => Kind::NotFound,
            Error::InstallExists { .. } | Error::AppearedDuringInstall { .. } => {
                Kind::AlreadyExists
            }
            Error::WhiteoutName { .. }
            | Error::ApplyTask { .. }
            | Error::ProducerTask { .. }
            | Error::NotOpened { .. } => Kind::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_sources_survive_conversion() {
        let err = Error::Entry {
            entry: PathBuf::from("etc/passwd"),
            op: "create file",
            source: Errno::EACCES,
        };
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        let core: crated_core::Error = err.into();
        assert_eq!(core.kind(), Kind::FailedPrecondition);
        assert!(
            core.message()
                .starts_with("layer entry \"etc/passwd\": create file: "),
            "{core}"
        );
        let source = std::error::Error::source(&core).and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(
            source,
            Some(Error::Entry {
                source: Errno::EACCES,
                ..
            })
        ));
    }

    #[test]
    fn a_broken_layer_is_invalid_but_an_unreadable_blob_keeps_its_kind() {
        let truncated = Error::ReadLayer {
            source: io::Error::from(io::ErrorKind::UnexpectedEof),
        };
        assert_eq!(truncated.kind(), Kind::InvalidArgument);
        let corrupt = Error::ReadLayer {
            source: io::Error::other("corrupt deflate stream"),
        };
        assert_eq!(corrupt.kind(), Kind::InvalidArgument);
        // As a BlobReader reports it, under tar's wrapper as tar does.
        let missing = io::Error::other(crated_core::Error::not_found("content sha256:x"));
        let wrapped = io::Error::new(missing.kind(), Wrapper(missing));
        let err = Error::ReadEntry {
            entry: PathBuf::from("x"),
            source: wrapped,
        };
        assert_eq!(err.kind(), Kind::NotFound);
        let disk = Error::ReadLayer {
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(disk.kind(), Kind::FailedPrecondition);
    }

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("failed to read entire block")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
