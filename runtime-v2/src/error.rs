//! The runtime's errors, each with its containerd kind.
//!
//! A shim's own answer keeps the kind the shim sent (its ttrpc status
//! code, through `crated-api`'s one code table); a call that ran out of
//! time says which timeout fired, how long it was and for what; file
//! operations on bundles take their kind from core's one I/O mapping
//! ([`io_kind`]).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crated_core::digest::Digest;
use crated_core::error::{io_kind, KindError};
use crated_core::Kind;
use nix::errno::Errno;

/// What can go wrong managing tasks and their shims. Every variant names
/// the task, namespace, shim binary, address, bundle path or digest
/// involved and keeps the underlying error as its source; `?` turns it
/// into a [`crated_core::Error`] of its kind, which a caller may downcast
/// back to this type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A runtime name that is neither `io.containerd.<name>.<version>` nor
    /// an absolute path (containerd's wording).
    #[error(
        "invalid runtime name {runtime}, correct runtime name should be either format like \
         `io.containerd.runc.v1` or a full path to the binary"
    )]
    InvalidRuntimeName {
        /// The runtime name asked for.
        runtime: String,
    },
    /// A shim given by absolute path that is not an executable file.
    #[error("runtime binary {path:?} does not exist or is not executable")]
    ShimNotExecutable {
        /// The path.
        path: PathBuf,
    },
    /// No shim binary for a runtime name in the opt `bin/`, beside the
    /// daemon or on PATH.
    #[error("runtime {runtime:?} binary not installed {binary:?}")]
    ShimNotInstalled {
        /// The runtime name (`io.containerd.runc.v2`).
        runtime: String,
        /// The binary name it means (`containerd-shim-runc-v2`).
        binary: String,
    },
    /// A shim command (`start`, `delete`) could not be run or its output
    /// not read.
    #[error("run shim {} {action} for task {id:?}: {source}", binary.display())]
    ShimIo {
        /// The shim binary.
        binary: PathBuf,
        /// `"start"` or `"delete"`.
        action: &'static str,
        /// The task.
        id: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A shim command did not finish within its timeout.
    #[error(
        "shim {} {action} for task {id:?} did not finish within {limit:?} ({key})",
        binary.display()
    )]
    ShimTimeout {
        /// The shim binary.
        binary: PathBuf,
        /// `"start"` or `"delete"`.
        action: &'static str,
        /// The task.
        id: String,
        /// The timeout's config key (see [`crate::timeouts`]).
        key: &'static str,
        /// How long it was.
        limit: Duration,
    },
    /// The shim's `start` exited unsuccessfully; `output` is what it
    /// printed (stdout, then stderr).
    #[error(
        "failed to start shim {} for task {id:?}: {output}: {status}",
        binary.display()
    )]
    StartFailed {
        /// The shim binary.
        binary: PathBuf,
        /// The task.
        id: String,
        /// Its stdout and stderr, trimmed.
        output: String,
        /// How it exited.
        status: ExitStatus,
    },
    /// The shim's `start` printed something that is not a `unix://`
    /// address.
    #[error("shim {} printed {printed:?}, not a unix:// address", binary.display())]
    ShimAddress {
        /// The shim binary.
        binary: PathBuf,
        /// The task.
        id: String,
        /// What it printed.
        printed: String,
    },
    /// The shim's `delete` exited unsuccessfully.
    #[error("shim {} delete for task {id:?}: {stderr}: {status}", binary.display())]
    DeleteFailed {
        /// The shim binary.
        binary: PathBuf,
        /// The task.
        id: String,
        /// Its stderr, trimmed.
        stderr: String,
        /// How it exited.
        status: ExitStatus,
    },
    /// The shim's `delete` printed no `DeleteResponse`.
    #[error("shim {} delete for task {id:?} printed no DeleteResponse: {source}", binary.display())]
    DeleteResponse {
        /// The shim binary.
        binary: PathBuf,
        /// The task.
        id: String,
        /// The decode error.
        #[source]
        source: prost::DecodeError,
    },
    /// The shim's socket could not be connected to.
    #[error("connecting to shim {address} of task {id:?}: {source}")]
    Connect {
        /// The shim's ttrpc address.
        address: String,
        /// The task.
        id: String,
        /// The connection error.
        #[source]
        source: Box<ttrpc::Error>,
    },
    /// The shim's socket did not answer within the shim load timeout.
    #[error("connecting to shim {address} of task {id:?}: no answer within {limit:?} ({key})")]
    ConnectTimeout {
        /// The shim's ttrpc address.
        address: String,
        /// The task.
        id: String,
        /// The timeout's config key.
        key: &'static str,
        /// How long it was.
        limit: Duration,
    },
    /// A call to a shim failed: the shim's answer (with the kind it sent)
    /// or a broken connection (Unavailable).
    #[error("{call} of task {id:?}: {}", shim_message(source))]
    Call {
        /// The call (`"create"`, `"state"`, …).
        call: &'static str,
        /// The task.
        id: String,
        /// The ttrpc error.
        #[source]
        source: Box<ttrpc::Error>,
    },
    /// A call to a shim did not finish within its timeout.
    #[error("{call} of task {id:?}: no answer within {limit:?} (timeout {key})")]
    CallTimeout {
        /// The call.
        call: &'static str,
        /// The task.
        id: String,
        /// The timeout's config key.
        key: &'static str,
        /// How long it was.
        limit: Duration,
        /// What the ttrpc client (or the shim's server) reported.
        #[source]
        source: Box<ttrpc::Error>,
    },
    /// The shim's `Create` failed (after which the task was cleaned up).
    #[error("failed to create shim task: {source}")]
    CreateTask {
        /// The task.
        id: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A bundle has no shim address: the daemon that made it stopped
    /// before its shim started.
    #[error("shim of task {id:?} left no address in {}", bundle.display())]
    NoAddress {
        /// The task.
        id: String,
        /// The bundle.
        bundle: PathBuf,
    },
    /// A task id that cannot name a bundle directory.
    #[error("task id: {source}")]
    InvalidTaskId {
        /// The id.
        id: String,
        /// core's identifier validation error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// No task of that id in the namespace.
    #[error("task {id:?} in namespace {namespace:?}: not found")]
    TaskNotFound {
        /// The task.
        id: String,
        /// Its namespace.
        namespace: String,
    },
    /// A task of that id already runs in the namespace.
    #[error("task {id:?} in namespace {namespace:?}: already exists")]
    TaskExists {
        /// The task.
        id: String,
        /// Its namespace.
        namespace: String,
    },
    /// Another create or delete of the same task is under way.
    #[error("task {id:?} in namespace {namespace:?} is being created or deleted")]
    TaskBusy {
        /// The task.
        id: String,
        /// Its namespace.
        namespace: String,
    },
    /// A bundle directory for the task is already there.
    #[error(
        "bundle {} for task {id:?} in namespace {namespace:?}: already exists",
        path.display()
    )]
    BundleExists {
        /// The bundle directory.
        path: PathBuf,
        /// The task.
        id: String,
        /// Its namespace.
        namespace: String,
    },
    /// A file operation on a bundle, work or checkpoint directory, or a
    /// file in one.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"remove"`, `"write"`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A system call on a path of a bundle failed.
    #[error("{op} {}: {source}", path.display())]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// What is mounted on a bundle's rootfs could not be unmounted.
    #[error("unmount {}: {source}", path.display())]
    Unmount {
        /// The rootfs.
        path: PathBuf,
        /// core's mount error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// The daemon's own executable (the shims' `-publish-binary`) could
    /// not be found.
    #[error("the daemon's executable: {source}")]
    DaemonExecutable {
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A lock of the task manager was poisoned by a panic.
    #[error("task manager lock poisoned")]
    Poisoned,
    /// A checkpoint of a media type that is not criu's tar.
    #[error(
        "unsupported checkpoint type {media_type:?} of {digest}: expected {}",
        crated_core::checkpoint::MEDIA_TYPE_CRIU
    )]
    UnsupportedCheckpoint {
        /// The descriptor's media type.
        media_type: String,
        /// The checkpoint.
        digest: Digest,
    },
    /// A checkpoint blob could not be opened in the content store.
    #[error("checkpoint {digest}: {source}")]
    CheckpointContent {
        /// The checkpoint.
        digest: Digest,
        /// The content store's error.
        #[source]
        source: Box<crated_core::Error>,
    },
    /// A checkpoint tar could not be extracted.
    #[error("extract checkpoint {digest} into {}: {source}", dir.display())]
    ExtractCheckpoint {
        /// The checkpoint.
        digest: Digest,
        /// Where it was going.
        dir: PathBuf,
        /// The differ's error.
        #[source]
        source: crated_differ::Error,
    },
    /// A checkpoint blob ended early or could not be read to its end.
    #[error("read checkpoint {digest}: {source}")]
    ReadCheckpoint {
        /// The checkpoint.
        digest: Digest,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// The blocking extraction of a checkpoint panicked or was cancelled.
    #[error("extract checkpoint {digest}: {source}")]
    ExtractTask {
        /// The checkpoint.
        digest: Digest,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The tar of a checkpoint directory could not be written into the
    /// content ingest.
    #[error("write checkpoint tar of {}: {source}", dir.display())]
    WriteCheckpoint {
        /// The checkpoint image directory.
        dir: PathBuf,
        /// The write error.
        #[source]
        source: io::Error,
    },
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A shim's error as core sees it: the kind its status code stands for
/// (Unavailable for a broken connection) and its message. The one table of
/// ttrpc codes is `crated-api`'s; ttrpc errors are cheap to clone.
fn shim_error(source: &ttrpc::Error) -> crated_core::Error {
    crated_api::from_ttrpc(source.clone())
}

/// What a shim said: its status message, not ttrpc's debug dump of it.
fn shim_message(source: &ttrpc::Error) -> String {
    shim_error(source).message().to_owned()
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::InvalidRuntimeName { .. } => Kind::InvalidArgument,
            Error::ShimNotExecutable { .. }
            | Error::ShimNotInstalled { .. }
            | Error::TaskNotFound { .. }
            | Error::NoAddress { .. } => Kind::NotFound,
            Error::ShimIo { source, .. }
            | Error::Io { source, .. }
            | Error::DaemonExecutable { source }
            | Error::WriteCheckpoint { source, .. } => io_kind(source),
            Error::Sys { source, .. } => io_kind(&io::Error::from(*source)),
            Error::ShimTimeout { .. }
            | Error::ConnectTimeout { .. }
            | Error::CallTimeout { .. } => Kind::DeadlineExceeded,
            Error::StartFailed { .. }
            | Error::ShimAddress { .. }
            | Error::DeleteFailed { .. }
            | Error::DeleteResponse { .. }
            | Error::Poisoned
            | Error::ExtractTask { .. } => Kind::Unknown,
            // A shim that cannot be reached may come back (as containerd).
            Error::Connect { .. } => Kind::Unavailable,
            Error::Call { source, .. } => shim_error(source).kind(),
            Error::CreateTask { source, .. } => source.kind(),
            Error::InvalidTaskId { source, .. }
            | Error::Unmount { source, .. }
            | Error::CheckpointContent { source, .. } => source.kind(),
            Error::TaskExists { .. } | Error::BundleExists { .. } => Kind::AlreadyExists,
            Error::TaskBusy { .. } => Kind::FailedPrecondition,
            // A checkpoint of another type, or one whose tar breaks off, is
            // a bad argument to Create (as a bad layer is to the differ).
            Error::UnsupportedCheckpoint { .. } | Error::ReadCheckpoint { .. } => {
                Kind::InvalidArgument
            }
            Error::ExtractCheckpoint { source, .. } => source.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shim_answers_keep_their_kind_and_message() {
        let status =
            crated_api::to_ttrpc(crated_core::Error::not_found("process \"e1\": not found"));
        let err = Error::Call {
            call: "state",
            id: "t1".into(),
            source: Box::new(status),
        };
        assert_eq!(err.kind(), Kind::NotFound);
        assert_eq!(
            err.to_string(),
            "state of task \"t1\": process \"e1\": not found"
        );
        let core: crated_core::Error = err.into();
        assert_eq!(core.kind(), Kind::NotFound);
        let source = std::error::Error::source(&core).and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(source, Some(Error::Call { call: "state", .. })));
    }

    #[test]
    fn a_broken_connection_is_unavailable_and_io_takes_its_kind() {
        let err = Error::Call {
            call: "kill",
            id: "t1".into(),
            source: Box::new(ttrpc::Error::Eof),
        };
        assert_eq!(err.kind(), Kind::Unavailable);
        let err = Error::io(
            "create",
            "/run/x",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        assert!(err.to_string().starts_with("create /run/x: "), "{err}");
    }
}
