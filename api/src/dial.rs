//! gRPC channels over unix sockets, as every containerd client dials.

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The socket path of an address given as a path or `unix://path`.
pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn endpoint() -> Endpoint {
    // tonic needs a URI; the connector ignores it and dials the socket.
    Endpoint::from_static("http://crated.sock")
}

/// Connects to the gRPC server at `address` now.
pub async fn connect(address: &str) -> Result<Channel, tonic::transport::Error> {
    let path = socket_path(address).to_owned();
    endpoint()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
}

/// A channel to `address` that connects on first use (and reconnects), for
/// plugins whose server may start after the daemon.
pub fn lazy(address: &str) -> Channel {
    let path = socket_path(address).to_owned();
    endpoint().connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            tokio::net::UnixStream::connect(path)
                .await
                .map(TokioIo::new)
        }
    }))
}
