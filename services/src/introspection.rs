//! The introspection service: what loaded (the registry's record), who
//! answers (a UUID kept in the plugin's root, the pid and pid namespace),
//! and the version.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crated_core::deprecation::Warnings;
use crated_core::filters::{self, Adaptor};
use crated_core::introspection::{Introspection, PluginInfo, ServerInfo, Version};
use crated_core::Result;

use crate::error::Error as ServiceError;

/// The daemon version reported to clients.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source revision the daemon was built from (`unknown` outside git).
pub const REVISION: &str = match option_env!("CRATED_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Introspection of one daemon.
pub struct IntrospectionService {
    plugins: Arc<OnceLock<Vec<PluginInfo>>>,
    uuid: String,
    warnings: Warnings,
}

impl IntrospectionService {
    /// Reports `plugins` (filled in once every plugin has loaded), the
    /// UUID kept under `dir` (created durably on first start) and the
    /// deprecations in `warnings`.
    pub fn new(
        plugins: Arc<OnceLock<Vec<PluginInfo>>>,
        dir: &Path,
        warnings: Warnings,
    ) -> Result<Self> {
        Ok(Self {
            plugins,
            uuid: server_uuid(dir)?,
            warnings,
        })
    }
}

struct Fields<'a>(&'a PluginInfo);

impl Adaptor for Fields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            ["type"] => Some(self.0.r#type.clone()).filter(|s| !s.is_empty()),
            ["id"] => Some(self.0.id.clone()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl Introspection for IntrospectionService {
    async fn plugins(&self, filters: &[String]) -> Result<Vec<PluginInfo>> {
        let filter = filters::parse_all(filters)?;
        Ok(self
            .plugins
            .get()
            .map(|all| {
                all.iter()
                    .filter(|p| filter.matches(&Fields(p)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn server(&self) -> Result<ServerInfo> {
        Ok(ServerInfo {
            uuid: self.uuid.clone(),
            pid: u64::from(std::process::id()),
            pidns: pid_namespace(),
            deprecations: self.warnings.list(),
        })
    }

    async fn version(&self) -> Result<Version> {
        Ok(Version {
            version: VERSION.to_owned(),
            revision: REVISION.to_owned(),
        })
    }
}

/// The inode of the daemon's PID namespace, as containerd 1.7 reports it;
/// 0 when it cannot be read.
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Reads the server UUID under `dir`, creating it durably on first start.
fn server_uuid(dir: &Path) -> Result<String> {
    let path = dir.join("uuid");
    match std::fs::read_to_string(&path) {
        Ok(text) if uuid::Uuid::parse_str(text.trim()).is_ok() => {
            return Ok(text.trim().to_owned())
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "server uuid file is malformed; writing a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServiceError::io("read", &path)(e).into()),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = dir.join("uuid.tmp");
    let write = ServiceError::io("write", &path);
    (|| {
        std::fs::create_dir_all(dir)?;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(id.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all())
    })()
    .map_err(write)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = server_uuid(dir.path()).unwrap();
        assert_eq!(server_uuid(dir.path()).unwrap(), first);
        assert!(uuid::Uuid::parse_str(&first).is_ok());
    }
}
