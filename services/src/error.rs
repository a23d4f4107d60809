//! The service layer's own failures.

use std::path::PathBuf;

use crated_core::error::{io_kind, KindError};
use crated_core::Kind;

/// What went wrong in a service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request leaves out what it must name.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A container's task asked for, but the record holds no spec.
    #[error("container {0:?} has no spec")]
    NoSpec(String),
    /// No differ is loaded to apply or compare.
    #[error("no differ is loaded")]
    NoDiffer,
    /// The opt directory is not absolute.
    #[error("opt path {0:?} must be absolute")]
    RelativeOpt(PathBuf),
    /// Reading or writing a file of the service's.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Missing(_) | Error::RelativeOpt(_) => Kind::InvalidArgument,
            Error::NoSpec(_) => Kind::FailedPrecondition,
            Error::NoDiffer => Kind::NotImplemented,
            Error::Io { source, .. } => io_kind(source),
        }
    }
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
