//! The namespace carried in request metadata.
//!
//! containerd clients put the namespace in the `containerd-namespace` gRPC
//! header and the `containerd-namespace-ttrpc` ttrpc metadata key. A
//! namespaced service reads it with these helpers, which validate it and
//! fall back to nothing: a namespaced call without a namespace is an error,
//! as in containerd.

use crated_core::namespaces::{GRPC_HEADER, TTRPC_HEADER};
use crated_core::{Namespace, Result};

use crate::error::Error as WireError;

/// The namespace of a gRPC request.
///
/// Missing: FailedPrecondition (`namespace is required`), like containerd's
/// `namespaces.NamespaceRequired`; malformed: InvalidArgument.
pub fn grpc_namespace<T>(request: &tonic::Request<T>) -> Result<Namespace> {
    let value = request
        .metadata()
        .get(GRPC_HEADER)
        .ok_or(WireError::NamespaceRequired)?;
    let name = value
        .to_str()
        .map_err(|_| WireError::HeaderNotAscii("namespace"))?;
    Namespace::new(name)
}

/// The lease a gRPC request names in `containerd-lease`, if any.
pub fn grpc_lease<T>(request: &tonic::Request<T>) -> Result<Option<String>> {
    match request.metadata().get(crated_core::leases::GRPC_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.to_owned()))
            .map_err(|_| WireError::HeaderNotAscii("lease").into()),
    }
}

/// Puts `lease` in the gRPC metadata of an outgoing request.
pub fn set_grpc_lease<T>(request: &mut tonic::Request<T>, lease: &str) -> Result<()> {
    let value = lease
        .parse()
        .map_err(|_| WireError::LeaseHeader(lease.to_owned()))?;
    request
        .metadata_mut()
        .insert(crated_core::leases::GRPC_HEADER, value);
    Ok(())
}

/// Puts `namespace` in the gRPC metadata of an outgoing request.
pub fn set_grpc_namespace<T>(request: &mut tonic::Request<T>, namespace: &Namespace) {
    // A validated namespace is ASCII alphanumerics and `._-`, always a valid
    // header value.
    if let Ok(value) = namespace.as_str().parse() {
        request.metadata_mut().insert(GRPC_HEADER, value);
    }
}

/// The namespace of a ttrpc request.
pub fn ttrpc_namespace(ctx: &ttrpc::r#async::TtrpcContext) -> Result<Namespace> {
    let name = ctx
        .metadata
        .get(TTRPC_HEADER)
        .and_then(|values| values.first())
        .ok_or(WireError::NamespaceRequired)?;
    Namespace::new(name.clone())
}

/// A ttrpc client context carrying `namespace` and a timeout.
pub fn ttrpc_context(
    namespace: &Namespace,
    timeout: std::time::Duration,
) -> ttrpc::context::Context {
    let mut ctx =
        ttrpc::context::with_timeout(i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX));
    ctx.add(TTRPC_HEADER.to_owned(), namespace.as_str().to_owned());
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_round_trip() {
        let ns = Namespace::new("k8s.io").unwrap();
        let mut req = tonic::Request::new(());
        set_grpc_namespace(&mut req, &ns);
        assert_eq!(grpc_namespace(&req).unwrap(), ns);
    }

    #[test]
    fn grpc_missing_or_bad() {
        let req = tonic::Request::new(());
        assert_eq!(
            grpc_namespace(&req).unwrap_err().kind(),
            crated_core::Kind::FailedPrecondition
        );
        let mut req = tonic::Request::new(());
        req.metadata_mut()
            .insert(GRPC_HEADER, "Foo..x".parse().unwrap());
        assert_eq!(
            grpc_namespace(&req).unwrap_err().kind(),
            crated_core::Kind::InvalidArgument
        );
    }
}
