//! `ctr version`.

use crated_api::containerd::services::{introspection::v1 as intro, version::v1 as pb};

use crate::client::{status_error, Client};

/// This client's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Prints client and server versions, in containerd ctr's layout.
pub async fn run(client: anyhow::Result<Client>) -> anyhow::Result<()> {
    println!("Client:");
    println!("  Version:  {VERSION}");
    println!(
        "  Revision: {}",
        option_env!("CRATED_REVISION").unwrap_or("unknown")
    );
    println!();
    let client = client?;
    let mut version = pb::version_client::VersionClient::new(client.channel.clone());
    let v = version
        .version(client.request(()))
        .await
        .map_err(status_error)?
        .into_inner();
    println!("Server:");
    println!("  Version:  {}", v.version);
    println!("  Revision: {}", v.revision);
    let mut introspection =
        intro::introspection_client::IntrospectionClient::new(client.channel.clone());
    let server = introspection
        .server(client.request(()))
        .await
        .map_err(status_error)?
        .into_inner();
    println!("  UUID: {}", server.uuid);
    if v.version != VERSION {
        eprintln!("WARNING: version mismatch");
    }
    Ok(())
}
