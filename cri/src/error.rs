//! The CRI plugin's own errors, each with its containerd kind.

use std::path::PathBuf;

use crated_core::error::{io_kind, KindError};
use crated_core::Kind;

/// What can go wrong in the CRI plugin. Every variant names the path
/// involved and keeps the underlying error as its source; `?` turns it
/// into a [`crated_core::Error`] of its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A container log path was not absolute; a relative one would land
    /// wherever the daemon's working directory is.
    #[error("container log path {} is not absolute", path.display())]
    LogPathNotAbsolute {
        /// The path given.
        path: PathBuf,
    },
    /// The directory of a container log does not exist. The kubelet makes
    /// it (`/var/log/pods/<pod>/<container>`) before it creates the
    /// container, so its absence means the pod's log dir was removed.
    #[error("container log directory {} of {} does not exist", dir.display(), path.display())]
    LogDirMissing {
        /// The missing directory.
        dir: PathBuf,
        /// The log file that was to be opened in it.
        path: PathBuf,
    },
    /// A container log file could not be opened.
    #[error("open container log {}: {source}", path.display())]
    OpenLog {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Records could not be written to a container log; the writer kept
    /// draining the container's output regardless.
    #[error("write container log {}: {source}", path.display())]
    WriteLog {
        /// The log file.
        path: PathBuf,
        /// The first I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A reopen of a container log whose writer has ended: the container's
    /// output is closed (it stopped) or the writer was stopped.
    #[error("reopen container log {}: container is not running", path.display())]
    LogNotRunning {
        /// The log file.
        path: PathBuf,
    },
    /// A container log writer's task (or one of its blocking file
    /// operations) panicked or was cancelled.
    #[error("container log writer of {} failed: {source}", path.display())]
    LogTask {
        /// The log file.
        path: PathBuf,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::LogPathNotAbsolute { .. } => Kind::InvalidArgument,
            // containerd answers ReopenContainerLog on a container that is
            // not running with "container is not running"; the call is
            // valid, the container's state is not.
            Error::LogDirMissing { .. } | Error::LogNotRunning { .. } => Kind::FailedPrecondition,
            Error::OpenLog { source, .. } | Error::WriteLog { source, .. } => io_kind(source),
            Error::LogTask { .. } => Kind::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_sources_survive_conversion() {
        let err = Error::OpenLog {
            path: "/var/log/pods/p/c/0.log".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        let core: crated_core::Error = err.into();
        assert_eq!(core.kind(), Kind::FailedPrecondition);
        assert!(
            core.message()
                .starts_with("open container log /var/log/pods/p/c/0.log: "),
            "{core}"
        );
        let source = std::error::Error::source(&core).and_then(|s| s.downcast_ref::<Error>());
        assert!(matches!(source, Some(Error::OpenLog { .. })));

        let err: crated_core::Error = Error::LogNotRunning {
            path: "/l/0.log".into(),
        }
        .into();
        assert_eq!(err.kind(), Kind::FailedPrecondition);
        assert_eq!(
            err.to_string(),
            "reopen container log /l/0.log: container is not running"
        );
    }
}
