//! Proxies: `crated-core` traits implemented by calling a containerd API
//! server over gRPC. The client library uses them over a socket, and
//! `[proxy_plugins]` use the content and snapshots ones.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;

use crated_core::{Namespace, Result};

/// `message` as a request in namespace `ns`, under `lease` if given.
pub(crate) fn request<T>(
    ns: Option<&Namespace>,
    lease: Option<&str>,
    message: T,
) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(ns) = ns {
        crate::metadata::set_grpc_namespace(&mut request, ns);
    }
    if let Some(lease) = lease {
        crate::metadata::set_grpc_lease(&mut request, lease)?;
    }
    Ok(request)
}

/// A client of any size of message: the server enforces its own limits.
macro_rules! unlimited {
    ($client:expr) => {
        $client
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    };
}
pub(crate) use unlimited;
