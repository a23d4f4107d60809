//! Garbage collection vocabulary shared by the metadata store (which knows
//! the resource graph), the scheduler (which decides when to collect) and
//! the services (which ask for a synchronous collection on `sync` deletes).
//!
//! The labels are containerd's, so clients that label their resources for
//! containerd's collector get the same behaviour here.

use std::time::Duration;

use crate::Result;

/// An object carrying this label is a root: kept with everything it
/// references.
pub const ROOT_LABEL: &str = "containerd.io/gc.root";
/// Labels starting with this (alone, or followed by `.` or `/` and any name)
/// reference the content whose digest is the value.
pub const CONTENT_REF_PREFIX: &str = "containerd.io/gc.ref.content";
/// `containerd.io/gc.ref.snapshot.<snapshotter>[/<name>]` references the
/// snapshot of that snapshotter whose key is the value.
pub const SNAPSHOT_REF_PREFIX: &str = "containerd.io/gc.ref.snapshot.";
/// Lease expiry, RFC 3339.
pub const EXPIRE_LABEL: &str = crate::leases::EXPIRE_LABEL;
/// On a lease: hold its resources but not what they reference.
pub const FLAT_LABEL: &str = crate::leases::FLAT_LABEL;

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Time the metadata phase held the database (mark and sweep of records).
    pub metadata: Duration,
    /// Time spent removing unreferenced blobs and stale ingests.
    pub content: Duration,
    /// Records removed: content records, expired leases.
    pub records_removed: usize,
    /// Blobs removed from the shared store.
    pub blobs_removed: usize,
    /// Abandoned ingests aborted.
    pub ingests_removed: usize,
    /// Backend snapshots removed.
    pub snapshots_removed: usize,
}

impl Stats {
    /// Total time the collection took.
    pub fn elapsed(&self) -> Duration {
        self.metadata + self.content
    }
}

/// Runs one full collection. Implemented by the metadata store.
#[async_trait::async_trait]
pub trait Collector: Send + Sync {
    /// Marks everything reachable from the roots and removes the rest.
    async fn collect(&self) -> Result<Stats>;
}

/// Asks the scheduler for a collection and waits for it: what a delete with
/// `sync` set uses so that its space is reclaimed before it returns.
#[async_trait::async_trait]
pub trait Trigger: Send + Sync {
    /// Schedules a collection now and returns its stats once it has run.
    async fn schedule_and_wait(&self) -> Result<Stats>;
}

/// Called after each write to the metadata database; `true` when the
/// write removed something (a collection may now reclaim space).
pub type MutationCallback = std::sync::Arc<dyn Fn(bool) + Send + Sync>;

/// Whatever reports its writes to the collection scheduler.
pub trait MutationSource: Send + Sync {
    /// Calls `callback` after every write from now on.
    fn on_mutation(&self, callback: MutationCallback);
}

/// The content a label references, if it is a content reference label
/// (`containerd.io/gc.ref.content`, `….content.<name>`, `….content/<name>`).
pub fn content_ref<'a>(key: &str, value: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(CONTENT_REF_PREFIX)?;
    (rest.is_empty() || rest.starts_with('.') || rest.starts_with('/')).then_some(value)
}

/// The `(snapshotter, key)` a label references, if it is a snapshot reference
/// label (`containerd.io/gc.ref.snapshot.<snapshotter>[/<name>]`).
pub fn snapshot_ref<'a>(key: &'a str, value: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = key.strip_prefix(SNAPSHOT_REF_PREFIX)?;
    let snapshotter = rest.split('/').next().unwrap_or(rest);
    (!snapshotter.is_empty()).then_some((snapshotter, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_reference_labels_are_containerds() {
        assert_eq!(
            content_ref("containerd.io/gc.ref.content", "sha256:a"),
            Some("sha256:a")
        );
        assert_eq!(
            content_ref("containerd.io/gc.ref.content.l.0", "x"),
            Some("x")
        );
        assert_eq!(
            content_ref("containerd.io/gc.ref.content/config", "x"),
            Some("x")
        );
        assert_eq!(content_ref("containerd.io/gc.ref.contentx", "x"), None);
        assert_eq!(content_ref("containerd.io/gc.root", "x"), None);
    }

    #[test]
    fn snapshot_reference_labels_name_their_snapshotter() {
        assert_eq!(
            snapshot_ref("containerd.io/gc.ref.snapshot.overlayfs", "k"),
            Some(("overlayfs", "k"))
        );
        assert_eq!(
            snapshot_ref("containerd.io/gc.ref.snapshot.btrfs/rootfs", "k"),
            Some(("btrfs", "k"))
        );
        assert_eq!(snapshot_ref("containerd.io/gc.ref.snapshot.", "k"), None);
    }
}
