//! Deprecated features seen in use, as containerd 1.7's warning service
//! keeps them: each kind once, with when it was last seen. Introspection's
//! `Server` reports them; containerd 1.7's ctr prints them
//! (`ctr deprecations list`, and a line on every command).
//!
//! ```
//! use crated_core::deprecation::{Warning, Warnings};
//!
//! let warnings = Warnings::default();
//! warnings.emit(Warning::CriRegistryMirrors);
//! warnings.emit(Warning::CriRegistryMirrors);
//! let seen = warnings.list();
//! assert_eq!(seen.len(), 1);
//! assert_eq!(seen[0].id, "io.containerd.deprecation/cri-registry-mirrors");
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// A deprecated feature, by containerd's warning id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Warning {
    /// The CRI's old top-level `systemd_cgroup`.
    CriSystemdCgroupV1,
    /// The CRI's `registry.mirrors`.
    CriRegistryMirrors,
    /// The CRI's `registry.auths`.
    CriRegistryAuths,
    /// The CRI's `registry.configs`.
    CriRegistryConfigs,
    /// A CRI runtime's `options.CriuPath`.
    CriCriuPath,
    /// The `io.containerd.runc.v1` runtime.
    RuntimeRuncV1,
}

impl Warning {
    /// containerd's id of the warning.
    pub fn id(self) -> &'static str {
        match self {
            Self::CriSystemdCgroupV1 => "io.containerd.deprecation/cri-systemd-cgroup-v1",
            Self::CriRegistryMirrors => "io.containerd.deprecation/cri-registry-mirrors",
            Self::CriRegistryAuths => "io.containerd.deprecation/cri-registry-auths",
            Self::CriRegistryConfigs => "io.containerd.deprecation/cri-registry-configs",
            Self::CriCriuPath => "io.containerd.deprecation/cri-criu-path",
            Self::RuntimeRuncV1 => "io.containerd.deprecation/runtime-runc-v1",
        }
    }

    /// What is deprecated, since when, and what to use instead.
    pub fn message(self) -> &'static str {
        match self {
            Self::CriSystemdCgroupV1 => {
                "`systemd_cgroup` in [plugins.\"io.containerd.grpc.v1.cri\"] has been deprecated since containerd v1.3 and is gone in v2.0; set `SystemdCgroup` in the runtime's options ([plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options])."
            }
            Self::CriRegistryMirrors => {
                "`mirrors` in [plugins.\"io.containerd.grpc.v1.cri\".registry] has been deprecated since containerd v1.5 and is gone in v2.1; describe the hosts in `config_path` (hosts.toml) instead."
            }
            Self::CriRegistryAuths => {
                "`auths` in [plugins.\"io.containerd.grpc.v1.cri\".registry] has been deprecated since containerd v1.3 and is gone in v2.1; give credentials with the pull (Kubernetes' ImagePullSecrets) instead."
            }
            Self::CriRegistryConfigs => {
                "`configs` in [plugins.\"io.containerd.grpc.v1.cri\".registry] has been deprecated since containerd v1.5 and is gone in v2.1; describe the hosts in `config_path` (hosts.toml) instead."
            }
            Self::CriCriuPath => {
                "`CriuPath` in a runtime's options ([plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.*.options]) has been deprecated since containerd v1.7 and is gone in v2.0; put criu on the $PATH instead."
            }
            Self::RuntimeRuncV1 => {
                "The `io.containerd.runc.v1` runtime has been deprecated since containerd v1.4 and is gone in v2.0; use `io.containerd.runc.v2`."
            }
        }
    }
}

/// A deprecation as reported: containerd's `DeprecationWarning`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// The warning's id (`io.containerd.deprecation/…`).
    pub id: String,
    /// What to do about it.
    pub message: String,
    /// When the feature was last seen in use.
    pub last_occurrence: SystemTime,
}

/// The deprecated features seen since the daemon started; clones share
/// them.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<Mutex<BTreeMap<Warning, SystemTime>>>);

impl Warnings {
    /// Records that `warning`'s feature is in use now.
    pub fn emit(&self, warning: Warning) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.insert(warning, SystemTime::now());
    }

    /// Every deprecation seen, in a stable order.
    pub fn list(&self) -> Vec<Deprecation> {
        let seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seen.iter()
            .map(|(warning, at)| Deprecation {
                id: warning.id().to_owned(),
                message: warning.message().to_owned(),
                last_occurrence: *at,
            })
            .collect()
    }
}
