//! The engine of snapshotters that keep one directory per snapshot under
//! `<root>/snapshots/<id>` (native, overlay, btrfs): records in the
//! [`MetaStore`], files built under `new-<id>` and renamed into place before
//! the record is applied, removed via `rm-<id>` after, so a process crash
//! leaves only files no record names — which `cleanup` deletes — and a
//! machine crash at worst also the record of an active snapshot or view
//! without its files, which opening builds again. A [`Layout`] says how a
//! snapshot's files are made, mounted and measured.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crated_core::mount::Mount;
use crated_core::snapshots::{Info, Kind, Labels, Snapshotter, Usage};
use crated_core::Result;

use crate::{Error, MetaStore, Snapshot};

/// Where a snapshotter's snapshots live.
#[derive(Debug, Clone)]
pub struct Dirs {
    snapshots: PathBuf,
}

impl Dirs {
    /// The directory of the snapshot with storage id `id`.
    pub fn snapshot(&self, id: &str) -> PathBuf {
        self.snapshots.join(id)
    }
}

/// Makes the entries of directory `dir` (a rename into it) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync", dir, e).into())
}

/// How one kind of snapshotter makes, mounts and measures a snapshot's
/// files. Called on blocking threads.
pub trait Layout: Send + Sync + 'static {
    /// Makes the files of a new snapshot at `dir`, which does not exist
    /// yet; `parent` is the directory of the nearest parent, if any.
    fn create(&self, dir: &Path, kind: Kind, parent: Option<&Path>) -> Result<()>;

    /// Whether a view of a committed snapshot needs files of its own (the
    /// native snapshotter mounts the parent's instead).
    fn view_needs_files(&self, parent_ids: &[String]) -> bool;

    /// How to mount the active snapshot or view `snapshot`.
    fn mounts(&self, dirs: &Dirs, snapshot: &Snapshot) -> Vec<Mount>;

    /// Disk use of the snapshot's own layer, whose files are at `dir`.
    fn usage(&self, dir: &Path) -> Result<Usage>;

    /// Gives a new active snapshot's root, at `dir`, to a user namespace's
    /// root (`uid`, `gid` on the host), where its mounts show it unshifted:
    /// an overlay's upper directory is not ID-mapped, its lower ones are.
    fn give_root(&self, _dir: &Path, _snapshot: &Snapshot, _uid: u32, _gid: u32) -> Result<()> {
        Ok(())
    }

    /// Makes a snapshot's files immutable as it is committed (btrfs marks
    /// the subvolume read-only), or writable again when the commit's record
    /// could not be written.
    fn freeze(&self, _dir: &Path, _frozen: bool) -> Result<()> {
        Ok(())
    }

    /// Removes the files of a snapshot at `dir` (renamed out of the way).
    fn remove(&self, dir: &Path) -> Result<()> {
        fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e).into())
    }
}

/// A snapshotter made of a [`Layout`] and a [`MetaStore`].
pub struct DirSnapshotter<L> {
    inner: Arc<Inner<L>>,
}

struct Inner<L> {
    layout: L,
    dirs: Dirs,
    meta: MetaStore,
}

impl<L: Layout> DirSnapshotter<L> {
    /// Opens the snapshotter at `root` (created with mode 0700 if needed;
    /// records in `root/metadata.sled`, files in `root/snapshots`).
    pub fn open(root: &Path, layout: L) -> Result<Self, Error> {
        let snapshots = root.join("snapshots");
        fs::create_dir_all(&snapshots).map_err(|e| Error::io("create", &snapshots, e))?;
        for dir in [root, snapshots.as_path()] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("chmod", dir, e))?;
        }
        let meta = MetaStore::open(&root.join("metadata.sled"))?;
        let inner = Inner {
            layout,
            dirs: Dirs { snapshots },
            meta,
        };
        // What a crash left (`new-*`, `rm-*`, a tree whose record never
        // landed) goes before anything is served; one that cannot be
        // removed is reported and retried by the next cleanup, not fatal.
        if let Err(err) = inner.cleanup() {
            tracing::warn!(root = %root.display(), error = %err, "cleaning up snapshot directories");
        }
        if let Err(err) = inner.rebuild_missing() {
            tracing::warn!(root = %root.display(), error = %err, "rebuilding missing snapshot directories");
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner<L>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || op(&inner))
            .await
            .map_err(|source| Error::Task { source })?
    }
}

impl<L: Layout> Inner<L> {
    fn create(&self, kind: Kind, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        // Checked before anything is made: a mapping mounts cannot show.
        crated_core::snapshots::id_mappings(&labels)?;
        let mut change = self.meta.change();
        let snapshot = change.create(kind, key, parent, labels)?;
        if !self.needs_files(&snapshot) {
            change.apply()?;
            return self.mounts(&snapshot);
        }
        self.build(&snapshot)?;
        // No sync of the directory before the reply. What a prepare makes is
        // its record plus files that follow from it (empty, or the parent's):
        // a machine crash that keeps the record and loses the rename leaves
        // an active snapshot or view whose files `open` builds again as this
        // call made them. (Files written into a snapshot afterwards are not
        // synced by any snapshotter here, nor by containerd's.)
        if let Err(err) = change.apply() {
            let _ = self.layout.remove(&self.dirs.snapshot(&snapshot.id));
            return Err(err.into());
        }
        self.mounts(&snapshot)
    }

    /// How to mount `snapshot`: the layout's mounts, with the `uidmap=` and
    /// `gidmap=` options of the ID mappings its labels ask for
    /// (`crated_core::mount::idmap` performs them).
    fn mounts(&self, snapshot: &Snapshot) -> Result<Vec<Mount>> {
        let mut mounts = self.layout.mounts(&self.dirs, snapshot);
        if let Some((uids, gids)) = crated_core::snapshots::id_mappings(&snapshot.info.labels)? {
            use crated_core::mount::idmap::format_list;
            for m in &mut mounts {
                m.options.push(format!("uidmap={}", format_list(&uids)));
                m.options.push(format!("gidmap={}", format_list(&gids)));
            }
        }
        Ok(mounts)
    }

    /// Whether `snapshot` has files of its own.
    fn needs_files(&self, snapshot: &Snapshot) -> bool {
        snapshot.info.kind == Kind::Active
            || snapshot.parent_ids.is_empty()
            || self.layout.view_needs_files(&snapshot.parent_ids)
    }

    /// Builds the files of new `snapshot` under `new-<id>` and renames them
    /// into place; on failure nothing is left.
    fn build(&self, snapshot: &Snapshot) -> Result<()> {
        let staging = self.dirs.snapshot(&format!("new-{}", snapshot.id));
        let dir = self.dirs.snapshot(&snapshot.id);
        let parent_dir = snapshot.parent_ids.first().map(|id| self.dirs.snapshot(id));
        // An id whose change never applied (a crash, a failed build) is
        // handed out again; clear what its last attempt left.
        for path in [&staging, &dir] {
            if path.exists() {
                self.layout.remove(path)?;
            }
        }
        let built = self
            .layout
            .create(&staging, snapshot.info.kind, parent_dir.as_deref())
            .and_then(|()| self.give_root(&staging, snapshot))
            .and_then(|()| {
                fs::rename(&staging, &dir).map_err(|e| Error::io("rename", &staging, e).into())
            });
        if built.is_err() {
            for path in [&staging, &dir] {
                if path.exists() {
                    let _ = self.layout.remove(path);
                }
            }
        }
        built
    }

    /// Hands a new active snapshot's root to the user namespace its labels
    /// map, where the layout needs it.
    fn give_root(&self, dir: &Path, snapshot: &Snapshot) -> Result<()> {
        if snapshot.info.kind != Kind::Active {
            return Ok(());
        }
        let mappings = crated_core::snapshots::id_mappings(&snapshot.info.labels)?;
        let root =
            mappings.and_then(|(uids, gids)| crated_core::snapshots::mapped_root(&uids, &gids));
        match root {
            Some((uid, gid)) => self.layout.give_root(dir, snapshot, uid, gid),
            None => Ok(()),
        }
    }

    /// Gives back the files of active snapshots and views whose record a
    /// machine crash kept without them (see `create`), as their prepare
    /// made them. One that cannot be read or built (its parent's files gone
    /// too) is reported and left; the others are still built.
    fn rebuild_missing(&self) -> Result<()> {
        let _change = self.meta.change();
        let mut rebuilt = false;
        for info in self.meta.walk(&[])? {
            if info.kind == Kind::Committed {
                continue;
            }
            let snapshot = match self.meta.get(&info.name) {
                Ok((snapshot, _)) => snapshot,
                Err(err) => {
                    tracing::warn!(key = info.name, error = %err, "reading a snapshot record");
                    continue;
                }
            };
            if !self.needs_files(&snapshot) || self.dirs.snapshot(&snapshot.id).exists() {
                continue;
            }
            match self.build(&snapshot) {
                Ok(()) => {
                    tracing::warn!(
                        key = info.name,
                        id = snapshot.id,
                        "snapshot files lost in a crash: built again"
                    );
                    rebuilt = true;
                }
                Err(err) => tracing::warn!(key = info.name, id = snapshot.id, error = %err,
                    "snapshot files lost in a crash and not built again"),
            }
        }
        if rebuilt {
            sync_dir(&self.dirs.snapshots)?;
        }
        Ok(())
    }

    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        // Measured before the change takes the writer lock; an active
        // snapshot is not written to while it is being committed.
        let (snapshot, _) = self.meta.get(key)?;
        let usage = match snapshot.info.kind {
            Kind::Active => self.layout.usage(&self.dirs.snapshot(&snapshot.id))?,
            _ => Usage::default(),
        };
        let mut change = self.meta.change();
        // The id as of the writer lock, not of the read above.
        let committed = change.commit(name, key, labels, usage)?;
        let dir = self.dirs.snapshot(&committed.id);
        self.layout.freeze(&dir, true)?;
        change.apply().map_err(|err| {
            let _ = self.layout.freeze(&dir, false);
            err.into()
        })
    }

    fn remove(&self, key: &str) -> Result<()> {
        let mut change = self.meta.change();
        let snapshot = change.remove(key)?;
        let dir = self.dirs.snapshot(&snapshot.id);
        // Out of the way first, so the record never names a half-removed
        // tree; put back if the record cannot be removed.
        let doomed = self.dirs.snapshot(&format!("rm-{}", snapshot.id));
        let moved = match fs::rename(&dir, &doomed) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("rename", &dir, e).into()),
        };
        if let Err(err) = change.apply() {
            if moved {
                let _ = fs::rename(&doomed, &dir);
            }
            return Err(err.into());
        }
        if moved {
            if let Err(err) = self.layout.remove(&doomed) {
                tracing::warn!(path = %doomed.display(), error = %err,
                    "removing snapshot files; cleanup retries");
            }
        }
        Ok(())
    }

    fn cleanup(&self) -> Result<()> {
        // Under the writer lock, so no snapshot is being created meanwhile.
        let _change = self.meta.change();
        let ids = self.meta.ids()?;
        let snapshots = &self.dirs.snapshots;
        let entries = fs::read_dir(snapshots).map_err(|e| Error::io("read", snapshots, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", snapshots, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(&name) {
                self.layout.remove(&entry.path())?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl<L: Layout> Snapshotter for DirSnapshotter<L> {
    async fn stat(&self, key: &str) -> Result<Info> {
        let key = key.to_owned();
        self.blocking(move |inner| Ok(inner.meta.get(&key)?.0.info))
            .await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let fieldpaths = fieldpaths.to_vec();
        self.blocking(move |inner| {
            // A mapping its mounts could not show is refused here too.
            crated_core::snapshots::id_mappings(&info.labels)?;
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
                Kind::Active => inner.layout.usage(&inner.dirs.snapshot(&snapshot.id)),
                _ => Ok(usage),
            }
        })
        .await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            let snapshot = inner.meta.get_mountable(&key)?;
            inner.mounts(&snapshot)
        })
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
