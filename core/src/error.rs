//! containerd's error kinds (`errdefs`) as one Rust error type.
//!
//! Every error crossing a crate boundary is an [`Error`]: a [`Kind`] that the
//! `api` crate maps to a gRPC/ttrpc status code, and a message naming the
//! object involved. The kind is what callers branch on; the message is for
//! people and is never matched on.

use std::fmt;

/// The class of an error, as in containerd's `errdefs` package.
///
/// Each kind maps to exactly one gRPC code (see `crated-api`), so it survives
/// a trip over the wire to a Go client, whose `errdefs.IsNotFound(err)` and
/// friends then agree with ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An argument was malformed (gRPC `InvalidArgument`).
    InvalidArgument,
    /// The object does not exist (gRPC `NotFound`).
    NotFound,
    /// The object already exists (gRPC `AlreadyExists`).
    AlreadyExists,
    /// The operation is not valid for the object's state (gRPC `FailedPrecondition`).
    FailedPrecondition,
    /// A resource is busy or unreachable; retrying may work (gRPC `Unavailable`).
    Unavailable,
    /// The operation is not built or not supported (gRPC `Unimplemented`).
    NotImplemented,
    /// The operation was aborted, typically by a conflict (gRPC `Aborted`).
    Aborted,
    /// The caller canceled the operation (gRPC `Canceled`).
    Canceled,
    /// A deadline expired before the operation completed (gRPC `DeadlineExceeded`).
    DeadlineExceeded,
    /// Anything else (gRPC `Unknown`).
    Unknown,
}

impl Kind {
    /// The lower-case phrase containerd uses for this kind (`"not found"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InvalidArgument => "invalid argument",
            Kind::NotFound => "not found",
            Kind::AlreadyExists => "already exists",
            Kind::FailedPrecondition => "failed precondition",
            Kind::Unavailable => "unavailable",
            Kind::NotImplemented => "not implemented",
            Kind::Aborted => "aborted",
            Kind::Canceled => "canceled",
            Kind::DeadlineExceeded => "deadline exceeded",
            Kind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a containerd kind and a message naming what was wrong.
///
/// ```
/// use crated_core::{Error, Kind};
///
/// let err = Error::not_found(format!("namespace {:?} not found", "foo"));
/// assert_eq!(err.kind(), Kind::NotFound);
/// assert_eq!(err.to_string(), "namespace \"foo\" not found");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: Kind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $kind:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new(Kind::$kind, message)
            }
        )*
    };
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    constructors! {
        /// An [`Kind::InvalidArgument`] error.
        invalid_argument => InvalidArgument,
        /// A [`Kind::NotFound`] error.
        not_found => NotFound,
        /// A [`Kind::AlreadyExists`] error.
        already_exists => AlreadyExists,
        /// A [`Kind::FailedPrecondition`] error.
        failed_precondition => FailedPrecondition,
        /// A [`Kind::Unavailable`] error.
        unavailable => Unavailable,
        /// A [`Kind::NotImplemented`] error.
        not_implemented => NotImplemented,
        /// A [`Kind::Aborted`] error.
        aborted => Aborted,
        /// A [`Kind::Canceled`] error.
        canceled => Canceled,
        /// A [`Kind::DeadlineExceeded`] error.
        deadline_exceeded => DeadlineExceeded,
        /// A [`Kind::Unknown`] error.
        unknown => Unknown,
    }

    /// Attaches the underlying cause, kept for `source()` chains and logs.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with context, keeping the kind:
    /// `"parse filter"` + `"…"` becomes `"parse filter: …"`.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind callers branch on.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is a [`Kind::NotFound`] error.
    pub fn is_not_found(&self) -> bool {
        self.kind == Kind::NotFound
    }

    /// Whether this is a [`Kind::AlreadyExists`] error.
    pub fn is_already_exists(&self) -> bool {
        self.kind == Kind::AlreadyExists
    }
}

/// The containerd kind of an I/O error: the one mapping every crate uses.
///
/// ```
/// use crated_core::error::io_kind;
/// use crated_core::Kind;
///
/// let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
/// assert_eq!(io_kind(&missing), Kind::NotFound);
/// ```
pub fn io_kind(err: &std::io::Error) -> Kind {
    use std::io::ErrorKind as Io;
    match err.kind() {
        Io::NotFound => Kind::NotFound,
        Io::AlreadyExists => Kind::AlreadyExists,
        Io::InvalidInput | Io::InvalidData | Io::InvalidFilename => Kind::InvalidArgument,
        Io::PermissionDenied
        | Io::ReadOnlyFilesystem
        | Io::DirectoryNotEmpty
        | Io::NotADirectory
        | Io::IsADirectory
        | Io::CrossesDevices
        | Io::NotSeekable => Kind::FailedPrecondition,
        Io::WouldBlock
        | Io::ResourceBusy
        | Io::ConnectionRefused
        | Io::ConnectionReset
        | Io::ConnectionAborted
        | Io::NotConnected
        | Io::BrokenPipe
        | Io::StorageFull
        | Io::QuotaExceeded
        | Io::OutOfMemory => Kind::Unavailable,
        Io::TimedOut => Kind::DeadlineExceeded,
        Io::Interrupted => Kind::Aborted,
        Io::Unsupported => Kind::NotImplemented,
        _ => Kind::Unknown,
    }
}

impl Error {
    /// An I/O error while doing `what` (`"write /var/lib/…/ingest/x"`):
    /// its kind from [`io_kind`], the message `what: err`, the I/O error
    /// kept as the source.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(io_kind(&err), format!("{what}: {err}")).with_source(err)
    }
}

/// An error of a crate's own (a `thiserror` enum) that knows which of
/// containerd's kinds each of its variants is. `?` turns it into an
/// [`Error`] with that kind, its message, and itself as the source, so a
/// caller may still downcast to the crate's type.
pub trait KindError: std::error::Error + Send + Sync + 'static {
    /// The variant's containerd kind.
    fn kind(&self) -> Kind;
}

impl<E: KindError> From<E> for Error {
    fn from(err: E) -> Self {
        Self::new(err.kind(), err.to_string()).with_source(err)
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_prefixes() {
        let err = Error::invalid_argument("bad key").context("label \"a\"");
        assert_eq!(err.kind(), Kind::InvalidArgument);
        assert_eq!(err.to_string(), "label \"a\": bad key");
    }

    #[test]
    fn io_errors_keep_their_kind_and_source() {
        use std::error::Error as _;
        let err = Error::io(
            "open /x",
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        );
        assert_eq!(err.kind(), Kind::AlreadyExists);
        assert!(err.message().starts_with("open /x: "), "{err}");
        assert!(err.source().is_some());
    }

    #[test]
    fn crate_errors_convert_with_kind_and_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("blob {0} not found")]
        struct Missing(String);
        impl KindError for Missing {
            fn kind(&self) -> Kind {
                Kind::NotFound
            }
        }
        let err: Error = Missing("sha256:x".into()).into();
        assert_eq!(err.kind(), Kind::NotFound);
        assert_eq!(err.to_string(), "blob sha256:x not found");
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<Missing>());
        assert_eq!(source.map(|m| m.0.as_str()), Some("sha256:x"));
    }

    #[test]
    fn source_is_exposed() {
        use std::error::Error as _;
        let io = std::io::Error::other("disk on fire");
        let err = Error::unknown("write db").with_source(io);
        assert_eq!(
            err.source().map(|s| s.to_string()).as_deref(),
            Some("disk on fire")
        );
    }
}
