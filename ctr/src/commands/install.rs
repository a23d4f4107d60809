//! `ctr install`: an image's binaries into the daemon's opt directory.

use std::path::PathBuf;

use clap::Args;
use crated_client::install::{install, InstallOptions};

use crate::client::Client;

/// `ctr install` arguments.
#[derive(Args)]
pub struct InstallArgs {
    /// Install libs from the image.
    #[arg(short, long)]
    libs: bool,
    /// Replace any binaries or libs in the opt directory.
    #[arg(short, long)]
    replace: bool,
    /// Set an optional install path other than the managed opt directory.
    #[arg(long)]
    path: Option<PathBuf>,
    /// The image (its content must be in the store: `ctr content fetch`).
    reference: String,
}

/// Runs `ctr install`.
pub async fn run(client: Client, args: InstallArgs) -> anyhow::Result<()> {
    let options = InstallOptions {
        libs: args.libs,
        replace: args.replace,
        path: args.path,
    };
    install(&client, &args.reference, &options)
        .await
        .map_err(crate::client::user_error)?;
    Ok(())
}
