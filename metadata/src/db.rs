//! The database handle and its transactions.
//!
//! sled's own transactions cannot scan, and a namespace delete must scan to
//! know the namespace is empty. So writes are serialised by one lock instead:
//! a [`WriteTx`] reads the tree plus its own staged changes, stages puts and
//! deletes, and on success applies them as one atomic sled batch followed by
//! a flush (fsync) before the caller replies. A closure that fails stages
//! nothing into the tree: a failed call leaves no partial records.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crated_core::Result;

use crate::{schema, Error};

/// Directory of the database under the daemon root, named after containerd's
/// `io.containerd.metadata.v1.bolt`.
pub const DIR_NAME: &str = "io.containerd.metadata.v1.sled";

const TREE: &str = "v1";

/// Splits a stored value into its JSON text and the raw bytes after it.
///
/// A record is JSON text, which never holds a NUL byte; since schema 3 a
/// record may carry a payload of raw bytes after a NUL (a container's spec:
/// most of its record, which as hex in the JSON cost listings most of
/// their time to decode). Readers of the JSON alone ignore the payload.
pub(crate) fn split_payload(raw: &[u8]) -> (&[u8], Option<&[u8]>) {
    match raw.iter().position(|&b| b == 0) {
        Some(at) => (&raw[..at], Some(&raw[at + 1..])),
        None => (raw, None),
    }
}

/// `json` followed by `payload` as [`split_payload`] reads them.
pub(crate) fn with_payload(mut json: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    json.reserve(payload.len() + 1);
    json.push(0);
    json.extend_from_slice(payload);
    json
}

/// Decodes a record's JSON text (any payload after it is left alone).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, raw: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(split_payload(raw).0).map_err(|source| Error::Decode {
        what: what.to_owned(),
        source,
    })
}

pub(crate) fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|source| Error::Encode {
        what: what.to_owned(),
        source,
    })
}

/// The metadata database: namespaces now; images, containers, leases,
/// content and snapshot records as the subsystems that own them arrive.
///
/// Cheap to clone; every clone shares the one open database.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use crated_core::namespaces::{Namespace, NamespaceStore};
///
/// let root = tempfile::tempdir().unwrap();
/// let db = crated_metadata::Db::open(root.path()).unwrap();
/// let ns = Namespace::new("example").unwrap();
/// db.create(&ns, Default::default()).await.unwrap();
/// assert_eq!(db.list(&[]).await.unwrap().len(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    // Held for the life of the handle: one process owns the database.
    _lock: nix::fcntl::Flock<std::fs::File>,
    db: sled::Db,
    tree: sled::Tree,
    write: Mutex<()>,
    on_mutation: Mutex<Vec<MutationCallback>>,
}

pub use crated_core::gc::MutationCallback;

/// The page cache bound [`Db::open`] gives the database: 32 MiB holds the
/// records of some tens of thousands of containers and images (sled's own
/// default, 1 GiB, would let a large node's daemon grow that far).
pub const DEFAULT_CACHE_CAPACITY: u64 = 32 << 20;

impl Db {
    /// Opens (creating if needed) the database under `root`, migrating an
    /// older schema. Fails with Unavailable if another process holds it
    /// ([`Error::InUse`]) or, briefly after its drop, an earlier handle of
    /// this process ([`Error::StillOpen`]).
    pub fn open(root: &Path) -> Result<Self, Error> {
        Self::open_with(root, DEFAULT_CACHE_CAPACITY)
    }

    /// [`Db::open`] with the database's page cache bounded at
    /// `cache_capacity` bytes: records beyond it are read back from the
    /// file (and the kernel's page cache) when next needed.
    pub fn open_with(root: &Path, cache_capacity: u64) -> Result<Self, Error> {
        let path = root.join(DIR_NAME);
        // As containerd's bolt directory: searchable, not listable.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&path)
            .map_err(|source| Error::Io {
                op: "create metadata directory",
                path: path.clone(),
                source,
            })?;
        let opened = crated_sled_open::open(&path, cache_capacity).map_err(|failure| {
            use crated_sled_open::Failure;
            match failure {
                Failure::LockFile { path, source } => Error::Io {
                    op: "open",
                    path,
                    source,
                },
                Failure::InUse => Error::InUse { path: path.clone() },
                Failure::Lock { path, source } => Error::Lock { path, source },
                Failure::StillOpen(source) => Error::StillOpen {
                    path: path.clone(),
                    source,
                },
                Failure::Open(source) => Error::Open {
                    path: path.clone(),
                    source,
                },
            }
        })?;
        let (db, lock) = (opened.db, opened.lock);
        let tree = db.open_tree(TREE).map_err(Error::Storage)?;
        schema::upgrade(&tree)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                _lock: lock,
                db,
                tree,
                write: Mutex::new(()),
                on_mutation: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The tree itself, for tests that write what an older build wrote.
    #[cfg(test)]
    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.inner.tree
    }

    /// Runs `f` over a consistent-enough read view (each key read is current;
    /// writes are applied as atomic batches).
    pub fn read<T>(&self, f: impl FnOnce(&ReadTx<'_>) -> Result<T>) -> Result<T> {
        f(&ReadTx {
            tree: &self.inner.tree,
        })
    }

    /// Runs `f` as one write transaction: its staged changes are applied
    /// atomically and flushed to disk before this returns, or not at all if
    /// `f` fails.
    pub fn write<T>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>) -> Result<T> {
        self.write_as(Durability::Flushed, f)
    }

    /// [`Db::write`] for a change this process alone relies on (a lease
    /// guarding one operation from its own collector): applied atomically
    /// and seen by every later read, but on disk only with the next flushed
    /// write (sled's log keeps their order, so a later write is never on
    /// disk without it), at the latest when the database closes.
    pub fn write_unflushed<T>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>) -> Result<T> {
        self.write_as(Durability::Unflushed, f)
    }

    fn write_as<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let (out, changed, dirty) = self.write_quiet_as(durability, f)?;
        if changed {
            let callbacks = self
                .inner
                .on_mutation
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            for callback in callbacks {
                callback(dirty);
            }
        }
        Ok(out)
    }

    /// [`Db::write`] without telling the mutation callbacks: for the
    /// collector's own sweep. Returns whether anything changed and whether
    /// the transaction was marked dirty.
    pub(crate) fn write_quiet<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>,
    ) -> Result<(T, bool, bool)> {
        self.write_quiet_as(Durability::Flushed, f)
    }

    fn write_quiet_as<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>,
    ) -> Result<(T, bool, bool)> {
        // The flush waits on the disk, the lock on another's flush, and a
        // collection's mark (inside a write) computes for long.
        crated_core::blocking::off_worker(|| self.write_here(durability, f))
    }

    fn write_here<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>,
    ) -> Result<(T, bool, bool)> {
        // A poisoned lock only means another writer panicked mid-closure; its
        // staged changes were dropped, so the tree is intact.
        let _guard = self
            .inner
            .write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut tx = WriteTx {
            read: ReadTx {
                tree: &self.inner.tree,
            },
            staged: BTreeMap::new(),
            dirty: false,
        };
        let out = f(&mut tx)?;
        let changed = !tx.staged.is_empty();
        if changed {
            let tree = &self.inner.tree;
            let mut staged = tx.staged.into_iter();
            match (staged.next(), staged.next()) {
                // One key (most writes): sled's own atomic insert or remove.
                // A batch also logs a manifest, which its flush writes and
                // syncs apart: one disk round trip more per write.
                (Some((key, value)), None) => {
                    match value {
                        Some(v) => tree.insert(key, v).map(|_| ()),
                        None => tree.remove(key).map(|_| ()),
                    }
                    .map_err(Error::Storage)?;
                }
                (first, second) => {
                    let mut batch = sled::Batch::default();
                    for (key, value) in first.into_iter().chain(second).chain(staged) {
                        match value {
                            Some(v) => batch.insert(key, v),
                            None => batch.remove(key),
                        }
                    }
                    tree.apply_batch(batch).map_err(Error::Storage)?;
                }
            }
            if durability == Durability::Flushed {
                self.inner.db.flush().map_err(Error::Storage)?;
            }
        }
        Ok((out, changed, tx.dirty))
    }

    /// Registers `callback` to run after every committed write.
    pub fn on_mutation(&self, callback: MutationCallback) {
        self.inner
            .on_mutation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(callback);
    }

    /// Flushes everything to disk (used at shutdown).
    pub fn flush(&self) -> Result<(), Error> {
        self.inner.db.flush().map(|_| ()).map_err(Error::Storage)
    }
}

/// Whether a write is on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Flushed,
    Unflushed,
}

/// Reads from the database.
pub struct ReadTx<'a> {
    tree: &'a sled::Tree,
}

impl ReadTx<'_> {
    /// The value at `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(key)
            .map_err(Error::Storage)?
            .map(|v| v.to_vec()))
    }

    /// Every key and value under `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree
            .scan_prefix(prefix)
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| Error::Storage(e).into())
            })
            .collect()
    }

    /// Calls `f` with every key and value under `prefix`, in key order,
    /// as the database holds them (no copy); stops at `f`'s first error.
    pub fn visit(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        for kv in self.tree.scan_prefix(prefix) {
            let (key, value) = kv.map_err(Error::Storage)?;
            f(&key, &value)?;
        }
        Ok(())
    }

    /// The first key under `prefix`, if any.
    pub fn first_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.tree.scan_prefix(prefix).next() {
            Some(kv) => Ok(Some(kv.map_err(Error::Storage)?.0.to_vec())),
            None => Ok(None),
        }
    }
}

/// A write transaction: reads see the tree with this transaction's own
/// staged changes applied.
pub struct WriteTx<'a> {
    read: ReadTx<'a>,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    dirty: bool,
}

impl WriteTx<'_> {
    /// The value at `key`, staged changes included.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.staged.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.read.get(key),
        }
    }

    /// Every key and value under `prefix`, staged changes included.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self.read.scan(prefix)?.into_iter().collect();
        for (key, value) in self.staged.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Stages `key` = `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.staged.insert(key, Some(value));
    }

    /// Stages the removal of `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.staged.insert(key, None);
    }

    /// Notes that this transaction removes references (a delete of an
    /// image, container, lease or content record), so that garbage may
    /// have appeared.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }
}

impl crated_core::gc::MutationSource for Db {
    fn on_mutation(&self, callback: MutationCallback) {
        Db::on_mutation(self, callback);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that waits on the disk (here: a closure that takes 300 ms)
    /// leaves the runtime's only worker free for other tasks meanwhile.
    #[test]
    fn a_slow_write_does_not_hold_the_async_worker() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = std::sync::Arc::clone(&ticks);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let during = runtime
            .block_on(runtime.spawn(async move {
                db.write(|tx| {
                    let before = ticks.load(std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    tx.put(b"k".to_vec(), b"v".to_vec());
                    Ok(ticks.load(std::sync::atomic::Ordering::SeqCst) - before)
                })
            }))
            .unwrap()
            .unwrap();
        assert!(
            during >= 5,
            "other tasks ran {during} times during the write"
        );
    }

    #[test]
    fn failed_update_stages_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let res: Result<()> = db.write(|tx| {
            tx.put(b"a".to_vec(), b"1".to_vec());
            Err(crated_core::Error::invalid_argument("no"))
        });
        assert!(res.is_err());
        assert_eq!(db.read(|tx| tx.get(b"a")).unwrap(), None);
    }

    #[test]
    fn staged_changes_are_visible_inside_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.write(|tx| {
            tx.put(b"p\0a".to_vec(), b"1".to_vec());
            tx.put(b"p\0b".to_vec(), b"2".to_vec());
            Ok(())
        })
        .unwrap();
        db.write(|tx| {
            tx.delete(b"p\0a".to_vec());
            tx.put(b"p\0c".to_vec(), b"3".to_vec());
            let keys: Vec<_> = tx.scan(b"p\0")?.into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, vec![b"p\0b".to_vec(), b"p\0c".to_vec()]);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn second_open_of_same_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _db = Db::open(dir.path()).unwrap();
        // sled locks the directory per process; a second open in the same
        // process is refused the same way another process would be.
        match Db::open(dir.path()) {
            Err(err) => {
                assert!(matches!(err, Error::InUse { .. }), "{err}");
                let err = crated_core::Error::from(err);
                assert_eq!(err.kind(), crated_core::Kind::Unavailable);
                assert!(
                    err.to_string().contains("in use by another process"),
                    "{err}"
                );
            }
            Ok(_) => panic!("second open must fail"),
        }
    }
}
