//! What a daemon says about itself: its plugins and their outcome, its
//! identity, its version — containerd's introspection and version
//! services as a trait over plain types.

use std::collections::BTreeMap;

use crate::{Kind, Result};

/// How a plugin's init ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginStatus {
    /// Loaded and serving.
    Ok,
    /// Does not apply here (not on btrfs, compiled out, …), with the reason.
    Skipped(String),
    /// Init failed, with the error's kind and message.
    Failed(Kind, String),
}

/// One plugin as introspection reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// containerd plugin type, e.g. `io.containerd.snapshotter.v1`.
    pub r#type: String,
    /// Id, unique within the type.
    pub id: String,
    /// The plugin types it needs loaded first.
    pub requires: Vec<String>,
    /// What it exports (its root, a path, settings).
    pub exports: BTreeMap<String, String>,
    /// Capabilities it announces.
    pub capabilities: Vec<String>,
    /// How its init ended.
    pub status: PluginStatus,
}

/// Who answers: containerd's `Introspection.Server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// A UUID kept across restarts of one daemon root.
    pub uuid: String,
    /// The daemon's pid.
    pub pid: u64,
    /// The inode of the daemon's PID namespace (0 when unknown).
    pub pidns: u64,
    /// Deprecated features seen in use since the daemon started
    /// (containerd 1.7).
    pub deprecations: Vec<crate::deprecation::Deprecation>,
}

/// The daemon's version, as containerd's version service reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Version {
    /// Release version.
    pub version: String,
    /// Source revision it was built from.
    pub revision: String,
}

/// The introspection and version services.
#[async_trait::async_trait]
pub trait Introspection: Send + Sync {
    /// Plugins matching any of `filters` (fields `type`, `id`); none = all.
    async fn plugins(&self, filters: &[String]) -> Result<Vec<PluginInfo>>;
    /// The server's identity.
    async fn server(&self) -> Result<ServerInfo>;
    /// The server's version.
    async fn version(&self) -> Result<Version>;
}
