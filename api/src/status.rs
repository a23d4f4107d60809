//! The mapping of [`crated_core::Kind`] to gRPC and ttrpc status codes.
//!
//! It is the same table as containerd's `errdefs.ToGRPC`/`FromGRPC`, so a Go
//! client's `errdefs.IsNotFound(err)` holds for our `Kind::NotFound`, and an
//! error from a Go shim or daemon comes back with the kind it was sent with.

use crated_core::{Error, Kind};

/// The gRPC code for `kind`.
pub fn grpc_code(kind: Kind) -> tonic::Code {
    match kind {
        Kind::InvalidArgument => tonic::Code::InvalidArgument,
        Kind::NotFound => tonic::Code::NotFound,
        Kind::AlreadyExists => tonic::Code::AlreadyExists,
        Kind::FailedPrecondition => tonic::Code::FailedPrecondition,
        Kind::Unavailable => tonic::Code::Unavailable,
        Kind::NotImplemented => tonic::Code::Unimplemented,
        Kind::Aborted => tonic::Code::Aborted,
        Kind::Canceled => tonic::Code::Cancelled,
        Kind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Kind::Unknown => tonic::Code::Unknown,
    }
}

/// The kind a gRPC `code` stands for; codes containerd never sends are `Unknown`.
pub fn kind_of_grpc(code: tonic::Code) -> Kind {
    match code {
        tonic::Code::InvalidArgument => Kind::InvalidArgument,
        tonic::Code::NotFound => Kind::NotFound,
        tonic::Code::AlreadyExists => Kind::AlreadyExists,
        tonic::Code::FailedPrecondition => Kind::FailedPrecondition,
        tonic::Code::Unavailable => Kind::Unavailable,
        tonic::Code::Unimplemented => Kind::NotImplemented,
        tonic::Code::Aborted => Kind::Aborted,
        tonic::Code::Cancelled => Kind::Canceled,
        tonic::Code::DeadlineExceeded => Kind::DeadlineExceeded,
        _ => Kind::Unknown,
    }
}

/// An error as a gRPC status, message unchanged.
pub fn to_grpc(err: Error) -> tonic::Status {
    tonic::Status::new(grpc_code(err.kind()), err.message().to_owned())
}

/// A gRPC status as an error of the matching kind.
///
/// Transport failures (a daemon that is not running) arrive as `Unavailable`
/// with tonic's description, which names the cause.
pub fn from_grpc(status: tonic::Status) -> Error {
    Error::new(kind_of_grpc(status.code()), status.message().to_owned())
}

/// An error as a ttrpc error carrying the status.
pub fn to_ttrpc(err: Error) -> ttrpc::Error {
    let code = match err.kind() {
        Kind::InvalidArgument => ttrpc::Code::INVALID_ARGUMENT,
        Kind::NotFound => ttrpc::Code::NOT_FOUND,
        Kind::AlreadyExists => ttrpc::Code::ALREADY_EXISTS,
        Kind::FailedPrecondition => ttrpc::Code::FAILED_PRECONDITION,
        Kind::Unavailable => ttrpc::Code::UNAVAILABLE,
        Kind::NotImplemented => ttrpc::Code::UNIMPLEMENTED,
        Kind::Aborted => ttrpc::Code::ABORTED,
        Kind::Canceled => ttrpc::Code::CANCELLED,
        Kind::DeadlineExceeded => ttrpc::Code::DEADLINE_EXCEEDED,
        Kind::Unknown => ttrpc::Code::UNKNOWN,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, err.message()))
}

/// A ttrpc error as an error of the matching kind.
pub fn from_ttrpc(err: ttrpc::Error) -> Error {
    match err {
        ttrpc::Error::RpcStatus(status) => {
            // ttrpc's codes are numbered as gRPC's.
            let code = tonic::Code::from_i32(status.code.value());
            Error::new(kind_of_grpc(code), status.message.clone())
        }
        other => crate::error::Error::Ttrpc(other).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [Kind; 10] = [
        Kind::InvalidArgument,
        Kind::NotFound,
        Kind::AlreadyExists,
        Kind::FailedPrecondition,
        Kind::Unavailable,
        Kind::NotImplemented,
        Kind::Aborted,
        Kind::Canceled,
        Kind::DeadlineExceeded,
        Kind::Unknown,
    ];

    #[test]
    fn every_kind_survives_grpc() {
        for kind in KINDS {
            let err = from_grpc(to_grpc(Error::new(kind, "namespace \"x\" not found")));
            assert_eq!(err.kind(), kind);
            assert_eq!(err.message(), "namespace \"x\" not found");
        }
    }

    #[test]
    fn every_kind_survives_ttrpc() {
        for kind in KINDS {
            let err = from_ttrpc(to_ttrpc(Error::new(kind, "boom")));
            assert_eq!(err.kind(), kind);
            assert_eq!(err.message(), "boom");
        }
    }

    #[test]
    fn codes_match_containerd() {
        assert_eq!(grpc_code(Kind::NotImplemented), tonic::Code::Unimplemented);
        assert_eq!(grpc_code(Kind::Canceled), tonic::Code::Cancelled);
        assert_eq!(kind_of_grpc(tonic::Code::Internal), Kind::Unknown);
    }
}
