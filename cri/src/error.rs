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
    /// A pod network namespace could not be made, inspected or removed.
    #[error("{action} {}: {source}", path.display())]
    Netns {
        /// The namespace's mount point.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A CNI network configuration could not be read or is not valid.
    #[error("CNI config {}: {message}", path.display())]
    CniConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A CNI plugin a network names is in none of the plugin directories.
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    CniPluginNotFound {
        /// The plugin type.
        plugin: String,
        /// Where it was looked for.
        dirs: Vec<PathBuf>,
    },
    /// A CNI plugin could not be run.
    #[error("run CNI plugin {plugin} {command}: {source}")]
    CniExec {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A CNI plugin did not finish in time.
    #[error("CNI plugin {plugin} {command} did not finish in {seconds}s")]
    CniTimeout {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The time it had.
        seconds: u64,
    },
    /// A CNI plugin failed, with the error it reported.
    #[error("CNI plugin {plugin} {command} failed (code {code}): {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    CniPlugin {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The CNI error code.
        code: u64,
        /// Its message.
        msg: String,
        /// Its details.
        details: String,
    },
    /// A CNI plugin answered with something that is not a CNI result.
    #[error("CNI plugin {plugin} {command} gave a result that cannot be read: {message}")]
    CniResult {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// What is wrong with it.
        message: String,
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
            Error::Netns { source, .. } | Error::CniExec { source, .. } => io_kind(source),
            // The node's network set-up is wrong, not the request.
            Error::CniConfig { .. } | Error::CniPluginNotFound { .. } => Kind::FailedPrecondition,
            Error::CniTimeout { .. } => Kind::DeadlineExceeded,
            Error::CniPlugin { .. } | Error::CniResult { .. } => Kind::Unknown,
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
