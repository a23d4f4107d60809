//! The wire layer's own failures: malformed requests and replies, headers,
//! and the write stream of a content proxy.

use crated_core::error::KindError;
use crated_core::Kind;

/// What went wrong translating between the wire and `crated-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request or reply lacks a message it must carry.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A size or offset on the wire is negative.
    #[error("{field} {value} must not be negative")]
    Negative {
        /// The field.
        field: String,
        /// Its value.
        value: i64,
    },
    /// A size does not fit the wire's signed 64 bits.
    #[error("{field} {value} is too large")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A namespaced call without the namespace header.
    #[error("namespace is required")]
    NamespaceRequired,
    /// A header value that is not ASCII.
    #[error("{0} header is not valid ascii")]
    HeaderNotAscii(&'static str),
    /// A lease id that cannot travel in a header.
    #[error("lease id {0:?} is not a valid header value")]
    LeaseHeader(String),
    /// A snapshot kind this version does not know.
    #[error("unknown snapshot kind {0}")]
    UnknownSnapshotKind(i32),
    /// A shim's event names another namespace than its request.
    #[error("envelope namespace {envelope:?} differs from the request's {header:?}")]
    NamespaceMismatch {
        /// The envelope's namespace.
        envelope: String,
        /// The request's.
        header: String,
    },
    /// The daemon answered with a record that does not parse.
    #[error("the daemon sent a bad {what}: {source}")]
    BadReply {
        /// What was sent.
        what: &'static str,
        /// Why it does not parse.
        #[source]
        source: crated_core::Error,
    },
    /// The daemon answered without what the call returns.
    #[error("the daemon sent no {0}")]
    MissingReply(String),
    /// A read of a blob returned more than asked.
    #[error("read of {0} returned more than asked")]
    OverlongRead(String),
    /// A proxy's content write stream ended early.
    #[error("content write stream {0}")]
    WriteStream(&'static str),
    /// A write on a content writer already closed or committed.
    #[error("content writer is closed")]
    WriterClosed,
    /// A truncate the content protocol cannot express.
    #[error("truncate of ingest {reference:?} to {size} bytes: only 0 is supported over grpc")]
    Truncate {
        /// The ingest.
        reference: String,
        /// The size asked for.
        size: u64,
    },
    /// The daemon committed another digest than expected.
    #[error("unexpected commit digest {got}, expected {expected}")]
    CommitDigest {
        /// What the daemon committed.
        got: String,
        /// What was expected.
        expected: String,
    },
    /// A ttrpc failure that is not a status from the other side: the
    /// connection, or the call's own deadline.
    #[error("ttrpc: {0}")]
    Ttrpc(#[source] ttrpc::Error),
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Missing(_)
            | Error::Negative { .. }
            | Error::TooLarge { .. }
            | Error::HeaderNotAscii(_)
            | Error::LeaseHeader(_)
            | Error::UnknownSnapshotKind(_)
            | Error::NamespaceMismatch { .. } => Kind::InvalidArgument,
            Error::NamespaceRequired | Error::WriterClosed | Error::CommitDigest { .. } => {
                Kind::FailedPrecondition
            }
            Error::BadReply { .. } | Error::MissingReply(_) | Error::OverlongRead(_) => {
                Kind::Unknown
            }
            Error::WriteStream(_) => Kind::Unavailable,
            Error::Truncate { .. } => Kind::NotImplemented,
            // A deadline of the call is told apart by the caller, who
            // knows when it set it (runtime-v2 does).
            Error::Ttrpc(_) => Kind::Unavailable,
        }
    }
}
