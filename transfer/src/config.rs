//! The transfer plugin's configuration, containerd 1.7's
//! `[plugins."io.containerd.transfer.v1.local"]`.

use serde::{Deserialize, Serialize};

/// How transfers run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Layers a pull downloads at once.
    pub max_concurrent_downloads: u32,
    /// Blobs a push uploads at once.
    pub max_concurrent_uploaded_layers: u32,
    /// The platforms a transfer may unpack, each into its snapshotter: a
    /// client's unpack request is honoured only for a platform listed
    /// here (and the snapshotter it names, or this one when it names
    /// none).
    pub unpack_config: Vec<UnpackConfig>,
    /// The directory of `<host>/hosts.toml` registry configurations
    /// (containerd reads the key and leaves it unused in 1.7; crated
    /// resolves registries with it). Empty: no host configuration, so
    /// the defaults — HTTPS, plain HTTP for loopback registries.
    pub config_path: String,
}

/// One platform a transfer may unpack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnpackConfig {
    /// The platform, as `os/arch[/variant]`.
    pub platform: String,
    /// The snapshotter it unpacks into.
    pub snapshotter: String,
    /// The differ applying its layers; crated has one (`walking`), which
    /// is the only value accepted besides empty.
    pub differ: String,
}

impl Default for UnpackConfig {
    fn default() -> Self {
        Self {
            platform: crated_core::platforms::default_string(),
            snapshotter: DEFAULT_SNAPSHOTTER.to_owned(),
            differ: String::new(),
        }
    }
}

/// The snapshotter of an unpack that names none.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

impl Default for Config {
    fn default() -> Self {
        Self {
            max_concurrent_downloads: 3,
            max_concurrent_uploaded_layers: 3,
            unpack_config: vec![UnpackConfig::default()],
            config_path: String::new(),
        }
    }
}
