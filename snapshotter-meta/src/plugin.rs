//! What the snapshotter plugins share: their config section and the
//! registration of one `io.containerd.snapshotter.v1` plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::error::KindError;
use crated_core::snapshots::Snapshotter;
use crated_plugin::{types, InitError, Plugin, Registration};
use serde::{Deserialize, Serialize};

use crate::Error;

/// A snapshotter's section, as containerd's: where its snapshots live.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Root of the snapshotter; empty means `<root>/<type>.<id>`.
    pub root_path: String,
}

/// An error of a snapshotter's `open`, which says whether the snapshotter
/// does not apply here at all (a filesystem it cannot use): the plugin is
/// then skipped rather than failed, as containerd lists a btrfs
/// snapshotter on ext4.
pub trait OpenError: KindError {
    /// Whether the plugin is skipped rather than failed.
    fn not_applicable(&self) -> bool {
        false
    }
}

/// The engine's own errors never mean the snapshotter does not apply.
impl OpenError for Error {}

/// Registers snapshotter `id`, opened by `open` on its root (the config's
/// `root_path`, else the plugin's root). `open` runs off the async
/// workers: it may walk the snapshot directories. An error that is
/// [`OpenError::not_applicable`] skips the plugin; any other fails it.
pub fn registration<S, E>(id: &'static str, open: fn(&Path) -> Result<S, E>) -> Registration
where
    S: Snapshotter + 'static,
    E: OpenError,
{
    Registration::new(types::SNAPSHOTTER, id, move |ctx| async move {
        let config: Config = ctx.config()?;
        let root = if config.root_path.is_empty() {
            ctx.root.clone()
        } else {
            PathBuf::from(config.root_path)
        };
        let at = root.clone();
        let opened = tokio::task::spawn_blocking(move || open(&at))
            .await
            .map_err(|source| crated_core::Error::from(Error::OpenTask { id, source }))?;
        let snapshotter: Arc<dyn Snapshotter> = match opened {
            Ok(sn) => Arc::new(sn),
            Err(err) if err.not_applicable() => return Err(InitError::Skip(err.to_string())),
            Err(err) => return Err(crated_core::Error::from(err).into()),
        };
        Ok(Plugin::new(snapshotter).export("root", root.display()))
    })
    .with_config::<Config>()
}
