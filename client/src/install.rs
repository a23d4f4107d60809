//! Installing an image's binaries on this host (containerd's
//! `Client.Install`, behind `ctr install`): the `bin/` (and `lib/`) files of
//! the image's layers for this platform go into the daemon's opt directory,
//! where crated looks first for shims and gives shims their PATH (so an
//! installed runc is the one they run). The image stays an ordinary image:
//! versions are pulled, tagged and removed as any other.
//!
//! ```no_run
//! # async fn f(client: crated_client::Client) -> crated_core::Result<()> {
//! use crated_client::install::{install, InstallOptions};
//! let written = install(&client, "127.0.0.1:5000/tools/runc:1.1", &InstallOptions::default()).await?;
//! println!("{written:?}");
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::PathBuf;

use crated_core::content::ReaderAt;
use crated_core::images::walk::{self, Node};
use crated_core::introspection::PluginStatus;
use crated_core::platforms::default_matcher;
use crated_core::Result;
use crated_differ::install as files;
use crated_differ::BlobReader;

use crate::{Client, Error};

/// What [`install`] takes: `ctr install`'s flags.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Also install the image's `lib/` (`--libs`).
    pub libs: bool,
    /// Replace files already installed (`--replace`); else an existing file
    /// fails the install before anything is written.
    pub replace: bool,
    /// Install under this directory instead of the daemon's opt directory
    /// (`--path`).
    pub path: Option<PathBuf>,
}

/// The daemon's opt directory, as its opt plugin exports it.
pub async fn opt_path(client: &Client) -> Result<PathBuf> {
    let plugins = client
        .services()
        .introspection
        .plugins(&["id==opt".to_owned()])
        .await?;
    let [plugin] = plugins.as_slice() else {
        return Err(Error::OptNotEnabled.into());
    };
    match &plugin.status {
        PluginStatus::Ok => {}
        PluginStatus::Skipped(why) | PluginStatus::Failed(_, why) => {
            return Err(Error::OptFailed {
                reason: why.clone(),
            }
            .into())
        }
    }
    let path = plugin
        .exports
        .get("path")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or(Error::OptPathNotExported)?;
    Ok(path)
}

/// Installs the image `name`'s binaries (its manifest for this platform);
/// returns the paths written. Every layer must be in the content store
/// (`ctr content fetch` or a pull first).
pub async fn install(
    client: &Client,
    name: &str,
    options: &InstallOptions,
) -> Result<Vec<PathBuf>> {
    let ns = client.namespace();
    let target = crate::images::target(client, name).await?;
    let store = &*client.services().content;
    let manifest = walk::manifest(store, ns, &Node::from(&target), &default_matcher())
        .await
        .map_err(|e| Error::Image {
            name: name.to_owned(),
            source: Box::new(e),
        })?;
    let mut layers: Vec<Box<dyn ReaderAt>> = Vec::with_capacity(manifest.layers.len());
    for layer in &manifest.layers {
        let reader =
            store
                .reader_at(ns, &layer.digest)
                .await
                .map_err(|e| Error::LayerNotInStore {
                    name: name.to_owned(),
                    digest: layer.digest.clone(),
                    source: Box::new(e),
                })?;
        layers.push(reader);
    }
    let dest = match &options.path {
        Some(path) => path.clone(),
        None => opt_path(client).await?,
    };
    if !dest.is_absolute() {
        return Err(Error::InstallPathNotAbsolute { path: dest }.into());
    }
    let runtime = tokio::runtime::Handle::current();
    let file_options = files::InstallOptions {
        libs: options.libs,
        replace: options.replace,
    };
    let image = name.to_owned();
    let installed = tokio::task::spawn_blocking(move || {
        let count = layers.len();
        files::install(
            &dest,
            count,
            |index| {
                let layer = layers.get(index).ok_or_else(|| Error::InstallLayerIndex {
                    name: image.clone(),
                    index,
                    count,
                })?;
                Ok(Box::new(BlobReader::new(runtime.clone(), &**layer)) as Box<dyn Read + '_>)
            },
            &file_options,
        )
    })
    .await
    .map_err(|source| Error::Blocking {
        what: format!("install {name}"),
        source,
    })?
    .map_err(|e| Error::Install {
        name: name.to_owned(),
        source: Box::new(e),
    })?;
    Ok(installed)
}
