#![doc = include_str!("../README.md")]

mod engine;
mod error;
pub mod plugin;
pub mod usage;

pub use engine::{DirSnapshotter, Dirs, Layout};
pub use error::Error;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crated_core::filters::{self};
use crated_core::labels::{self, LabelUpdate};
use crated_core::snapshots::{Info, InfoFields, Kind, Labels, Usage};
use crated_core::Result;
use serde::{Deserialize, Serialize};

/// Key prefix of snapshot records, by name.
const SNAPSHOT: &[u8] = b"s/";
/// Key prefix of the children index: `c/<parent>\0<child>`.
const CHILD: &[u8] = b"c/";
/// The next id to hand out.
const NEXT_ID: &[u8] = b"next-id";

/// A snapshot as the snapshotter needs it: its record, its storage id and
/// the ids of its parents, nearest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The storage id, stable across commit: names the snapshot's directory.
    pub id: String,
    /// The record.
    pub info: Info,
    /// Ids of the parent chain, nearest first.
    pub parent_ids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    kind: Kind,
    parent: String,
    labels: BTreeMap<String, String>,
    created_ns: u128,
    updated_ns: u128,
    size: i64,
    inodes: i64,
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

fn time(nanos: u128) -> SystemTime {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // Below one billion, so it fits.
    UNIX_EPOCH
        .checked_add(Duration::new(secs, (nanos % 1_000_000_000) as u32))
        .unwrap_or(UNIX_EPOCH)
}

fn storage(op: &'static str) -> impl FnOnce(sled::Error) -> Error {
    move |source| Error::Storage { op, source }
}

fn decode(name: &str, raw: &[u8]) -> Result<Record, Error> {
    serde_json::from_slice(raw).map_err(|source| Error::Decode {
        name: name.to_owned(),
        source,
    })
}

fn snapshot_key(name: &str) -> Vec<u8> {
    [SNAPSHOT, name.as_bytes()].concat()
}

fn child_key(parent: &str, child: &str) -> Vec<u8> {
    [CHILD, parent.as_bytes(), b"\0", child.as_bytes()].concat()
}

/// The record store of one snapshotter: a sled tree, every change applied
/// atomically (one key as sled's own insert or remove, more as one batch,
/// whose manifest sled logs and syncs apart) and flushed to disk before it
/// returns.
pub struct MetaStore {
    db: sled::Db,
    /// Serialises writers: each reads, decides and writes under it.
    writer: Mutex<()>,
    /// Held while open: one process per store.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// A change being staged under the writer lock; applied by
/// [`MetaStore::apply`].
pub struct Change<'a> {
    store: &'a MetaStore,
    /// Staged writes in order; `None` removes the key.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    _guard: MutexGuard<'a, ()>,
}

/// The page cache bound of a snapshotter's record store. A record is a
/// few hundred bytes, so 8 MiB holds tens of thousands of snapshots; sled's
/// default (1 GiB for each of the daemon's stores) would let them grow far
/// past what a node needs.
pub const CACHE_CAPACITY: u64 = 8 << 20;

impl MetaStore {
    /// Opens (or creates) the store at `path`. Unavailable while another
    /// process has it ([`Error::InUse`]) or, briefly after its drop, an
    /// earlier handle of this process ([`Error::StillOpen`]).
    pub fn open(path: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(path).map_err(|e| Error::io("create", path, e))?;
        let opened = crated_sled_open::open(path, CACHE_CAPACITY).map_err(|failure| {
            use crated_sled_open::Failure;
            let path = path.to_owned();
            match failure {
                Failure::LockFile { path, source } => Error::io("open", &path, source),
                Failure::InUse => Error::InUse { path },
                Failure::Lock { path, source } => Error::Lock { path, source },
                Failure::StillOpen(source) => Error::StillOpen { path, source },
                Failure::Open(source) => Error::Open { path, source },
            }
        })?;
        let (db, lock) = (opened.db, opened.lock);
        Ok(Self {
            db,
            writer: Mutex::new(()),
            _lock: lock,
        })
    }

    fn record(&self, name: &str) -> Result<Option<Record>, Error> {
        match self.db.get(snapshot_key(name)).map_err(storage("read"))? {
            Some(raw) => decode(name, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn existing(&self, name: &str) -> Result<Record, Error> {
        self.record(name)?.ok_or_else(|| Error::NotFound {
            key: name.to_owned(),
        })
    }

    fn info(name: &str, record: &Record) -> Info {
        Info {
            name: name.to_owned(),
            parent: record.parent.clone(),
            kind: record.kind,
            labels: record.labels.clone(),
            created_at: time(record.created_ns),
            updated_at: time(record.updated_ns),
        }
    }

    fn parent_ids(&self, mut parent: String) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        while !parent.is_empty() {
            let record = self.record(&parent)?.ok_or_else(|| Error::MissingParent {
                parent: parent.clone(),
            })?;
            ids.push(record.id.to_string());
            parent = record.parent;
        }
        Ok(ids)
    }

    fn snapshot(&self, name: &str, record: &Record) -> Result<Snapshot, Error> {
        Ok(Snapshot {
            id: record.id.to_string(),
            info: Self::info(name, record),
            parent_ids: self.parent_ids(record.parent.clone())?,
        })
    }

    /// The record of `name` with its id and usage; NotFound if absent.
    pub fn get(&self, name: &str) -> Result<(Snapshot, Usage), Error> {
        let record = self.existing(name)?;
        let usage = Usage {
            size: record.size,
            inodes: record.inodes,
        };
        Ok((self.snapshot(name, &record)?, usage))
    }

    /// The active snapshot or view `name`, to mount; FailedPrecondition for
    /// a committed one.
    pub fn get_mountable(&self, name: &str) -> Result<Snapshot, Error> {
        let record = self.existing(name)?;
        if record.kind == Kind::Committed {
            return Err(Error::NotMountable {
                key: name.to_owned(),
            });
        }
        self.snapshot(name, &record)
    }

    /// Every record matching any of `filters`.
    pub fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filter = filters::parse_all(filters)?;
        let mut out = Vec::new();
        for item in self.db.scan_prefix(SNAPSHOT) {
            let (key, raw) = item.map_err(storage("scan"))?;
            let name = String::from_utf8_lossy(&key[SNAPSHOT.len()..]).into_owned();
            let record = decode(&name, &raw)?;
            let info = Self::info(&name, &record);
            if filter.matches(&InfoFields(&info)) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Every storage id in use.
    pub fn ids(&self) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        for item in self.db.scan_prefix(SNAPSHOT) {
            let (key, raw) = item.map_err(storage("scan"))?;
            let record = decode(&String::from_utf8_lossy(&key[SNAPSHOT.len()..]), &raw)?;
            ids.push(record.id.to_string());
        }
        Ok(ids)
    }

    /// Starts a change; other changes wait until it is applied or dropped.
    pub fn change(&self) -> Change<'_> {
        Change {
            store: self,
            writes: Vec::new(),
            // A panicked writer left no partial batch: sled applies batches
            // whole, so the data behind a poisoned lock is consistent.
            _guard: self.writer.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    fn encode(name: &str, record: &Record) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(record).map_err(|source| Error::Encode {
            name: name.to_owned(),
            source,
        })
    }
}

impl Change<'_> {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push((key, Some(value)));
    }

    fn remove_key(&mut self, key: Vec<u8>) {
        self.writes.push((key, None));
    }

    fn put(&mut self, name: &str, record: &Record) -> Result<(), Error> {
        let raw = MetaStore::encode(name, record)?;
        self.insert(snapshot_key(name), raw);
        Ok(())
    }

    /// Stages a new active snapshot or view `key` on `parent`; the caller
    /// creates its files, then [`Change::apply`]s.
    pub fn create(
        &mut self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Snapshot> {
        if kind == Kind::Committed {
            return Err(Error::CreateCommitted {
                key: key.to_owned(),
            }
            .into());
        }
        if key.is_empty() {
            return Err(Error::EmptyKey.into());
        }
        labels::validate_all(&labels)?;
        let store = self.store;
        if store.record(key)?.is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            }
            .into());
        }
        if !parent.is_empty() {
            let parent_record = store.record(parent)?.ok_or_else(|| Error::ParentNotFound {
                parent: parent.to_owned(),
            })?;
            if parent_record.kind != Kind::Committed {
                return Err(Error::ParentNotCommitted {
                    parent: parent.to_owned(),
                    key: key.to_owned(),
                }
                .into());
            }
            self.insert(child_key(parent, key), Vec::new());
        }
        let id = self.next_id()?;
        let now = nanos(SystemTime::now());
        let record = Record {
            id,
            kind,
            parent: parent.to_owned(),
            labels,
            created_ns: now,
            updated_ns: now,
            size: 0,
            inodes: 0,
        };
        self.put(key, &record)?;
        Ok(store.snapshot(key, &record)?)
    }

    fn next_id(&mut self) -> Result<u64, Error> {
        let current = match self.store.db.get(NEXT_ID).map_err(storage("read"))? {
            Some(raw) => {
                let bytes: [u8; 8] = raw
                    .as_ref()
                    .try_into()
                    .map_err(|_| Error::BadNextId { len: raw.len() })?;
                u64::from_be_bytes(bytes)
            }
            None => 1,
        };
        self.insert(NEXT_ID.to_vec(), (current + 1).to_be_bytes().to_vec());
        Ok(current)
    }

    /// Stages the commit of active `key` as `name` with its measured usage.
    /// Returns the snapshot as it was.
    pub fn commit(
        &mut self,
        name: &str,
        key: &str,
        labels: Labels,
        usage: Usage,
    ) -> Result<Snapshot> {
        labels::validate_all(&labels)?;
        let store = self.store;
        if name.is_empty() {
            return Err(Error::EmptyName.into());
        }
        let mut record = store.record(key)?.ok_or_else(|| Error::ActiveNotFound {
            key: key.to_owned(),
        })?;
        if record.kind != Kind::Active {
            return Err(Error::NotActive {
                key: key.to_owned(),
            }
            .into());
        }
        if store.record(name)?.is_some() {
            return Err(Error::CommittedExists {
                name: name.to_owned(),
            }
            .into());
        }
        // Active snapshots have no children: only committed ones are parents.
        let before = store.snapshot(key, &record)?;
        if !record.parent.is_empty() {
            self.remove_key(child_key(&record.parent, key));
            self.insert(child_key(&record.parent, name), Vec::new());
        }
        record.kind = Kind::Committed;
        record.labels.extend(labels);
        record.updated_ns = nanos(SystemTime::now());
        (record.size, record.inodes) = (usage.size, usage.inodes);
        self.remove_key(snapshot_key(key));
        self.put(name, &record)?;
        Ok(before)
    }

    fn has_children(&self, name: &str) -> Result<bool, Error> {
        let prefix = [CHILD, name.as_bytes(), b"\0"].concat();
        match self.store.db.scan_prefix(prefix).next() {
            Some(item) => item.map(|_| true).map_err(storage("scan")),
            None => Ok(false),
        }
    }

    /// Stages the removal of `key`; FailedPrecondition while it has
    /// children. Returns what it was.
    pub fn remove(&mut self, key: &str) -> Result<Snapshot, Error> {
        let record = self.store.existing(key)?;
        if self.has_children(key)? {
            return Err(Error::HasChildren {
                key: key.to_owned(),
            });
        }
        let snapshot = self.store.snapshot(key, &record)?;
        if !record.parent.is_empty() {
            self.remove_key(child_key(&record.parent, key));
        }
        self.remove_key(snapshot_key(key));
        Ok(snapshot)
    }

    /// Stages a label update of `info.name` by field paths.
    pub fn update(&mut self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let update = LabelUpdate::parse(fieldpaths, format_args!("snapshot {:?}", info.name))?;
        let mut record = self.store.existing(&info.name)?;
        record.labels = update.apply(std::mem::take(&mut record.labels), &info.labels)?;
        record.updated_ns = nanos(SystemTime::now());
        self.put(&info.name, &record)?;
        Ok(MetaStore::info(&info.name, &record))
    }

    /// Applies the staged change atomically and durably.
    pub fn apply(mut self) -> Result<(), Error> {
        let db = &self.store.db;
        if self.writes.is_empty() {
            return Ok(());
        }
        let written = if self.writes.len() == 1 {
            match self.writes.pop() {
                Some((key, Some(value))) => db.insert(key, value).map(drop),
                Some((key, None)) => db.remove(key).map(drop),
                None => Ok(()),
            }
        } else {
            let mut batch = sled::Batch::default();
            for (key, value) in self.writes.drain(..) {
                match value {
                    Some(value) => batch.insert(key, value),
                    None => batch.remove(key),
                }
            }
            db.apply_batch(batch)
        };
        written.map_err(storage("write"))?;
        db.flush().map_err(storage("flush"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
