//! The connection to the daemon: a gRPC channel over its unix socket, with
//! the namespace header and the deadline on every request.

use std::time::Duration;

use anyhow::Context as _;
use crated_core::Namespace;
use tonic::transport::Channel;

/// A connected client.
pub struct Client {
    /// The channel, shared by every service client.
    pub channel: Channel,
    /// The namespace requests are made in.
    pub namespace: Namespace,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to `address`, failing after `connect_timeout` if given.
    pub async fn connect(
        address: &str,
        namespace: Namespace,
        timeout: Option<Duration>,
        connect_timeout: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let path = crated_api::dial::socket_path(address).to_owned();
        let dial = crated_api::dial::connect(address);
        let channel = match connect_timeout {
            Some(limit) => tokio::time::timeout(limit, dial).await.map_err(|_| {
                anyhow::anyhow!("failed to dial {path:?}: connect timeout of {limit:?} expired")
            })?,
            None => dial.await,
        }
        .with_context(|| format!("failed to dial {path:?}"))?;
        Ok(Self {
            channel,
            namespace,
            timeout,
        })
    }

    /// Wraps `message` in a request carrying the namespace and deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        crated_api::metadata::set_grpc_namespace(&mut request, &self.namespace);
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        request
    }
}

/// A gRPC status as a user-facing error: the server's message, which names
/// what was wrong; transport failures keep tonic's description.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    let err = crated_api::from_grpc(status);
    anyhow::anyhow!("{}", err.message())
}

/// An error of the client library as the user sees it: its message, which
/// names what was wrong (the kind is for programs).
pub fn user_error(e: crated_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}
