#![doc = include_str!("../README.md")]

mod usage;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crated_core::mount::Mount;
use crated_core::snapshots::{Info, Kind, Labels, Snapshotter, Usage};
use crated_core::{Error, Result};
use crated_snapshotter_meta::{MetaStore, Snapshot};

/// The native snapshotter rooted at a directory (containerd's layout:
/// `metadata` store and `snapshots/<id>` trees).
pub struct Native {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    meta: MetaStore,
}

fn io_error(what: &str, path: &Path, err: std::io::Error) -> Error {
    Error::unknown(format!("{what} {}: {err}", path.display())).with_source(err)
}

impl Native {
    /// Opens the snapshotter at `root`, creating it (mode 0700) if needed.
    pub fn open(root: &Path) -> Result<Self> {
        let snapshots = root.join("snapshots");
        fs::create_dir_all(&snapshots).map_err(|e| io_error("create", &snapshots, e))?;
        for dir in [root, snapshots.as_path()] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io_error("chmod", dir, e))?;
        }
        let meta = MetaStore::open(&root.join("metadata.sled"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                meta,
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || op(&inner))
            .await
            .map_err(|e| Error::unknown(format!("native snapshotter operation failed: {e}")))?
    }
}

impl Inner {
    fn dir(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(id)
    }

    fn mounts(&self, s: &Snapshot) -> Vec<Mount> {
        // A view of a committed snapshot mounts that snapshot read-only; it
        // has no files of its own.
        match (s.info.kind, s.parent_ids.first()) {
            (Kind::View, Some(parent)) => {
                vec![Mount::bind(self.dir(parent).display().to_string(), true)]
            }
            (kind, _) => vec![Mount::bind(
                self.dir(&s.id).display().to_string(),
                kind == Kind::View,
            )],
        }
    }

    fn create(&self, kind: Kind, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let mut change = self.meta.change();
        let snapshot = change.create(kind, key, parent, labels)?;
        let needs_dir = kind == Kind::Active || snapshot.parent_ids.is_empty();
        if !needs_dir {
            change.apply()?;
            return Ok(self.mounts(&snapshot));
        }
        // Built under a temporary name and renamed into place, so a crash
        // leaves a `new-` directory that cleanup removes, never a partial
        // snapshot.
        let staging = self
            .root
            .join("snapshots")
            .join(format!("new-{}", snapshot.id));
        let built = self
            .build(&staging, snapshot.parent_ids.first())
            .and_then(|()| {
                let dir = self.dir(&snapshot.id);
                fs::rename(&staging, &dir).map_err(|e| io_error("rename", &staging, e))
            });
        if let Err(err) = built.and_then(|()| change.apply()) {
            let _ = fs::remove_dir_all(&staging);
            let _ = fs::remove_dir_all(self.dir(&snapshot.id));
            return Err(err);
        }
        Ok(self.mounts(&snapshot))
    }

    /// A fresh tree at `dir`: empty, or a copy of the parent's.
    fn build(&self, dir: &Path, parent: Option<&String>) -> Result<()> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir(dir).map_err(|e| io_error("create", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("chmod", dir, e))?;
        if let Some(parent) = parent {
            copy_tree(&self.dir(parent), dir)?;
        }
        Ok(())
    }

    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        // Measured before the change takes the writer lock; the active
        // snapshot is not written to once it is being committed.
        let (snapshot, _) = self.meta.get(key)?;
        let usage = match snapshot.info.kind {
            Kind::Active => usage::measure(&self.dir(&snapshot.id))?,
            _ => Usage::default(),
        };
        let mut change = self.meta.change();
        change.commit(name, key, labels, usage)?;
        change.apply()
    }

    fn remove(&self, key: &str) -> Result<()> {
        let mut change = self.meta.change();
        let snapshot = change.remove(key)?;
        let dir = self.dir(&snapshot.id);
        // Out of the way first, so the record never points at a half-removed
        // tree; put back if the record cannot be removed.
        let doomed = self
            .root
            .join("snapshots")
            .join(format!("rm-{}", snapshot.id));
        let moved = match fs::rename(&dir, &doomed) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("rename", &dir, e)),
        };
        if let Err(err) = change.apply() {
            if moved {
                let _ = fs::rename(&doomed, &dir);
            }
            return Err(err);
        }
        if moved {
            if let Err(e) = fs::remove_dir_all(&doomed) {
                tracing::warn!(path = %doomed.display(), error = %e, "removing snapshot files; cleanup retries");
            }
        }
        Ok(())
    }

    fn cleanup(&self) -> Result<()> {
        // Under the writer lock, so no snapshot is created meanwhile.
        let change = self.meta.change();
        let ids = self.meta.ids()?;
        let snapshots = self.root.join("snapshots");
        let entries = fs::read_dir(&snapshots).map_err(|e| io_error("read", &snapshots, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &snapshots, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(&name) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(|e| io_error("remove", &path, e))?;
            }
        }
        drop(change);
        Ok(())
    }
}

/// Copies the tree at `from` into the existing directory `to`, keeping
/// every file type, hard links, owners, modes, times and extended
/// attributes: GNU cp's `-a` does all of that, and shares extents where the
/// filesystem can (`--reflink=auto`).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(from.join("."))
        .arg(to)
        .output()
        .map_err(|e| io_error("run cp to copy", from, e))?;
    if !out.status.success() {
        return Err(Error::unknown(format!(
            "copy {} to {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Snapshotter for Native {
    async fn stat(&self, key: &str) -> Result<Info> {
        let key = key.to_owned();
        self.blocking(move |inner| Ok(inner.meta.get(&key)?.0.info))
            .await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let fieldpaths = fieldpaths.to_vec();
        self.blocking(move |inner| {
            let mut change = inner.meta.change();
            let updated = change.update(info, &fieldpaths)?;
            change.apply()?;
            Ok(updated)
        })
        .await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            let (snapshot, usage) = inner.meta.get(&key)?;
            match snapshot.info.kind {
                Kind::Active => usage::measure(&inner.dir(&snapshot.id)),
                _ => Ok(usage),
            }
        })
        .await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let key = key.to_owned();
        self.blocking(move |inner| Ok(inner.mounts(&inner.meta.get_mountable(&key)?)))
            .await
    }

    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let (key, parent) = (key.to_owned(), parent.to_owned());
        self.blocking(move |inner| inner.create(Kind::Active, &key, &parent, labels))
            .await
    }

    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let (key, parent) = (key.to_owned(), parent.to_owned());
        self.blocking(move |inner| inner.create(Kind::View, &key, &parent, labels))
            .await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let (name, key) = (name.to_owned(), key.to_owned());
        self.blocking(move |inner| inner.commit(&name, &key, labels))
            .await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.blocking(move |inner| inner.remove(&key)).await
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filters = filters.to_vec();
        self.blocking(move |inner| inner.meta.walk(&filters)).await
    }

    async fn cleanup(&self) -> Result<()> {
        self.blocking(Inner::cleanup).await
    }
}
