//! What the database records of other stores' objects, listed for checks
//! against those stores while the daemon is stopped (`crated fsck`), and
//! the removal of records a check found broken.

use crate::db::Db;
use crate::{containers, content, keys, snapshots};

/// A namespace's record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The namespace.
    pub namespace: String,
    /// The snapshotter (`overlayfs`).
    pub snapshotter: String,
    /// The snapshot's key in the namespace.
    pub key: String,
    /// Its key in the snapshotter.
    pub backend_key: String,
}

/// A container's record, as far as it names other stores' objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEntry {
    /// The namespace.
    pub namespace: String,
    /// The container's id.
    pub id: String,
    /// Its snapshotter, empty if none.
    pub snapshotter: String,
    /// Its snapshot key, empty if none.
    pub snapshot_key: String,
}

/// Every record that names an object of another store.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// The schema version stamped in the database.
    pub schema_version: Option<u32>,
    /// `(namespace, digest)` of every content record.
    pub blobs: Vec<(String, String)>,
    /// Every snapshot record.
    pub snapshots: Vec<SnapshotEntry>,
    /// Every container record.
    pub containers: Vec<ContainerEntry>,
}

/// The components of an object key after its kind.
fn id_parts(key: &[u8], prefix: &[u8]) -> Vec<String> {
    key[prefix.len()..]
        .split(|b| *b == keys::SEP)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

impl Db {
    /// Lists what the database records of content, snapshots and
    /// containers, in every namespace.
    pub fn inventory(&self) -> crated_core::Result<Inventory> {
        self.read(|tx| {
            let schema_version = tx
                .get(keys::SCHEMA_VERSION)?
                .and_then(|raw| String::from_utf8_lossy(&raw).parse().ok());
            let mut out = Inventory {
                schema_version,
                ..Inventory::default()
            };
            let namespaces = keys::namespaces();
            for (key, _) in tx.scan(&namespaces)? {
                let ns = String::from_utf8_lossy(&key[namespaces.len()..]).into_owned();
                let prefix = keys::objects_of(&ns, content::KIND);
                for (key, _) in tx.scan(&prefix)? {
                    let digest = id_parts(&key, &prefix).join("");
                    out.blobs.push((ns.clone(), digest));
                }
                let prefix = keys::objects_of(&ns, snapshots::KIND);
                for (key, raw) in tx.scan(&prefix)? {
                    let parts = id_parts(&key, &prefix);
                    let [snapshotter, key] = parts.as_slice() else {
                        continue;
                    };
                    let what = format!("snapshot {key:?} of {snapshotter} in {ns}");
                    out.snapshots.push(SnapshotEntry {
                        namespace: ns.clone(),
                        snapshotter: snapshotter.clone(),
                        key: key.clone(),
                        backend_key: snapshots::backend_key_of(&what, &raw)?,
                    });
                }
                let prefix = keys::objects_of(&ns, containers::KIND);
                for (key, raw) in tx.scan(&prefix)? {
                    let id = id_parts(&key, &prefix).join("");
                    let what = format!("container {id:?} in {ns}");
                    let (snapshotter, snapshot_key) = containers::snapshot_of(&what, &raw)?;
                    out.containers.push(ContainerEntry {
                        namespace: ns.clone(),
                        id,
                        snapshotter,
                        snapshot_key,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Removes namespace `ns`'s record of blob `digest` (one whose bytes
    /// are gone), durably.
    pub fn forget_blob(&self, ns: &str, digest: &str) -> crated_core::Result<()> {
        let key = keys::object(ns, content::KIND, &[digest]);
        self.write(|tx| {
            tx.delete(key);
            tx.mark_dirty();
            Ok(())
        })
    }

    /// Removes the record of snapshot `key` of `snapshotter` in `ns` (one
    /// whose files are gone), durably.
    pub fn forget_snapshot(
        &self,
        ns: &str,
        snapshotter: &str,
        key: &str,
    ) -> crated_core::Result<()> {
        let key = keys::object(ns, snapshots::KIND, &[snapshotter, key]);
        self.write(|tx| {
            tx.delete(key);
            tx.mark_dirty();
            Ok(())
        })
    }
}
