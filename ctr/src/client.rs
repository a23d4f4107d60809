//! The connection to the daemon: a client of the library over its socket,
//! in the namespace ctr was told.

use std::time::Duration;

use crated_core::Namespace;

pub use crated_client::Client;

/// Connects to `address` in `namespace`, failing after `connect_timeout`
/// if given.
pub async fn connect(
    address: &str,
    namespace: Namespace,
    connect_timeout: Option<Duration>,
) -> anyhow::Result<Client> {
    let client = Client::connect(address, connect_timeout)
        .await
        .map_err(user_error)?;
    Ok(client.with_namespace(namespace))
}

/// An error of the client library as the user sees it: its message, which
/// names what was wrong (the kind is for programs).
pub fn user_error(e: crated_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}
