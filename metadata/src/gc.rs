//! The garbage collector over this database: containerd's roots and edges.
//!
//! Roots, per namespace: images (→ their target and label references),
//! containers (→ their snapshot and label references), leases until their
//! `containerd.io/gc.expire` (→ the content, snapshots and ingests they hold;
//! held flat with `containerd.io/gc.flat`), content and snapshots labelled
//! `containerd.io/gc.root`, and ingests that are leased or were written to in
//! the last day (→ the digest they expect). Content and snapshots reference
//! more content and snapshots through `containerd.io/gc.ref.*` labels, and a
//! snapshot its parent.
//!
//! A collection runs in two phases, as containerd's:
//! 1. under the database write lock (one transaction), mark from the roots
//!    and delete every content and snapshot record and expired lease not
//!    marked;
//! 2. under the content lifecycle lock (which commits also take), delete
//!    every blob no namespace records and no live ingest expects, and abort
//!    ingests that are neither leased nor touched for a day;
//! 3. under each snapshotter's lock, remove the backend snapshots no record
//!    names, children first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use crated_core::content::Status;
use crated_core::gc::{Collector, Stats, EXPIRE_LABEL, FLAT_LABEL, ROOT_LABEL};
use crated_core::{Error, Namespace, Result};
use crated_gc::{label_refs, tricolor, Node, ResourceKind};
use serde::Deserialize;

use crate::db::{decode, WriteTx};
use crate::{keys, Db, NamespacedContent, NamespacedSnapshots};

/// How long an ingest nobody leases survives without a write (containerd
/// expires unleased ingests after a day too).
pub const INGEST_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Collects garbage in a [`Db`] and the blob store under its
/// [`NamespacedContent`]; the daemon's scheduler drives it.
#[derive(Clone)]
pub struct GarbageCollector {
    db: Db,
    content: NamespacedContent,
    snapshots: Option<NamespacedSnapshots>,
    ingest_expiry: Duration,
}

impl GarbageCollector {
    /// A collector over `db` and the content view `content` (built on the
    /// same `db`).
    pub fn new(db: Db, content: NamespacedContent) -> Self {
        Self {
            db,
            content,
            snapshots: None,
            ingest_expiry: INGEST_EXPIRY,
        }
    }

    /// Also collects snapshots: unreferenced records, then the backend
    /// snapshots no record names.
    pub fn with_snapshots(mut self, snapshots: NamespacedSnapshots) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// Overrides how long an unleased ingest may sit idle (tests).
    pub fn with_ingest_expiry(mut self, expiry: Duration) -> Self {
        self.ingest_expiry = expiry;
        self
    }
}

// Views of the records, holding only what the collector reads. Fields the
// records always have are required, so a schema change fails loudly here.

#[derive(Deserialize)]
struct ImageView {
    digest: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ContainerView {
    snapshotter: String,
    snapshot_key: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct LeaseView {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    resources: BTreeSet<(String, String)>,
}

#[derive(Deserialize)]
struct SnapshotView {
    parent: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ContentView {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// An ingest of the backend, by namespace and the namespace's own ref.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IngestKey {
    namespace: String,
    r#ref: String,
}

fn ingest_key(status: &Status) -> Option<IngestKey> {
    // The namespaced view names backend ingests `<ns>/<ref>`.
    let (namespace, r#ref) = status.r#ref.split_once('/')?;
    Some(IngestKey {
        namespace: namespace.to_owned(),
        r#ref: r#ref.to_owned(),
    })
}

/// The resource graph of the whole database, read in one transaction.
#[derive(Default)]
struct Graph {
    roots: Vec<Node>,
    /// Content records: their labels, for references.
    content: HashMap<Node, BTreeMap<String, String>>,
    /// Snapshot records: their parent (as a node) and labels.
    snapshots: HashMap<Node, (Option<Node>, BTreeMap<String, String>)>,
    /// What the sweep may remove, with the record's key.
    removable: Vec<(Node, Vec<u8>)>,
    /// Index entries that go with a removed record (a snapshot's entry
    /// under its parent).
    index_entries: HashMap<Node, Vec<u8>>,
    /// Ingests and the digest each expects.
    expected: HashMap<Node, String>,
    /// Ingests held by a live lease.
    leased_ingests: HashSet<IngestKey>,
}

impl Graph {
    fn load(
        tx: &WriteTx<'_>,
        now: SystemTime,
        ingests: &[Status],
        ingest_expiry: Duration,
    ) -> Result<Self> {
        let mut graph = Graph::default();
        let prefix = keys::namespaces();
        let namespaces: Vec<String> = tx
            .scan(&prefix)?
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            .collect();
        for ns in &namespaces {
            graph.load_leases(tx, ns, now)?;
            graph.load_images(tx, ns)?;
            graph.load_containers(tx, ns)?;
            graph.load_content(tx, ns)?;
            graph.load_snapshots(tx, ns)?;
        }
        for status in ingests {
            let Some(key) = ingest_key(status) else {
                continue;
            };
            let node = Node::new(ResourceKind::Ingest, &key.namespace, key.r#ref.clone());
            if let Some(expected) = &status.expected {
                graph.expected.insert(node.clone(), expected.to_string());
            }
            let fresh = now
                .duration_since(status.updated_at)
                .map_or(true, |idle| idle < ingest_expiry);
            if fresh {
                graph.roots.push(node);
            }
        }
        Ok(graph)
    }

    fn scan<T: serde::de::DeserializeOwned>(
        tx: &WriteTx<'_>,
        ns: &str,
        kind: &str,
    ) -> Result<Vec<(String, Vec<u8>, T)>> {
        let prefix = keys::objects_of(ns, kind);
        tx.scan(&prefix)?
            .into_iter()
            .map(|(key, raw)| {
                let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let value = decode(&format!("{kind} {id:?} in namespace {ns:?}"), &raw)?;
                Ok((id, key, value))
            })
            .collect()
    }

    fn load_leases(&mut self, tx: &WriteTx<'_>, ns: &str, now: SystemTime) -> Result<()> {
        for (id, key, lease) in Self::scan::<LeaseView>(tx, ns, crate::leases::KIND)? {
            let node = Node::new(ResourceKind::Lease, ns, id.clone());
            self.removable.push((node.clone(), key));
            if expired(&lease.labels, now, ns, &id) {
                continue;
            }
            let flat = lease.labels.contains_key(FLAT_LABEL);
            let held = |node: Node| if flat { node.into_flat() } else { node };
            self.roots.push(node);
            for (r#type, rid) in lease.resources {
                match r#type.split_once('/') {
                    None if r#type == "content" => {
                        self.roots
                            .push(held(Node::new(ResourceKind::Content, ns, rid)));
                    }
                    None if r#type == "ingests" => {
                        self.leased_ingests.insert(IngestKey {
                            namespace: ns.to_owned(),
                            r#ref: rid.clone(),
                        });
                        self.roots.push(Node::new(ResourceKind::Ingest, ns, rid));
                    }
                    Some(("snapshots", snapshotter)) => {
                        self.roots.push(held(Node::snapshot(ns, snapshotter, &rid)));
                    }
                    _ => tracing::warn!(
                        namespace = ns,
                        lease = id,
                        r#type,
                        "lease holds a resource of an unknown type"
                    ),
                }
            }
        }
        Ok(())
    }

    fn load_images(&mut self, tx: &WriteTx<'_>, ns: &str) -> Result<()> {
        for (_, _, image) in Self::scan::<ImageView>(tx, ns, crate::images::KIND)? {
            self.roots
                .push(Node::new(ResourceKind::Content, ns, image.digest));
            label_refs(ns, &image.labels, |n| self.roots.push(n));
        }
        Ok(())
    }

    fn load_containers(&mut self, tx: &WriteTx<'_>, ns: &str) -> Result<()> {
        for (_, _, container) in Self::scan::<ContainerView>(tx, ns, crate::containers::KIND)? {
            if !container.snapshotter.is_empty() {
                self.roots.push(Node::snapshot(
                    ns,
                    &container.snapshotter,
                    &container.snapshot_key,
                ));
            }
            label_refs(ns, &container.labels, |n| self.roots.push(n));
        }
        Ok(())
    }

    fn load_content(&mut self, tx: &WriteTx<'_>, ns: &str) -> Result<()> {
        for (digest, key, record) in Self::scan::<ContentView>(tx, ns, crate::content::KIND)? {
            let node = Node::new(ResourceKind::Content, ns, digest);
            if record.labels.contains_key(ROOT_LABEL) {
                self.roots.push(node.clone());
            }
            self.removable.push((node.clone(), key));
            self.content.insert(node, record.labels);
        }
        Ok(())
    }

    fn load_snapshots(&mut self, tx: &WriteTx<'_>, ns: &str) -> Result<()> {
        for (id, key, record) in Self::scan::<SnapshotView>(tx, ns, crate::snapshots::KIND)? {
            // The id is `<snapshotter>\0<key>`.
            let Some((snapshotter, name)) = id.split_once(char::from(keys::SEP)) else {
                continue;
            };
            let node = Node::snapshot(ns, snapshotter, name);
            if record.labels.contains_key(ROOT_LABEL) {
                self.roots.push(node.clone());
            }
            let parent = (!record.parent.is_empty())
                .then(|| Node::snapshot(ns, snapshotter, &record.parent));
            if !record.parent.is_empty() {
                self.index_entries.insert(
                    node.clone(),
                    keys::snapshot_child(ns, snapshotter, &record.parent, name),
                );
            }
            self.removable.push((node.clone(), key));
            self.snapshots.insert(node, (parent, record.labels));
        }
        Ok(())
    }

    fn refs(&self, node: &Node) -> Vec<Node> {
        if node.flat {
            return Vec::new();
        }
        let mut out = Vec::new();
        match node.kind {
            ResourceKind::Content => {
                if let Some(labels) = self.content.get(node) {
                    label_refs(&node.namespace, labels, |n| out.push(n));
                }
            }
            ResourceKind::Ingest => {
                if let Some(digest) = self.expected.get(node) {
                    out.push(Node::new(
                        ResourceKind::Content,
                        &node.namespace,
                        digest.clone(),
                    ));
                }
            }
            ResourceKind::Snapshot => {
                if let Some((parent, labels)) = self.snapshots.get(node) {
                    out.extend(parent.clone());
                    label_refs(&node.namespace, labels, |n| out.push(n));
                }
            }
            // Containers, images and leases are only roots.
            _ => {}
        }
        out
    }
}

/// Whether the lease's `containerd.io/gc.expire` is in the past. An
/// unreadable value keeps the lease, as containerd does.
fn expired(labels: &BTreeMap<String, String>, now: SystemTime, ns: &str, id: &str) -> bool {
    let Some(value) = labels.get(EXPIRE_LABEL) else {
        return false;
    };
    match time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        Ok(at) => SystemTime::from(at) < now,
        Err(e) => {
            tracing::info!(namespace = ns, lease = id, value, error = %e, "ignoring invalid lease expiry");
            false
        }
    }
}

#[async_trait::async_trait]
impl Collector for GarbageCollector {
    async fn collect(&self) -> Result<Stats> {
        let started = Instant::now();
        let any_ns = Namespace::new("default")?;
        let backend = &self.content.backend;
        let ingests = backend.list_statuses(&any_ns, &[]).await?;
        let now = SystemTime::now();
        let expiry = self.ingest_expiry;
        let ((records_removed, leased_ingests), _, _) = self.db.write_quiet(|tx| {
            let graph = Graph::load(tx, now, &ingests, expiry)?;
            let marked = tricolor(graph.roots.iter().cloned(), |n| {
                Ok::<_, Error>(graph.refs(n))
            })?;
            let mut removed = 0;
            for (node, key) in &graph.removable {
                if !marked.contains(node) {
                    tracing::debug!(kind = ?node.kind, namespace = node.namespace, key = node.key, "remove");
                    tx.delete(key.clone());
                    if let Some(entry) = graph.index_entries.get(node) {
                        tx.delete(entry.clone());
                    }
                    removed += 1;
                }
            }
            Ok((removed, graph.leased_ingests))
        })?;
        let metadata = started.elapsed();

        let started = Instant::now();
        let _lifecycle = self.content.lifecycle.lock().await;
        // Fresh lists under the lock: a commit that finished meanwhile has
        // its record now, and an ingest started meanwhile is seen.
        let mut keep: HashSet<String> = self.recorded_digests()?;
        let mut ingests_removed = 0;
        for status in backend.list_statuses(&any_ns, &[]).await? {
            let idle = now
                .duration_since(status.updated_at)
                .unwrap_or(Duration::ZERO);
            let leased = ingest_key(&status).is_some_and(|k| leased_ingests.contains(&k));
            if !leased && idle >= self.ingest_expiry {
                match backend.abort(&any_ns, &status.r#ref).await {
                    Ok(()) => ingests_removed += 1,
                    // In use by a writer right now: not abandoned after all.
                    Err(e) => tracing::debug!(r#ref = status.r#ref, error = %e, "keep ingest"),
                }
                continue;
            }
            if let Some(expected) = status.expected {
                keep.insert(expected.to_string());
            }
        }
        let mut blobs_removed = 0;
        for digest in backend.digests(&any_ns).await? {
            if keep.contains(digest.as_str()) {
                continue;
            }
            match backend.delete(&any_ns, &digest).await {
                Ok(()) => {
                    tracing::debug!(%digest, "removed content");
                    blobs_removed += 1;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.context(format!("remove unreferenced blob {digest}"))),
            }
        }
        let content = started.elapsed();
        drop(_lifecycle);
        let snapshots_removed = match &self.snapshots {
            Some(snapshots) => snapshots.sweep().await?,
            None => 0,
        };
        Ok(Stats {
            metadata,
            content,
            records_removed,
            blobs_removed,
            ingests_removed,
            snapshots_removed,
        })
    }
}

impl GarbageCollector {
    /// Every digest some namespace records.
    fn recorded_digests(&self) -> Result<HashSet<String>> {
        self.db.read(|tx| {
            let prefix = keys::namespaces();
            let mut out = HashSet::new();
            for (key, _) in tx.scan(&prefix)? {
                let ns = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let records = keys::objects_of(&ns, crate::content::KIND);
                for (key, _) in tx.scan(&records)? {
                    out.insert(String::from_utf8_lossy(&key[records.len()..]).into_owned());
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests;
