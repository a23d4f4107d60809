//! Snapshots per namespace over shared snapshotters, as containerd's
//! metadata snapshotter: a namespace's key `k` is the backend snapshot
//! `<namespace>/<seq>/k`, and its record here — kind, parent, labels, times —
//! is what `stat`, `walk` and `update` see.
//!
//! Records live under `obj\0<ns>\0snapshots\0<snapshotter>\0<key>`, so a
//! namespace holding snapshots cannot be deleted; an index entry per child
//! (see [`keys::snapshot_child`]) lets a remove find children without
//! reading every record of the namespace. Each backend's mutations
//! are serialised by a lock: the backend call and the record write cannot
//! share one transaction, so the lock keeps a check and the write after it
//! consistent; a backend call that succeeded is undone if its record cannot
//! be written. A remove takes the record only, as containerd's: the
//! collection it schedules removes the backend snapshot ([`NamespacedSnapshots::sweep`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crated_core::filters;
use crated_core::labels::{self, LabelUpdate};
use crated_core::mount::Mount;
use crated_core::snapshots::{
    inherited_labels, Info, InfoFields, Kind, Labels, Snapshotter, Snapshotters, Usage,
};
use crated_core::{Namespace, Result};
use serde::{Deserialize, Serialize};

use crate::db::{decode, encode, Db};
use crate::{keys, Error, SnapshotId};

/// The object kind of snapshot records.
pub(crate) const KIND: &str = "snapshots";

#[derive(Serialize, Deserialize, Clone)]
struct Record {
    /// The snapshot's key in the backend.
    backend_key: String,
    kind: Kind,
    parent: String,
    labels: BTreeMap<String, String>,
    created_ns: u64,
    updated_ns: u64,
}

/// The backend key a stored snapshot record (`what`, for errors) names.
pub(crate) fn backend_key_of(what: &str, raw: &[u8]) -> Result<String, crate::Error> {
    Ok(decode::<Record>(what, raw)?.backend_key)
}

/// Stages the children index of every snapshot record in `tree`: the
/// schema migration that introduced the index.
pub(crate) fn index_children(tree: &sled::Tree, batch: &mut sled::Batch) -> Result<(), Error> {
    let namespaces = keys::namespaces();
    for entry in tree.scan_prefix(&namespaces) {
        let (key, _) = entry.map_err(Error::Storage)?;
        let ns = String::from_utf8_lossy(&key[namespaces.len()..]).into_owned();
        let prefix = keys::objects_of(&ns, KIND);
        for entry in tree.scan_prefix(&prefix) {
            let (key, raw) = entry.map_err(Error::Storage)?;
            let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let Some((snapshotter, name)) = id.split_once(char::from(keys::SEP)) else {
                continue;
            };
            let record: Record = decode(&format!("snapshot {id:?} in namespace {ns:?}"), &raw)?;
            if !record.parent.is_empty() {
                batch.insert(
                    keys::snapshot_child(&ns, snapshotter, &record.parent, name),
                    Vec::new(),
                );
            }
        }
    }
    Ok(())
}

fn now_ns() -> u64 {
    nanos_of(SystemTime::now())
}

/// `t` in nanoseconds since the epoch, as records keep times.
fn nanos_of(t: SystemTime) -> u64 {
    let nanos = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Record {
    fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_owned(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created_at: time(self.created_ns),
            updated_at: time(self.updated_ns),
        }
    }
}

struct Backend {
    name: String,
    snapshotter: Arc<dyn Snapshotter>,
    /// Serialises this backend's mutations (see the module docs), and
    /// hands out the numbers of its backend keys.
    lock: tokio::sync::Mutex<Sequence>,
}

/// How many backend key numbers one database write reserves. The counter
/// in the database is the highest number reserved, so none is handed out
/// twice, across a crash too (those reserved and unused are skipped); a
/// write per block rather than a flush per snapshot created.
const SEQUENCE_BLOCK: u64 = 64;

/// The backend key numbers reserved and not yet handed out.
struct Sequence {
    /// The next number to hand out; past `reserved`, a new block is
    /// reserved first.
    next: u64,
    reserved: u64,
}

/// The snapshotters of a daemon, namespaced by the metadata database.
#[derive(Clone)]
pub struct NamespacedSnapshots {
    db: Db,
    backends: Arc<BTreeMap<String, Arc<Backend>>>,
}

impl NamespacedSnapshots {
    /// Namespaces `backends` (by snapshotter name) with records in `db`.
    pub fn new(db: Db, backends: impl IntoIterator<Item = (String, Arc<dyn Snapshotter>)>) -> Self {
        let backends = backends
            .into_iter()
            .map(|(name, snapshotter)| {
                let backend = Backend {
                    name: name.clone(),
                    snapshotter,
                    lock: tokio::sync::Mutex::new(Sequence {
                        next: 1,
                        reserved: 0,
                    }),
                };
                (name, Arc::new(backend))
            })
            .collect();
        Self {
            db,
            backends: Arc::new(backends),
        }
    }
}

impl NamespacedSnapshots {
    /// Every backend key the records of `snapshotter` name, in all
    /// namespaces.
    fn recorded(&self, snapshotter: &str) -> Result<HashSet<String>> {
        self.db.read(|tx| {
            let namespaces = keys::namespaces();
            let mut out = HashSet::new();
            for (key, _) in tx.scan(&namespaces)? {
                let ns = String::from_utf8_lossy(&key[namespaces.len()..]).into_owned();
                let prefix = keys::object(&ns, KIND, &[snapshotter, ""]);
                for (key, raw) in tx.scan(&prefix)? {
                    let what = String::from_utf8_lossy(&key);
                    let record: Record = decode(&what, &raw)?;
                    out.insert(record.backend_key);
                }
            }
            Ok(out)
        })
    }

    /// Removes the backend snapshots no record names — removed ones, what a
    /// collection left after removing records, and what a crash between a
    /// backend call and its record left — children before their parents,
    /// then asks each backend to clean up files no snapshot owns. Returns
    /// how many went.
    pub async fn sweep(&self) -> Result<usize> {
        let mut removed = 0;
        for backend in self.backends.values() {
            // Found under the lock, so no snapshot being created (its backend
            // call made, its record not yet written) is taken. A key found
            // unrecorded stays so (creates and commits name new keys), so the
            // removals run without it, and no call waits for them.
            let mut pending: Vec<String> = {
                let _lock = backend.lock.lock().await;
                let recorded = self.recorded(&backend.name)?;
                backend
                    .snapshotter
                    .walk(&[])
                    .await?
                    .into_iter()
                    .map(|info| info.name)
                    .filter(|name| !recorded.contains(name))
                    .collect()
            };
            while !pending.is_empty() {
                let before = pending.len();
                let mut parents = Vec::new();
                for key in pending {
                    match backend.snapshotter.remove(&key).await {
                        Ok(()) => removed += 1,
                        Err(err) if err.is_not_found() => {}
                        // Its children go first, in this pass.
                        Err(err) if err.kind() == crated_core::Kind::FailedPrecondition => {
                            parents.push(key)
                        }
                        // One stuck snapshot must not stop every collection.
                        Err(err) => tracing::warn!(
                            snapshotter = backend.name,
                            key,
                            error = %err,
                            "remove unreferenced snapshot"
                        ),
                    }
                }
                if parents.len() == before {
                    // Children something still names keep them.
                    break;
                }
                pending = parents;
            }
            // Then the files no snapshot owns: a crash mid-prepare leaves a
            // `new-*` tree, one mid-remove an `rm-*` tree, a SIGKILL a
            // snapshot directory whose record never landed. The first
            // collection runs just after start-up, so they go then too.
            match backend.snapshotter.cleanup().await {
                Ok(()) => {}
                Err(err) if err.kind() == crated_core::Kind::NotImplemented => {}
                Err(err) => tracing::warn!(
                    snapshotter = backend.name,
                    error = %err,
                    "clean up snapshot directories"
                ),
            }
        }
        Ok(removed)
    }
}

impl Snapshotters for NamespacedSnapshots {
    fn names(&self) -> Vec<String> {
        self.backends.keys().cloned().collect()
    }

    fn get(&self, ns: &Namespace, name: &str, lease: Option<&str>) -> Result<Arc<dyn Snapshotter>> {
        let backend = self
            .backends
            .get(name)
            .ok_or_else(|| Error::SnapshotterNotLoaded {
                name: name.to_owned(),
            })?;
        Ok(Arc::new(View {
            db: self.db.clone(),
            ns: ns.clone(),
            backend: Arc::clone(backend),
            lease: lease.map(str::to_owned),
        }))
    }
}

/// One snapshotter as one namespace sees it.
struct View {
    db: Db,
    ns: Namespace,
    backend: Arc<Backend>,
    /// Holds what this view creates or commits.
    lease: Option<String>,
}

impl View {
    fn key(&self, key: &str) -> Vec<u8> {
        keys::object(self.ns.as_str(), KIND, &[&self.backend.name, key])
    }

    /// The snapshot `key` of this view, as errors name it.
    fn id(&self, key: &str) -> SnapshotId {
        SnapshotId {
            namespace: self.ns.to_string(),
            snapshotter: self.backend.name.clone(),
            key: key.to_owned(),
        }
    }

    /// The index entry saying `child` has `parent`.
    fn child_key(&self, parent: &str, child: &str) -> Vec<u8> {
        keys::snapshot_child(self.ns.as_str(), &self.backend.name, parent, child)
    }

    /// Whether some snapshot of this view has `key` as its parent. The
    /// index names the candidates; each is confirmed by its record, so an
    /// entry whose record went or changed parent counts for nothing.
    fn has_children(&self, key: &str) -> Result<bool> {
        let prefix = keys::snapshot_children(self.ns.as_str(), &self.backend.name, key);
        self.db.read(|tx| {
            for (entry, _) in tx.scan(&prefix)? {
                let child = String::from_utf8_lossy(&entry[prefix.len()..]);
                if let Some(raw) = tx.get(&self.key(&child))? {
                    if decode::<Record>(&self.what(&child), &raw)?.parent == key {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        })
    }

    fn what(&self, key: &str) -> String {
        self.id(key).to_string()
    }

    fn load(&self, key: &str) -> Result<Option<Record>> {
        match self.db.read(|tx| tx.get(&self.key(key)))? {
            Some(raw) => Ok(Some(decode(&self.what(key), &raw)?)),
            None => Ok(None),
        }
    }

    fn existing(&self, key: &str) -> Result<Record> {
        Ok(self.load(key)?.ok_or_else(|| Error::SnapshotNotFound {
            snapshot: self.id(key),
        })?)
    }

    fn records(&self) -> Result<Vec<(String, Record)>> {
        let prefix = keys::object(self.ns.as_str(), KIND, &[&self.backend.name, ""]);
        let mut out = Vec::new();
        for (k, raw) in self.db.read(|tx| tx.scan(&prefix))? {
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((name.clone(), decode(&self.what(&name), &raw)?));
        }
        Ok(out)
    }

    /// A fresh backend key for `key`: `<namespace>/<seq>/<key>`. The
    /// caller holds the backend's lock, whose `seq` this advances.
    fn backend_key(&self, seq: &mut Sequence, key: &str) -> Result<String> {
        if seq.next > seq.reserved {
            let counter = [b"meta\0snapshot_seq\0", self.backend.name.as_bytes()].concat();
            let (used, reserved) = self.db.write(|tx| {
                let used = match tx.get(&counter)? {
                    Some(raw) => String::from_utf8_lossy(&raw).parse::<u64>().unwrap_or(0),
                    None => 0,
                };
                let reserved = used.saturating_add(SEQUENCE_BLOCK);
                tx.put(counter.clone(), reserved.to_string().into_bytes());
                Ok((used, reserved))
            })?;
            *seq = Sequence {
                next: used + 1,
                reserved,
            };
        }
        let n = seq.next;
        seq.next += 1;
        Ok(format!("{}/{n}/{key}", self.ns.as_str()))
    }

    /// Writes the record of `key`, replacing `replaces` (a committed
    /// active snapshot) if given, held by this view's lease. The parent is
    /// checked again here: a collection may have taken it since the backend
    /// call, which then fails rather than leave a child without one.
    fn store(&self, key: &str, record: &Record, replaces: Option<&str>) -> Result<()> {
        let raw = encode(&self.what(key), record)?;
        self.db.write(|tx| {
            if !record.parent.is_empty() && tx.get(&self.key(&record.parent))?.is_none() {
                return Err(Error::ParentNotFound {
                    parent: self.id(&record.parent),
                }
                .into());
            }
            tx.ensure_namespace(&self.ns)?;
            let r#type = format!("{KIND}/{}", self.backend.name);
            if let Some(old) = replaces {
                tx.delete(self.key(old));
                if !record.parent.is_empty() {
                    tx.delete(self.child_key(&record.parent, old));
                }
                if let Some(lease) = &self.lease {
                    crate::leases::release(tx, &self.ns, lease, &r#type, old)?;
                }
            }
            tx.put(self.key(key), raw);
            if !record.parent.is_empty() {
                tx.put(self.child_key(&record.parent, key), Vec::new());
            }
            if let Some(lease) = &self.lease {
                crate::leases::hold(tx, &self.ns, lease, &r#type, key)?;
            }
            Ok(())
        })
    }

    async fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        if key.is_empty() {
            return Err(Error::SnapshotKeyEmpty.into());
        }
        labels::validate_all(&labels)?;
        let mut seq = self.backend.lock.lock().await;
        if let Some(target) = labels.get(crated_core::snapshots::TARGET_LABEL) {
            if self.load(target)?.is_some() {
                return Err(Error::TargetExists {
                    target: self.id(target),
                }
                .into());
            }
        }
        if self.load(key)?.is_some() {
            return Err(Error::SnapshotExists {
                snapshot: self.id(key),
            }
            .into());
        }
        let backend_parent = if parent.is_empty() {
            String::new()
        } else {
            let record = self.load(parent)?.ok_or_else(|| Error::ParentNotFound {
                parent: self.id(parent),
            })?;
            if record.kind != Kind::Committed {
                return Err(Error::ParentNotCommitted {
                    parent: self.id(parent),
                }
                .into());
            }
            record.backend_key
        };
        let backend_key = self.backend_key(&mut seq, key)?;
        let sn = &self.backend.snapshotter;
        let made = match kind {
            Kind::View => {
                sn.view(&backend_key, &backend_parent, inherited_labels(&labels))
                    .await
            }
            _ => {
                sn.prepare(&backend_key, &backend_parent, inherited_labels(&labels))
                    .await
            }
        };
        let mounts = match made {
            Ok(mounts) => mounts,
            Err(err) if err.is_already_exists() => {
                let Some(target) = labels.get(crated_core::snapshots::TARGET_LABEL).cloned() else {
                    // The key was fresh: the backend says something else,
                    // and a caller must not take it for "done already".
                    return Err(crated_core::Error::unknown(format!(
                        "snapshotter {}: unexpected answer to a prepare of a new key: {err}",
                        self.backend.name
                    )));
                };
                drop(seq);
                self.adopt_target(&target, parent, &backend_parent, labels)
                    .await?;
                return Err(Error::TargetExists {
                    target: self.id(&target),
                }
                .into());
            }
            Err(err) => return Err(err),
        };
        let now = now_ns();
        let record = Record {
            backend_key: backend_key.clone(),
            kind,
            parent: parent.to_owned(),
            labels,
            created_ns: now,
            updated_ns: now,
        };
        if let Err(err) = self.store(key, &record, None) {
            let _ = sn.remove(&backend_key).await;
            return Err(err);
        }
        Ok(mounts)
    }
}

impl View {
    /// A remote snapshotter (stargz, nydus) answered a prepare labelled
    /// with `target` by committing a snapshot of that name itself, mounted
    /// from its registry: as containerd's metadata store, records the
    /// backend's snapshot as `target` on `parent`, held by this view's
    /// lease, so the unpack finds the layer done.
    async fn adopt_target(
        &self,
        target: &str,
        parent: &str,
        backend_parent: &str,
        mut labels: Labels,
    ) -> Result<()> {
        use crated_core::snapshots::TARGET_LABEL;
        let filter = format!("labels.\"{TARGET_LABEL}\"=={target:?}");
        let found = self
            .backend
            .snapshotter
            .walk(&[filter])
            .await?
            .into_iter()
            .find(|i| {
                i.kind == Kind::Committed
                    && i.labels.get(TARGET_LABEL).map(String::as_str) == Some(target)
                    && i.parent == backend_parent
            })
            .ok_or_else(|| {
                crated_core::Error::not_found(format!(
                    "snapshotter {} said target snapshot {target:?} exists, but has no \
                     committed snapshot labelled so on {backend_parent:?}",
                    self.backend.name
                ))
            })?;
        for (k, v) in found.labels {
            labels.entry(k).or_insert(v);
        }
        let record = Record {
            backend_key: found.name,
            kind: Kind::Committed,
            parent: parent.to_owned(),
            labels,
            created_ns: nanos_of(found.created_at),
            updated_ns: nanos_of(found.updated_at),
        };
        let _lock = self.backend.lock.lock().await;
        if self.load(target)?.is_some() {
            // Another unpack recorded it meanwhile.
            return Ok(());
        }
        self.store(target, &record, None)
    }
}

#[async_trait::async_trait]
impl Snapshotter for View {
    async fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.existing(key)?.info(key))
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let update = LabelUpdate::parse(fieldpaths, self.what(&info.name))?;
        let _lock = self.backend.lock.lock().await;
        let mut record = self.existing(&info.name)?;
        record.labels = update.apply(std::mem::take(&mut record.labels), &info.labels)?;
        record.updated_ns = now_ns();
        let raw = encode(&self.what(&info.name), &record)?;
        self.db.write(|tx| {
            tx.put(self.key(&info.name), raw);
            Ok(())
        })?;
        Ok(record.info(&info.name))
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let record = self.existing(key)?;
        self.backend.snapshotter.usage(&record.backend_key).await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let record = self.existing(key)?;
        if record.kind == Kind::Committed {
            return Err(Error::SnapshotNotMountable {
                snapshot: self.id(key),
            }
            .into());
        }
        self.backend.snapshotter.mounts(&record.backend_key).await
    }

    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels).await
    }

    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels).await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        if name.is_empty() {
            return Err(Error::SnapshotNameEmpty.into());
        }
        labels::validate_all(&labels)?;
        let mut seq = self.backend.lock.lock().await;
        let mut record = self.existing(key)?;
        if record.kind != Kind::Active {
            return Err(Error::SnapshotNotActive {
                snapshot: self.id(key),
            }
            .into());
        }
        if self.load(name)?.is_some() {
            return Err(Error::SnapshotExists {
                snapshot: self.id(name),
            }
            .into());
        }
        let backend_name = self.backend_key(&mut seq, name)?;
        self.backend
            .snapshotter
            .commit(
                &backend_name,
                &record.backend_key,
                inherited_labels(&labels),
            )
            .await?;
        // As containerd's: the committed snapshot has the commit's labels
        // and is new.
        record.backend_key = backend_name;
        record.kind = Kind::Committed;
        record.labels = labels;
        record.created_ns = now_ns();
        record.updated_ns = record.created_ns;
        self.store(name, &record, Some(key))
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let _lock = self.backend.lock.lock().await;
        let record = self.existing(key)?;
        if self.has_children(key)? {
            return Err(Error::SnapshotHasChildren {
                snapshot: self.id(key),
            }
            .into());
        }
        // The record only, as containerd's: the write marks the database
        // dirty, which schedules a collection, and its sweep removes the
        // backend snapshot (files and all) off the caller's path.
        self.db.write(|tx| {
            tx.delete(self.key(key));
            if !record.parent.is_empty() {
                tx.delete(self.child_key(&record.parent, key));
            }
            if let Some(lease) = &self.lease {
                let r#type = format!("{KIND}/{}", self.backend.name);
                match crate::leases::release(tx, &self.ns, lease, &r#type, key) {
                    // The lease went first: nothing to drop.
                    Err(err) if err.is_not_found() => {}
                    other => other?,
                }
            }
            tx.mark_dirty();
            Ok(())
        })
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filter = filters::parse_all(filters)?;
        Ok(self
            .records()?
            .into_iter()
            .map(|(name, record)| record.info(&name))
            .filter(|info| filter.matches(&InfoFields(info)))
            .collect())
    }

    async fn cleanup(&self) -> Result<()> {
        self.backend.snapshotter.cleanup().await
    }
}

#[cfg(test)]
mod tests;
