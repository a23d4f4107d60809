//! Pod networking: a network namespace per pod, set up and torn down by
//! the node's CNI configuration (the first in `conf_dir`), as containerd's
//! CRI does. The configuration is read when a pod needs it, so a CNI
//! config written after the daemon started (as a network add-on does) is
//! picked up.

use std::path::{Path, PathBuf};

use crated_core::{Error, Result};

use crate::config::CniConfig;
use crate::runtime::v1 as pb;
/// What a pod's network came to.
#[derive(Debug, Clone, Default)]
pub struct PodNetworkState {
    /// Its network namespace (`None`: the node's).
    pub netns: Option<PathBuf>,
    /// Its IPs, the primary first.
    pub ips: Vec<String>,
}

impl PodNetworkState {
    /// A pod on the node's network.
    pub fn host() -> Self {
        Self::default()
    }
}

/// The CRI's pod networking.
pub struct Network {
    conf_dir: PathBuf,
}

impl Network {
    /// Networking with `config`, namespaces under `netns_dir`.
    pub fn new(config: &CniConfig, _netns_dir: PathBuf) -> Self {
        Self {
            conf_dir: PathBuf::from(&config.conf_dir),
        }
    }

    fn not_built(&self) -> Error {
        Error::not_implemented(format!(
            "pod networks (CNI with {}) are not built yet in crated: run pods with the node's network",
            self.conf_dir.display()
        ))
    }

    /// Ok when pods can be networked (RuntimeStatus' NetworkReady).
    pub async fn status(&self) -> Result<()> {
        Err(self.not_built())
    }

    /// A new network namespace for pod `id`, networked by CNI.
    pub async fn setup(
        &self,
        _id: &str,
        _config: &pb::PodSandboxConfig,
    ) -> Result<PodNetworkState> {
        Err(self.not_built())
    }

    /// Tears down pod `id`'s network and removes its namespace.
    pub async fn teardown(
        &self,
        _id: &str,
        _config: &pb::PodSandboxConfig,
        _netns: &Path,
    ) -> Result<()> {
        Err(self.not_built())
    }
}
