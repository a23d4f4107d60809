//! A task's bundle, as containerd's runtime v2 lays it out:
//! `<state>/io.containerd.runtime.v2.task/<ns>/<id>/` holds `config.json`
//! (the OCI spec), `rootfs/` (mounted by the shim), the shim's `address`,
//! `log` fifo and `shim-binary-path`; `work` links to
//! `<root>/io.containerd.runtime.v2.task/<ns>/<id>/`, the shim's
//! persistent working directory.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crated_core::{identifiers, Namespace};

use crate::error::{Error, Result};

/// The plugin directory name under root and state.
pub const PLUGIN_DIR: &str = "io.containerd.runtime.v2.task";

/// A task's bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The task (container) id.
    pub id: String,
    /// Its namespace.
    pub namespace: Namespace,
    /// The bundle directory (under state).
    pub path: PathBuf,
    /// The work directory (under root).
    pub work: PathBuf,
}

/// Whether the OCI spec (JSON) puts the container in a user namespace.
fn spec_has_user_namespace(spec: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(default)]
        namespaces: Vec<Namespace>,
    }
    #[derive(serde::Deserialize)]
    struct Namespace {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_slice::<Spec>(spec)
        .ok()
        .and_then(|s| s.linux)
        .is_some_and(|l| l.namespaces.iter().any(|n| n.kind == "user"))
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io("create", path, e))
}

impl Bundle {
    /// Where the bundle of `ns`/`id` lives.
    pub fn locate(root: &Path, state: &Path, ns: &Namespace, id: &str) -> Self {
        Self {
            id: id.to_owned(),
            namespace: ns.clone(),
            path: state.join(PLUGIN_DIR).join(ns.as_str()).join(id),
            work: root.join(PLUGIN_DIR).join(ns.as_str()).join(id),
        }
    }

    /// Creates the bundle with `spec` as its `config.json`; AlreadyExists
    /// if there is one (a task with this id exists).
    pub fn create(
        root: &Path,
        state: &Path,
        ns: &Namespace,
        id: &str,
        spec: &[u8],
    ) -> Result<Self> {
        identifiers::validate(id).map_err(|e| Error::InvalidTaskId {
            id: id.to_owned(),
            source: Box::new(e),
        })?;
        let bundle = Self::locate(root, state, ns, id);
        if let Some(parent) = bundle.path.parent() {
            mkdir(parent, 0o711)?;
        }
        if let Some(parent) = bundle.work.parent() {
            mkdir(parent, 0o711)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&bundle.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::BundleExists {
                    path: bundle.path,
                    id: id.to_owned(),
                    namespace: ns.to_string(),
                })
            }
            Err(e) => return Err(Error::io("create", bundle.path, e)),
        }
        let made = (|| {
            // Only root reaches a container's rootfs and config through
            // its bundle (CVE-2021-41103). A container in a user namespace
            // is the exception, as in containerd: its root is not the
            // host's, and runc's init must traverse into rootfs as it.
            if spec_has_user_namespace(spec) {
                std::fs::set_permissions(&bundle.path, std::fs::Permissions::from_mode(0o711))
                    .map_err(|e| Error::io("chmod", &bundle.path, e))?;
            }
            // A stale work dir of a task that was not cleaned up goes.
            if bundle.work.exists() {
                std::fs::remove_dir_all(&bundle.work)
                    .map_err(|e| Error::io("remove", &bundle.work, e))?;
            }
            mkdir(&bundle.work, 0o711)?;
            std::os::unix::fs::symlink(&bundle.work, bundle.path.join("work"))
                .map_err(|e| Error::io("link work in", &bundle.path, e))?;
            mkdir(&bundle.path.join("rootfs"), 0o711)?;
            let config = bundle.path.join("config.json");
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&config)
                .and_then(|mut file| std::io::Write::write_all(&mut file, spec))
                .map_err(|e| Error::io("write", config, e))
        })();
        if let Err(err) = made {
            let _ = bundle.delete();
            return Err(err);
        }
        Ok(bundle)
    }

    /// Every bundle under `state`, as (namespace, id).
    pub fn list(state: &Path) -> Result<Vec<(Namespace, String)>> {
        let base = state.join(PLUGIN_DIR);
        let mut out = Vec::new();
        let namespaces = match std::fs::read_dir(&base) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("read", base, e)),
        };
        for ns in namespaces.flatten() {
            let Ok(namespace) = Namespace::new(ns.file_name().to_string_lossy().into_owned())
            else {
                continue;
            };
            let Ok(ids) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for id in ids.flatten() {
                let id = id.file_name().to_string_lossy().into_owned();
                if identifiers::validate(&id).is_ok() {
                    out.push((namespace.clone(), id));
                }
            }
        }
        Ok(out)
    }

    /// The shim's ttrpc address, once started.
    pub fn address(&self) -> Option<String> {
        std::fs::read_to_string(self.path.join("address"))
            .ok()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
    }

    /// The shim binary the task was started with.
    pub fn shim_binary(&self) -> Option<PathBuf> {
        std::fs::read_to_string(self.path.join("shim-binary-path"))
            .ok()
            .map(|p| PathBuf::from(p.trim()))
            .filter(|p| p.is_absolute())
    }

    /// Removes the bundle: whatever is still mounted on its rootfs (a shim
    /// that died without unmounting), the work dir, the bundle dir. umount
    /// may be retried for a second on a busy mount: off the async worker.
    pub fn delete(&self) -> Result<()> {
        crated_core::blocking::off_worker(|| self.delete_here())
    }

    fn delete_here(&self) -> Result<()> {
        let rootfs = self.path.join("rootfs");
        if crated_core::mount::is_mountpoint(&rootfs).unwrap_or(false) {
            crated_core::mount::unmount_all(&rootfs).map_err(|e| Error::Unmount {
                path: rootfs.clone(),
                source: Box::new(e),
            })?;
        }
        // Nothing else should be mounted in a bundle, but a shim killed
        // half-way through a create may have left ID-mapped copies of
        // volumes or layers (see shim-runc's `idmapped`): removing files
        // through them would remove the volume's or layer's own.
        crated_core::mount::unmount_beneath(&self.path).map_err(|e| Error::Unmount {
            path: self.path.clone(),
            source: Box::new(e),
        })?;
        for dir in [&self.work, &self.path] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", dir, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bundle_has_containerds_layout_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let ns = Namespace::new("default").unwrap();
        let b = Bundle::create(&root, &state, &ns, "t1", b"{}").unwrap();
        assert_eq!(
            b.path,
            state.join("io.containerd.runtime.v2.task/default/t1")
        );
        assert_eq!(std::fs::read(b.path.join("config.json")).unwrap(), b"{}");
        assert!(b.path.join("rootfs").is_dir());
        assert_eq!(std::fs::read_link(b.path.join("work")).unwrap(), b.work);
        let err = Bundle::create(&root, &state, &ns, "t1", b"{}").unwrap_err();
        assert!(matches!(err, crate::Error::BundleExists { .. }), "{err}");
        assert_eq!(
            crated_core::error::KindError::kind(&err),
            crated_core::Kind::AlreadyExists
        );
        assert_eq!(
            Bundle::list(&state).unwrap(),
            vec![(ns.clone(), "t1".to_owned())]
        );
        b.delete().unwrap();
        assert!(!b.path.exists() && !b.work.exists());
        assert!(Bundle::create(&root, &state, &ns, "../x", b"{}").is_err());
    }

    #[test]
    fn only_root_reaches_into_a_bundle() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let ns = Namespace::new("default").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        let b = Bundle::create(&root, &state, &ns, "closed", b"{}").unwrap();
        assert_eq!(mode(&b.path), 0o700);
        assert_eq!(mode(&b.path.join("config.json")), 0o600);
        // In a user namespace, the container's root must get through.
        let userns = br#"{"linux":{"namespaces":[{"type":"mount"},{"type":"user"}]}}"#;
        let u = Bundle::create(&root, &state, &ns, "userns", userns).unwrap();
        assert_eq!(mode(&u.path), 0o711);
        assert_eq!(mode(&u.path.join("config.json")), 0o600);
    }
}
