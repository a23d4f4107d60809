//! Snapshotters: trees of filesystem snapshots, as containerd's
//! `snapshots.Snapshotter`.
//!
//! A snapshot is *active* (writable, from `prepare`), a *view* (read-only,
//! from `view`) or *committed* (immutable, from `commit` of an active one).
//! Only committed snapshots can be parents. Keys are the snapshotter's own
//! namespace-free names; the metadata layer maps namespaced keys onto them.
//!
//! ```no_run
//! # async fn f(sn: &dyn crated_core::snapshots::Snapshotter) -> crated_core::Result<()> {
//! // Unpack a layer: prepare on the parent chain, apply, commit by chain id.
//! let mounts = sn.prepare("extract-1", "", Default::default()).await?;
//! // … mount `mounts`, apply the layer, unmount …
//! sn.commit("sha256:chain1", "extract-1", Default::default()).await?;
//! let rootfs = sn.prepare("container-1", "sha256:chain1", Default::default()).await?;
//! # let _ = rootfs; Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use crate::filters::Adaptor;
use crate::mount::idmap::IdMap;
use crate::mount::Mount;
use crate::Result;

#[cfg(feature = "testsuite")]
pub mod testsuite;

/// Labels of a snapshot.
pub type Labels = BTreeMap<String, String>;

/// The label an unpacker puts on an extraction snapshot naming the
/// committed snapshot it will become: if that already exists, the prepare
/// answers AlreadyExists and the layer need not be unpacked again.
pub const TARGET_LABEL: &str = "containerd.io/snapshot.ref";

/// The prefix of the labels a snapshotter behind the metadata layer sees
/// (with [`TARGET_LABEL`]); the others stay in the metadata records.
pub const INHERITED_LABEL_PREFIX: &str = "containerd.io/snapshot/";

/// The labels of `labels` a snapshotter behind the metadata layer is given,
/// as containerd's `FilterInheritedLabels`: the target reference and the
/// `containerd.io/snapshot/…` ones (a remote snapshotter reads them to
/// find a layer in its registry).
///
/// ```
/// use crated_core::snapshots::{inherited_labels, Labels};
///
/// let labels = Labels::from([
///     ("containerd.io/snapshot.ref".to_owned(), "sha256:1".to_owned()),
///     ("containerd.io/snapshot/cri.layer-digest".to_owned(), "sha256:2".to_owned()),
///     ("containerd.io/gc.root".to_owned(), "now".to_owned()),
/// ]);
/// assert_eq!(inherited_labels(&labels).len(), 2);
/// ```
pub fn inherited_labels(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() == TARGET_LABEL || k.starts_with(INHERITED_LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The label asking a snapshot's mounts to show its files' owners shifted
/// for a user namespace (`container:host:size`, as the `uidmap=` mount
/// option): what containerd's CRI puts on a `hostUsers: false` pod's root
/// filesystems.
pub const UID_MAPPING_LABEL: &str = "containerd.io/snapshot/uidmapping";

/// The group twin of [`UID_MAPPING_LABEL`].
pub const GID_MAPPING_LABEL: &str = "containerd.io/snapshot/gidmapping";

/// The uid and gid mappings a snapshot's labels ask for, if they ask:
/// both labels or neither, each mapping the namespace's root.
///
/// ```
/// use crated_core::snapshots::{id_mappings, Labels, UID_MAPPING_LABEL, GID_MAPPING_LABEL};
///
/// let mut labels = Labels::new();
/// assert!(id_mappings(&labels).unwrap().is_none());
/// labels.insert(UID_MAPPING_LABEL.into(), "0:65536:65536".into());
/// assert!(id_mappings(&labels).is_err(), "no gid mapping");
/// labels.insert(GID_MAPPING_LABEL.into(), "0:65536:65536".into());
/// let (uids, _) = id_mappings(&labels).unwrap().unwrap();
/// assert_eq!(uids[0].to_host(0), Some(65536));
/// ```
#[allow(clippy::type_complexity)]
pub fn id_mappings(labels: &Labels) -> Result<Option<(Vec<IdMap>, Vec<IdMap>)>> {
    let parse = |key: &str| -> Result<Option<Vec<IdMap>>> {
        let Some(value) = labels.get(key) else {
            return Ok(None);
        };
        let maps = IdMap::parse_list(value)?;
        if !maps.iter().any(|m| m.to_host(0).is_some()) {
            return Err(crate::Error::invalid_argument(format!(
                "label {key}={value:?}: ID 0 (the namespace's root) must be mapped"
            )));
        }
        Ok(Some(maps))
    };
    match (parse(UID_MAPPING_LABEL)?, parse(GID_MAPPING_LABEL)?) {
        (None, None) => Ok(None),
        (Some(uids), Some(gids)) => Ok(Some((uids, gids))),
        _ => Err(crate::Error::invalid_argument(format!(
            "labels {UID_MAPPING_LABEL} and {GID_MAPPING_LABEL} go together"
        ))),
    }
}

/// The host IDs of a mapped namespace's root: who owns a root filesystem
/// the namespace's root must own.
pub fn mapped_root(uids: &[IdMap], gids: &[IdMap]) -> Option<(u32, u32)> {
    let root = |maps: &[IdMap]| maps.iter().find_map(|m| m.to_host(0));
    Some((root(uids)?, root(gids)?))
}

/// What a snapshot is. With the `serde` feature it serialises as its
/// containerd spelling (`"Active"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Kind {
    /// Read-only, from `view`; cannot be committed.
    View,
    /// Writable, from `prepare`; can be committed.
    Active,
    /// Immutable, from `commit`; can be a parent.
    Committed,
}

impl Kind {
    /// containerd's spelling, as `ctr snapshots ls` prints it (filters
    /// spell kinds in lower case, see [`InfoFields`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "View",
            Kind::Active => "Active",
            Kind::Committed => "Committed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key (active, view) or name (committed).
    pub name: String,
    /// The committed snapshot it is based on; empty for none.
    pub parent: String,
    /// What it is.
    pub kind: Kind,
    /// Labels.
    pub labels: Labels,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was last updated.
    pub updated_at: SystemTime,
}

/// Filter fields of a snapshot, as containerd's: `kind` (`active`, `view`
/// or `committed`), `name`, `parent`, `labels.<key>`.
pub struct InfoFields<'a>(pub &'a Info);

impl Adaptor for InfoFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path {
            // containerd's adaptor spells kinds in lower case, unlike the
            // `Active` its `ctr snapshots ls` prints: filters are written so.
            ["kind"] => Some(
                match self.0.kind {
                    Kind::Active => "active",
                    Kind::View => "view",
                    Kind::Committed => "committed",
                }
                .to_owned(),
            ),
            ["name"] => Some(self.0.name.clone()),
            ["parent"] => Some(self.0.parent.clone()),
            ["labels", key @ ..] => crate::filters::map_value(&self.0.labels, key),
            _ => None,
        }
    }
}

/// Disk use of a snapshot's own layer (not its parents').
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes used.
    pub size: i64,
    /// Inodes used.
    pub inodes: i64,
}

/// A snapshotter. Every call is atomic: an error leaves no partial record
/// or directory behind.
#[async_trait::async_trait]
pub trait Snapshotter: Send + Sync {
    /// The record of `key`; NotFound if absent.
    async fn stat(&self, key: &str) -> Result<Info>;

    /// Updates labels (`labels` or `labels.<key>` field paths; none = all);
    /// other paths are InvalidArgument.
    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;

    /// Disk use of `key`'s own layer: measured now for active snapshots,
    /// recorded at commit for committed ones.
    async fn usage(&self, key: &str) -> Result<Usage>;

    /// How to mount the active snapshot or view `key`; FailedPrecondition
    /// for a committed one.
    async fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Creates the active snapshot `key` on `parent` (a committed snapshot,
    /// or empty); returns its mounts. AlreadyExists if `key` is taken.
    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Creates the read-only view `key` of `parent`; returns its mounts.
    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Commits the active snapshot `key` as `name`; `key` is gone after.
    /// AlreadyExists if `name` is taken; FailedPrecondition for a view.
    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()>;

    /// Removes `key` and its files; FailedPrecondition while it has
    /// children.
    async fn remove(&self, key: &str) -> Result<()>;

    /// Every snapshot matching any of `filters` (none = all).
    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>>;

    /// Removes files no record refers to (left by a crash mid-operation).
    async fn cleanup(&self) -> Result<()>;
}

/// The snapshotters of a daemon by name, each seen through a namespace —
/// what the snapshots service serves (containerd's metadata snapshotters).
/// Keys are per namespace; the same key in two namespaces is two snapshots.
pub trait Snapshotters: Send + Sync {
    /// The names of the snapshotters, sorted.
    fn names(&self) -> Vec<String>;

    /// Snapshotter `name` as namespace `ns` sees it; InvalidArgument if no
    /// snapshotter of that name is loaded. With a `lease`, every snapshot
    /// created or committed through it is held by that lease (containerd's
    /// `containerd-lease` header).
    fn get(
        &self,
        ns: &crate::Namespace,
        name: &str,
        lease: Option<&str>,
    ) -> Result<std::sync::Arc<dyn Snapshotter>>;
}
