//! `ctr version`.

use crate::client::{user_error, Client};

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
    let introspection = &client.services().introspection;
    let v = introspection.version().await.map_err(user_error)?;
    println!("Server:");
    println!("  Version:  {}", v.version);
    println!("  Revision: {}", v.revision);
    let server = introspection.server().await.map_err(user_error)?;
    println!("  UUID: {}", server.uuid);
    if v.version != VERSION {
        eprintln!("WARNING: version mismatch");
    }
    Ok(())
}
