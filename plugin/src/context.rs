//! What an init sees: where its files go, its config section, the
//! daemon's settings, and the plugins loaded before it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crated_core::Error;
use serde::de::DeserializeOwned;

use crate::registry::{Instances, Settings};
use crate::{Id, PluginInfo, Type};

/// The context of one plugin's init.
pub struct InitContext {
    pub(crate) r#type: &'static str,
    pub(crate) id: String,
    /// Persistent root of this plugin: `<root>/<type>.<id>`.
    pub root: PathBuf,
    /// State root of this plugin: `<state>/<type>.<id>`.
    pub state: PathBuf,
    pub(crate) settings: Arc<Settings>,
    pub(crate) section: Option<toml::Table>,
    pub(crate) loaded: Instances,
    pub(crate) infos: Arc<OnceLock<Vec<PluginInfo>>>,
}

impl InitContext {
    /// The plugin's type.
    pub fn r#type(&self) -> &'static str {
        self.r#type
    }

    /// The plugin's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `type.id`.
    pub fn uri(&self) -> String {
        format!("{}.{}", self.r#type, self.id)
    }

    /// The daemon's persistent root.
    pub fn daemon_root(&self) -> &Path {
        &self.settings.root
    }

    /// The daemon's state directory.
    pub fn daemon_state(&self) -> &Path {
        &self.settings.state
    }

    /// The gRPC socket the daemon serves.
    pub fn grpc_address(&self) -> &Path {
        &self.settings.grpc_address
    }

    /// The ttrpc socket the daemon serves.
    pub fn ttrpc_address(&self) -> &Path {
        &self.settings.ttrpc_address
    }

    /// This plugin's config section decoded into `C`: missing keys take
    /// `C`'s defaults, keys `C` does not know are logged as warnings, and a
    /// bad value is an InvalidArgument naming the section.
    pub fn config<C: DeserializeOwned + Default>(&self) -> Result<C, Error> {
        let Some(table) = &self.section else {
            return Ok(C::default());
        };
        let mut unknown = Vec::new();
        let decoded = serde_ignored::deserialize(table.clone(), |path| {
            unknown.push(path.to_string());
        });
        let config = decoded.map_err(|source: toml::de::Error| crate::error::Error::Config {
            plugin: self.uri(),
            message: source.message().trim().to_owned(),
            source,
        })?;
        for key in unknown {
            tracing::warn!(plugin = %self.uri(), key, "unknown key in plugin config; ignored");
        }
        Ok(config)
    }

    /// The named timeout `key` (containerd's `io.containerd.timeout.*`)
    /// from `[timeouts]`, or `default`.
    pub fn timeout(&self, key: &str, default: Duration) -> Duration {
        self.settings.timeout(key, default)
    }

    /// The value of the last loaded plugin of `type` (a later one of a type
    /// overrides an earlier one, as a content proxy does the local store);
    /// FailedPrecondition naming the type if none loaded.
    pub fn get<T: Clone + 'static>(&self, r#type: Type<T>) -> Result<T, Error> {
        self.loaded.get(r#type)
    }

    /// The value of plugin `id`; FailedPrecondition if it did not load.
    pub fn get_by_id<T: Clone + 'static>(&self, id: Id<T>) -> Result<T, Error> {
        self.loaded.get_by_id(id)
    }

    /// Every loaded plugin of `type`, by id, in load order.
    pub fn get_all<T: Clone + 'static>(&self, r#type: Type<T>) -> Vec<(String, T)> {
        self.loaded.get_all(r#type)
    }

    /// Every plugin's outcome, filled in once all inits have run (what the
    /// introspection service reports).
    pub fn plugin_infos(&self) -> Arc<OnceLock<Vec<PluginInfo>>> {
        Arc::clone(&self.infos)
    }
}
