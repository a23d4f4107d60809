//! Image volumes (Kubernetes' `image` volume source, KEP 4639): a CRI
//! mount that names an image instead of a host path. The image's files
//! are mounted once per pod, read-only, at
//! `<state>/image-volumes/<pod id>/<image target digest>` (containerd
//! 2.x's layout), and every container of the pod that mounts the image
//! bind-mounts that directory, or its `image_sub_path`. The mount is a
//! view snapshot of the image held by a lease named after the pod; it is
//! unmounted and removed when the pod stops, and the lease goes with the
//! pod.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::{Error, Result};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};

use crate::images::CriImage;
use crate::runtime::v1 as pb;
use crate::Cri;

/// The prefix of every image volume failure's message: cri-api's
/// `ErrImageVolumeMountFailed`, which the kubelet reports as the reason.
const MOUNT_FAILED: &str = "ImageVolumeMountFailed";

impl Cri {
    /// `<state>/image-volumes/<pod id>`: where the pod's image volumes
    /// are mounted.
    fn image_volumes_dir(&self, sandbox_id: &str) -> PathBuf {
        self.state.join("image-volumes").join(sandbox_id)
    }

    /// Turns every image mount of `mounts` into a bind mount of a host
    /// directory: the image's files, mounted for the pod if no container
    /// of it has mounted them yet. The mount's `host_path` is set to that
    /// directory (or to its `image_sub_path` inside) and `image.image_ref`
    /// to the image's digest reference, as a container status shows them.
    pub(crate) async fn mount_image_volumes(
        &self,
        sandbox_id: &str,
        mounts: &mut [pb::Mount],
        userns: Option<&crate::userns::PodUserns>,
    ) -> Result<()> {
        if mounts.iter().all(|m| m.image.is_none()) {
            return Ok(());
        }
        // Two containers of a pod created at once must not both mount
        // the same image, nor a pod's stop unmount under a create; other
        // pods go on.
        let lock = self.image_volumes_lock(sandbox_id);
        let _serial = lock.lock().await;
        for m in mounts.iter_mut() {
            let Some(spec) = &m.image else { continue };
            let what = format!(
                "{MOUNT_FAILED}: image {:?} on {:?}",
                spec.image, m.container_path
            );
            self.mount_image_volume(sandbox_id, m, userns)
                .await
                .map_err(|e| e.context(what))?;
        }
        Ok(())
    }

    async fn mount_image_volume(
        &self,
        sandbox_id: &str,
        m: &mut pb::Mount,
        userns: Option<&crate::userns::PodUserns>,
    ) -> Result<()> {
        let reference = m
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if !m.host_path.is_empty() {
            return Err(Error::invalid_argument(format!(
                "an image mount has no host path, yet {:?} was given",
                m.host_path
            )));
        }
        if !m.readonly {
            return Err(Error::invalid_argument("an image mount must be read-only"));
        }
        if reference.is_empty() {
            return Err(Error::invalid_argument("the image mount names no image"));
        }
        let image = self.images.get(&reference).await?.ok_or_else(|| {
            Error::not_found(format!("image {reference:?} not found: pull it first"))
        })?;
        let target = self
            .image_volumes_dir(sandbox_id)
            .join(image.target.digest.hex());
        let mounted = crated_core::blocking::off_worker(|| -> Result<bool> {
            Ok(target.exists() && crated_core::mount::is_mountpoint(&target)?)
        })?;
        if !mounted {
            self.mount_image(sandbox_id, &image, &target, userns)
                .await?;
        }
        // In a pod with its own user namespace the view is ID-mapped
        // already (an overlay cannot be ID-mapped again, its layers were).
        if userns.is_some() {
            m.uid_mappings.clear();
            m.gid_mappings.clear();
        }
        let host = if m.image_sub_path.is_empty() {
            target
        } else {
            crated_core::blocking::off_worker(|| directory_in_root(&target, &m.image_sub_path))?
        };
        m.host_path = host.display().to_string();
        if let Some(spec) = m.image.as_mut() {
            spec.image_ref = image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone());
        }
        Ok(())
    }

    /// Mounts a read-only view of `image` (unpacked first if it is not)
    /// at `target`, held by the pod's lease; ID-mapped for a pod with a
    /// user namespace of its own.
    async fn mount_image(
        &self,
        sandbox_id: &str,
        image: &CriImage,
        target: &Path,
        userns: Option<&crate::userns::PodUserns>,
    ) -> Result<()> {
        let ns = self.client.namespace();
        let leases = &self.client.services().leases;
        match leases.create(ns, sandbox_id, Default::default()).await {
            Ok(_) => {}
            Err(e) if e.kind() == crated_core::Kind::AlreadyExists => {}
            Err(e) => return Err(e.context(format!("create the lease of pod {sandbox_id:?}"))),
        }
        let snapshotter_name = &self.snapshotter_of_pod(sandbox_id);
        let snapshotter = self
            .client
            .snapshotter(snapshotter_name, Some(sandbox_id))?;
        self.client
            .ensure_unpacked(&image.target, &image.chain_id, snapshotter_name)
            .await?;
        let key = target.display().to_string();
        let labels = userns
            .map(crate::userns::PodUserns::snapshot_labels)
            .unwrap_or_default();
        let mounts = match snapshotter.view(&key, &image.chain_id, labels).await {
            Ok(mounts) => mounts,
            // Made by a create that failed before mounting it.
            Err(e) if e.kind() == crated_core::Kind::AlreadyExists => {
                snapshotter.mounts(&key).await?
            }
            Err(e) => return Err(e),
        };
        let at = target;
        let mounted = crated_core::blocking::off_worker(|| {
            use std::os::unix::fs::DirBuilderExt as _;
            // Owner-only: what is inside is the pod's.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(at)
                .map_err(|e| Error::io(format!("create {}", at.display()), e))?;
            crated_core::mount::mount_all(&mounts, at)?.keep();
            Ok(())
        });
        if let Err(e) = mounted {
            let _ = crated_core::blocking::off_worker(|| std::fs::remove_dir(target));
            if let Err(removal) = snapshotter.remove(&key).await {
                tracing::warn!(key, error = %removal, "remove an image volume's view");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Unmounts and removes the pod's image volumes (at its stop); none is
    /// fine.
    pub(crate) async fn unmount_image_volumes(&self, sandbox_id: &str) -> Result<()> {
        let dir = self.image_volumes_dir(sandbox_id);
        let list = || -> Result<Option<Vec<PathBuf>>> {
            match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .map(|e| e.map(|e| e.path()))
                    .collect::<std::io::Result<Vec<_>>>()
                    .map(Some)
                    .map_err(|e| Error::io(format!("read {}", dir.display()), e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(format!("read {}", dir.display()), e)),
            }
        };
        // Most pods have none: no lock to wait for then.
        if !crated_core::blocking::off_worker(|| dir.exists()) {
            return Ok(());
        }
        let lock = self.image_volumes_lock(sandbox_id);
        let _serial = lock.lock().await;
        let Some(targets) = crated_core::blocking::off_worker(list)? else {
            return Ok(());
        };
        let snapshotter = self
            .client
            .snapshotter(&self.snapshotter_of_pod(sandbox_id), None)?;
        for target in targets {
            let scratch = target.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(crated_core::mount::idmap::SCRATCH_PREFIX)
            });
            if scratch {
                // What a crash half-way through an ID-mapped mount left.
                crated_core::blocking::off_worker(|| {
                    crated_core::mount::unmount_beneath(&target)?;
                    std::fs::remove_dir_all(&target)
                        .map_err(|e| Error::io(format!("remove {}", target.display()), e))
                })?;
                continue;
            }
            crated_core::blocking::off_worker(|| crated_core::mount::unmount_all(&target))?;
            let key = target.display().to_string();
            match snapshotter.remove(&key).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.context(format!("remove image volume {key:?}"))),
            }
            crated_core::blocking::off_worker(|| remove_dir_if_present(&target))?;
        }
        crated_core::blocking::off_worker(|| remove_dir_if_present(&dir))
    }

    /// The lock of a pod's image volumes.
    fn image_volumes_lock(&self, sandbox_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .image_volume_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(sandbox_id.to_owned()).or_default())
    }

    /// Deletes the pod's lease, which held its image volumes (at its
    /// removal); none is fine.
    pub(crate) async fn release_image_volumes(&self, sandbox_id: &str) -> Result<()> {
        self.image_volume_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sandbox_id);
        let ns = self.client.namespace();
        match self
            .client
            .services()
            .leases
            .delete(ns, sandbox_id, false)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.context(format!("delete the lease of pod {sandbox_id:?}"))),
        }
    }
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("remove {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// The directory `sub` names inside the mounted image at `root`, every
/// component (symbolic links included) resolved as if `root` were `/`,
/// so an image's links never lead out of it. An error if it is missing
/// or is not a directory (image volumes mount directories only).
fn directory_in_root(root: &Path, sub: &str) -> Result<PathBuf> {
    // Canonical, as the kernel names what it finds below.
    let root = &root
        .canonicalize()
        .map_err(|e| Error::io(format!("resolve {}", root.display()), e))?;
    let dir =
        std::fs::File::open(root).map_err(|e| Error::io(format!("open {}", root.display()), e))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let relative = match sub.trim_start_matches('/') {
        "" => ".",
        relative => relative,
    };
    let fd = match crated_core::fs::openat2_retrying(dir.as_raw_fd(), relative, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOSYS) => {
            return Err(Error::not_implemented(
                "image volume sub paths need openat2 (Linux 5.6 or later)",
            ))
        }
        Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => {
            return Err(Error::not_found(format!(
                "the image has no directory {sub:?}"
            )))
        }
        Err(e) => {
            return Err(Error::io(
                format!("open {sub:?} in the image"),
                std::io::Error::from(e),
            ))
        }
    };
    // SAFETY: openat2 returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {sub:?} in the image"), e))?;
    if !meta.is_dir() {
        return Err(Error::invalid_argument(format!(
            "{sub:?} in the image is not a directory: only directories are mounted"
        )));
    }
    // Where the kernel found it: inside `root` (RESOLVE_IN_ROOT), and
    // fixed since the view is read-only and this pod's alone.
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let found = std::fs::read_link(&link)
        .map_err(|e| Error::io(format!("resolve {sub:?} in the image"), e))?;
    if !found.starts_with(root) {
        return Err(Error::invalid_argument(format!(
            "{sub:?} resolves outside the image, to {}",
            found.display()
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::directory_in_root;

    #[test]
    fn sub_paths_resolve_inside_the_image_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::write(root.join("data/file"), b"x").unwrap();
        std::os::unix::fs::symlink("/data/sub", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", root.join("data/up")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();

        assert_eq!(
            directory_in_root(&root, "data/sub").unwrap(),
            root.join("data/sub")
        );
        assert_eq!(
            directory_in_root(&root, "/data/sub/").unwrap(),
            root.join("data/sub")
        );
        // Links resolve as inside the image: an absolute one from its root.
        assert_eq!(
            directory_in_root(&root, "abs").unwrap(),
            root.join("data/sub")
        );
        // `..` stops at the image's root, never the host's.
        assert_eq!(directory_in_root(&root, "data/up").unwrap(), root);
        assert_eq!(directory_in_root(&root, "../../..").unwrap(), root);
        let missing = directory_in_root(&root, "etc-link").unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(missing.to_string().contains("etc-link"), "{missing}");
        assert_eq!(directory_in_root(&root, "/").unwrap(), root);
        // A root named through a link resolves all the same.
        let link = dir.path().join("link-to-root");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        assert_eq!(
            directory_in_root(&link, "data/sub").unwrap(),
            root.join("data/sub")
        );
        let file = directory_in_root(&root, "data/file").unwrap_err();
        assert!(file.to_string().contains("not a directory"), "{file}");
    }
}
