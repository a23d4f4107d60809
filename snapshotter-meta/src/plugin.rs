//! What the snapshotter plugins share: their config section and the
//! registration of one `io.containerd.snapshotter.v1` plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::snapshots::Snapshotter;
use crated_core::Result;
use crated_plugin::{types, InitError, Plugin, Registration};
use serde::{Deserialize, Serialize};

/// A snapshotter's section, as containerd's: where its snapshots live.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Root of the snapshotter; empty means `<root>/<type>.<id>`.
    pub root_path: String,
}

/// Registers snapshotter `id`, opened by `open` on its root (the config's
/// `root_path`, else the plugin's root). `open` runs off the async
/// workers: it may walk the snapshot directories. A FailedPrecondition
/// from `open` (a filesystem the snapshotter cannot use) skips the plugin,
/// as containerd lists a btrfs snapshotter on ext4.
pub fn registration<S>(id: &'static str, open: fn(&Path) -> Result<S>) -> Registration
where
    S: Snapshotter + 'static,
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
            .map_err(|e| crated_core::Error::unknown(format!("open snapshotter {id}: {e}")))?;
        let snapshotter: Arc<dyn Snapshotter> = match opened {
            Ok(sn) => Arc::new(sn),
            Err(err) if err.kind() == crated_core::Kind::FailedPrecondition => {
                return Err(InitError::Skip(err.message().to_owned()))
            }
            Err(err) => return Err(err.into()),
        };
        Ok(Plugin::new(snapshotter).export("root", root.display()))
    })
    .with_config::<Config>()
}
