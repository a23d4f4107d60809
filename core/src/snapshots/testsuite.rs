//! The conformance suite of [`Snapshotter`], shared by every implementation
//! (native, overlay, btrfs, and the gRPC proxy of each), like containerd's
//! `snapshots/testsuite`.
//!
//! Cases mount what the snapshotter returns — with `mount::mount_all`, as
//! root — and check the trees through the mounts, so a snapshotter passes only if its
//! mounts really work. Every mount is undone when the case ends, passed or
//! failed.
//!
//! ```ignore
//! use crated_core::snapshots::testsuite::Fixture;
//!
//! async fn snapshotter() -> Fixture {
//!     let dir = tempfile::tempdir().unwrap();
//!     let sn = crated_snapshotter_native::Native::open(dir.path()).unwrap();
//!     Fixture::new(std::sync::Arc::new(sn), dir)
//! }
//!
//! crated_core::snapshotter_testsuite!(snapshotter);
//! ```
//!
//! Each case is also a public async fn taking `&dyn Snapshotter`. Cases
//! assert error kinds, never messages, and expect a fresh snapshotter.

// This is test code, compiled into the library only with the `testsuite`
// feature: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Kind, Labels, Snapshotter};
use crate::mount::{Mount, MountGuard};
use crate::Kind as ErrorKind;

/// The snapshotter under test and what keeps it alive for one case.
pub struct Fixture {
    /// The snapshotter under test; dropped before the guard.
    pub snapshotter: Arc<dyn Snapshotter>,
    /// Kept alive until the case is over: temporary directories, daemons.
    pub guard: Box<dyn Any + Send>,
}

impl Fixture {
    /// A fixture for `snapshotter`, keeping `guard` alive.
    pub fn new(snapshotter: Arc<dyn Snapshotter>, guard: impl Any + Send) -> Self {
        Self {
            snapshotter,
            guard: Box::new(guard),
        }
    }
}

/// Expands to one `#[test]` per case, in a module `snapshotter_conformance`,
/// each with a fresh snapshotter from `$factory` (an async fn returning a
/// [`Fixture`](crate::snapshots::testsuite::Fixture)), run with
/// [`content::testsuite::run`](crate::content::testsuite::run).
#[macro_export]
macro_rules! snapshotter_testsuite {
    ($factory:expr $(,)?) => {
        $crate::snapshotter_testsuite!(@cases $factory;
            layers_stack_through_mounts,
            views_are_read_only,
            stat_reports_kind_and_parent,
            bad_parents_and_taken_keys_are_refused,
            commit_needs_an_active_snapshot,
            remove_refuses_parents,
            update_labels,
            walk_with_filters,
            usage_counts_own_layer,
            mounts_of_committed_is_refused,
            ownership_and_modes_survive_commit,
            id_mapped_snapshots_show_owners_shifted,
            concurrent_prepares,
            deep_chain_mounts,
            cleanup_keeps_snapshots,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        mod snapshotter_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::content::testsuite::run(stringify!($case), async {
                        let fixture: $crate::snapshots::testsuite::Fixture = ($factory)().await;
                        $crate::snapshots::testsuite::$case(&*fixture.snapshotter).await;
                    });
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// Helpers

/// An empty directory (a mount point), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "crated-snapshot-suite-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Never recursive: if the unmount failed, the tree below is a
        // snapshot's, and an empty mount point is all there is to remove.
        let _ = fs::remove_dir(&self.0);
    }
}

/// Mounts performed at a temporary directory, undone on drop (even when
/// the case panics), then the directory removed.
pub struct Mounted {
    // Unmounted before the directory goes.
    guard: MountGuard,
    _dir: TempDir,
}

impl Mounted {
    /// The root of the mounted tree.
    pub fn path(&self) -> &Path {
        self.guard.path()
    }
}

/// Performs `mounts` on a fresh directory.
pub fn mount_all(mounts: &[Mount]) -> Mounted {
    let dir = TempDir::new("mnt");
    let guard = crate::mount::mount_all(mounts, &dir.0).unwrap_or_else(|e| panic!("{e}"));
    Mounted { guard, _dir: dir }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn kind_of<T: std::fmt::Debug>(result: crate::Result<T>) -> ErrorKind {
    result.expect_err("the call should have failed").kind()
}

/// Prepares `key` on `parent`, lets `fill` write into its mounts, commits
/// it as `name`.
async fn layer(sn: &dyn Snapshotter, name: &str, parent: &str, fill: impl FnOnce(&Path)) {
    let key = format!("{name}-active");
    let mounts = sn.prepare(&key, parent, Labels::new()).await.unwrap();
    {
        let m = mount_all(&mounts);
        fill(m.path());
    }
    sn.commit(name, &key, Labels::new()).await.unwrap();
}

fn names(infos: &[super::Info]) -> Vec<String> {
    let mut names: Vec<String> = infos.iter().map(|i| i.name.clone()).collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Cases

/// Files written in a layer show in its children, deletions and changes in
/// a child do not reach the parent, and a view shows the committed tree.
pub async fn layers_stack_through_mounts(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |root| {
        fs::write(root.join("foo"), "foo\n").unwrap();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/c"), "c\n").unwrap();
        std::os::unix::fs::symlink("foo", root.join("link")).unwrap();
    })
    .await;
    layer(sn, "second", "base", |root| {
        assert_eq!(fs::read_to_string(root.join("foo")).unwrap(), "foo\n");
        assert_eq!(fs::read_to_string(root.join("a/b/c")).unwrap(), "c\n");
        fs::remove_file(root.join("foo")).unwrap();
        fs::remove_dir_all(root.join("a")).unwrap();
        fs::write(root.join("bar"), "bar\n").unwrap();
    })
    .await;

    let view = sn.view("v", "second", Labels::new()).await.unwrap();
    {
        let m = mount_all(&view);
        assert!(!m.path().join("foo").exists(), "deleted in the child");
        assert!(
            !m.path().join("a").exists(),
            "directory deleted in the child"
        );
        assert_eq!(fs::read_to_string(m.path().join("bar")).unwrap(), "bar\n");
        assert_eq!(
            fs::read_link(m.path().join("link")).unwrap(),
            Path::new("foo")
        );
    }
    let base = sn.view("vb", "base", Labels::new()).await.unwrap();
    {
        let m = mount_all(&base);
        assert_eq!(fs::read_to_string(m.path().join("foo")).unwrap(), "foo\n");
        assert!(m.path().join("a/b/c").exists(), "the parent is unchanged");
        assert!(!m.path().join("bar").exists());
    }
    assert_eq!(
        names(&sn.walk(&[]).await.unwrap()),
        ["base", "second", "v", "vb"]
    );
}

/// A view cannot be written through its mounts.
pub async fn views_are_read_only(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |root| {
        fs::write(root.join("f"), "x").unwrap()
    })
    .await;
    let mounts = sn.view("v", "base", Labels::new()).await.unwrap();
    assert_eq!(sn.mounts("v").await.unwrap(), mounts);
    let m = mount_all(&mounts);
    let err = fs::write(m.path().join("new"), "x").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{err}");
    assert_eq!(fs::read_to_string(m.path().join("f")).unwrap(), "x");
}

/// `stat` gives kind, parent and labels of each kind of snapshot.
pub async fn stat_reports_kind_and_parent(sn: &dyn Snapshotter) {
    sn.prepare("a", "", labels(&[("k", "v")])).await.unwrap();
    let info = sn.stat("a").await.unwrap();
    assert_eq!((info.kind, info.parent.as_str()), (Kind::Active, ""));
    assert_eq!(info.labels, labels(&[("k", "v")]));
    sn.commit("c", "a", labels(&[("committed", "yes")]))
        .await
        .unwrap();
    let info = sn.stat("c").await.unwrap();
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(
        info.labels.get("committed").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        kind_of(sn.stat("a").await),
        ErrorKind::NotFound,
        "the active key is gone"
    );
    sn.prepare("child", "c", Labels::new()).await.unwrap();
    sn.view("view", "c", Labels::new()).await.unwrap();
    let child = sn.stat("child").await.unwrap();
    assert_eq!((child.kind, child.parent.as_str()), (Kind::Active, "c"));
    let view = sn.stat("view").await.unwrap();
    assert_eq!((view.kind, view.parent.as_str()), (Kind::View, "c"));
    assert!(view.created_at <= view.updated_at);
}

/// Missing or uncommitted parents and taken keys are refused and change
/// nothing.
pub async fn bad_parents_and_taken_keys_are_refused(sn: &dyn Snapshotter) {
    sn.prepare("a", "", Labels::new()).await.unwrap();
    let before = names(&sn.walk(&[]).await.unwrap());
    assert_eq!(
        kind_of(sn.prepare("a", "", Labels::new()).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind_of(sn.prepare("b", "nosuch", Labels::new()).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(sn.view("b", "nosuch", Labels::new()).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(sn.prepare("b", "a", Labels::new()).await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(names(&sn.walk(&[]).await.unwrap()), before);
    // The refused keys are free.
    sn.prepare("b", "", Labels::new()).await.unwrap();
}

/// Only active snapshots commit; a taken name is refused and the active
/// snapshot stays.
pub async fn commit_needs_an_active_snapshot(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |_| {}).await;
    sn.view("v", "base", Labels::new()).await.unwrap();
    assert_eq!(
        kind_of(sn.commit("x", "v", Labels::new()).await),
        ErrorKind::FailedPrecondition
    );
    sn.prepare("a", "base", Labels::new()).await.unwrap();
    assert_eq!(
        kind_of(sn.commit("base", "a", Labels::new()).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(sn.stat("a").await.unwrap().kind, Kind::Active);
    assert_eq!(
        kind_of(sn.commit("y", "nosuch", Labels::new()).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(sn.commit("z", "base", Labels::new()).await),
        ErrorKind::FailedPrecondition
    );
}

/// A snapshot with children cannot be removed; leaves first, then it can.
pub async fn remove_refuses_parents(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |root| {
        fs::write(root.join("f"), "x").unwrap()
    })
    .await;
    layer(sn, "mid", "base", |_| {}).await;
    sn.prepare("top", "mid", Labels::new()).await.unwrap();
    assert_eq!(
        kind_of(sn.remove("base").await),
        ErrorKind::FailedPrecondition
    );
    assert_eq!(
        kind_of(sn.remove("mid").await),
        ErrorKind::FailedPrecondition
    );
    // The refused snapshot still works.
    let m = mount_all(&sn.view("check", "base", Labels::new()).await.unwrap());
    assert!(m.path().join("f").exists());
    drop(m);
    sn.remove("check").await.unwrap();
    sn.remove("top").await.unwrap();
    sn.remove("mid").await.unwrap();
    sn.remove("base").await.unwrap();
    assert!(sn.walk(&[]).await.unwrap().is_empty());
    assert_eq!(kind_of(sn.remove("base").await), ErrorKind::NotFound);
}

/// Labels update by field path; other fields cannot be updated.
pub async fn update_labels(sn: &dyn Snapshotter) {
    sn.prepare("a", "", labels(&[("keep", "1"), ("drop", "2")]))
        .await
        .unwrap();
    let mut info = sn.stat("a").await.unwrap();
    info.labels = labels(&[("new", "3")]);
    let updated = sn
        .update(info.clone(), &["labels.new".into(), "labels.drop".into()])
        .await
        .unwrap();
    assert_eq!(updated.labels, labels(&[("keep", "1"), ("new", "3")]));
    assert!(updated.updated_at >= updated.created_at);
    assert_eq!(sn.stat("a").await.unwrap().labels, updated.labels);
    let replaced = sn.update(info.clone(), &["labels".into()]).await.unwrap();
    assert_eq!(replaced.labels, labels(&[("new", "3")]));
    let err = sn.update(info.clone(), &["parent".into()]).await;
    assert_eq!(kind_of(err), ErrorKind::InvalidArgument);
    info.name = "nosuch".into();
    assert_eq!(kind_of(sn.update(info, &[]).await), ErrorKind::NotFound);
}

/// Walk filters on kind (spelt lower-case, as containerd's filter adaptor
/// spells it), name, parent and labels; a bad filter is refused.
pub async fn walk_with_filters(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |_| {}).await;
    sn.prepare("a", "base", labels(&[("tier", "web")]))
        .await
        .unwrap();
    sn.view("v", "base", labels(&[("tier", "db")]))
        .await
        .unwrap();
    let walk = |f: &'static str| async move { names(&sn.walk(&[f.to_owned()]).await.unwrap()) };
    assert_eq!(walk("kind==committed").await, ["base"]);
    assert_eq!(walk("kind==active").await, ["a"]);
    assert_eq!(walk("kind==view").await, ["v"]);
    assert_eq!(walk("kind!=committed").await, ["a", "v"]);
    assert_eq!(walk("kind==active,labels.tier==web").await, ["a"]);
    assert_eq!(walk(r#"kind==view,labels."tier"==db"#).await, ["v"]);
    assert!(walk("kind==view,labels.tier==web").await.is_empty());
    // The spelling `ctr snapshots ls` prints is not the filter's.
    assert!(walk("kind==Active").await.is_empty());
    assert_eq!(walk("parent==base").await, ["a", "v"]);
    assert_eq!(walk(r#"labels."tier"==db"#).await, ["v"]);
    assert_eq!(walk("name~=^(a|v)$,labels.tier").await, ["a", "v"]);
    let both = sn
        .walk(&["kind==view".into(), "name==base".into()])
        .await
        .unwrap();
    assert_eq!(names(&both), ["base", "v"], "several filters are OR-ed");
    assert_eq!(
        kind_of(sn.walk(&["kind==".into()]).await.map(|_| ())),
        ErrorKind::InvalidArgument
    );
}

/// Usage counts the bytes and inodes a snapshot adds, not its parents'.
pub async fn usage_counts_own_layer(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |root| {
        fs::write(root.join("big"), vec![7u8; 1 << 20]).unwrap()
    })
    .await;
    let base = sn.usage("base").await.unwrap();
    assert!(base.size >= 1 << 20, "{base:?}");
    assert!(base.inodes >= 1, "{base:?}");
    let mounts = sn.prepare("a", "base", Labels::new()).await.unwrap();
    {
        let m = mount_all(&mounts);
        fs::write(m.path().join("small"), vec![1u8; 64 << 10]).unwrap();
    }
    let active = sn.usage("a").await.unwrap();
    assert!(active.size >= 64 << 10, "{active:?}");
    sn.commit("top", "a", Labels::new()).await.unwrap();
    let top = sn.usage("top").await.unwrap();
    assert!(top.size >= 64 << 10 && top.inodes >= 1, "{top:?}");
    assert_eq!(kind_of(sn.usage("nosuch").await), ErrorKind::NotFound);
}

/// Committed snapshots have no mounts of their own.
pub async fn mounts_of_committed_is_refused(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |_| {}).await;
    assert_eq!(
        kind_of(sn.mounts("base").await),
        ErrorKind::FailedPrecondition
    );
    assert_eq!(kind_of(sn.mounts("nosuch").await), ErrorKind::NotFound);
}

/// Owners, modes and the root directory's permissions carry into children.
pub async fn ownership_and_modes_survive_commit(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |root| {
        let file = root.join("owned");
        fs::write(&file, "x").unwrap();
        std::os::unix::fs::chown(&file, Some(1234), Some(5678)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        fs::set_permissions(root.join("dir"), fs::Permissions::from_mode(0o1777)).unwrap();
    })
    .await;
    let m = mount_all(&sn.prepare("a", "base", Labels::new()).await.unwrap());
    let meta = fs::metadata(m.path().join("owned")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (1234, 5678, 0o640)
    );
    let dir = fs::metadata(m.path().join("dir")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o1777);
    let root = fs::metadata(m.path()).unwrap();
    assert_eq!(
        root.mode() & 0o777,
        0o755,
        "a snapshot's root is 0755 as containerd's"
    );
}

/// A snapshot labelled with ID mappings (the root filesystem of a
/// `hostUsers: false` pod) mounts showing its layers' owners shifted into
/// the range and its root owned by the range's root, who can write there;
/// the layers on disk are not rewritten. Half a mapping, or one that leaves
/// the root unmapped, is refused and makes nothing.
pub async fn id_mapped_snapshots_show_owners_shifted(sn: &dyn Snapshotter) {
    use super::{GID_MAPPING_LABEL, UID_MAPPING_LABEL};
    layer(sn, "base", "", |root| {
        fs::write(root.join("f"), "x").unwrap();
        fs::write(root.join("g"), "x").unwrap();
        std::os::unix::fs::chown(root.join("g"), Some(1000), Some(1000)).unwrap();
    })
    .await;
    let mapped = labels(&[
        (UID_MAPPING_LABEL, "0:100000:65536"),
        (GID_MAPPING_LABEL, "0:200000:65536"),
    ]);
    let owners = |path: &Path| {
        let meta = fs::metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };
    let mounts = sn.prepare("pod", "base", mapped.clone()).await.unwrap();
    for m in &mounts {
        assert!(
            m.options.iter().any(|o| o == "uidmap=0:100000:65536"),
            "{m:?}"
        );
        assert!(
            m.options.iter().any(|o| o == "gidmap=0:200000:65536"),
            "{m:?}"
        );
    }
    assert_eq!(sn.mounts("pod").await.unwrap(), mounts);
    {
        let m = mount_all(&mounts);
        assert_eq!(owners(&m.path().join("f")), (100_000, 200_000));
        assert_eq!(owners(&m.path().join("g")), (101_000, 201_000));
        assert_eq!(
            owners(m.path()),
            (100_000, 200_000),
            "the root is the pod's"
        );
        let touched = std::process::Command::new("setpriv")
            .args([
                "--reuid=100000",
                "--regid=200000",
                "--clear-groups",
                "touch",
            ])
            .arg(m.path().join("new"))
            .status()
            .unwrap();
        assert!(touched.success(), "the pod's root writes in its root");
        assert_eq!(owners(&m.path().join("new")), (100_000, 200_000));
    }
    let view = sn.view("v", "base", mapped.clone()).await.unwrap();
    assert_eq!(
        owners(&mount_all(&view).path().join("f")),
        (100_000, 200_000)
    );
    let plain = sn.view("plain", "base", Labels::new()).await.unwrap();
    let m = mount_all(&plain);
    assert_eq!(
        owners(&m.path().join("f")),
        (0, 0),
        "the layer is unchanged"
    );
    assert_eq!(owners(&m.path().join("g")), (1000, 1000));

    let half = labels(&[(UID_MAPPING_LABEL, "0:100000:65536")]);
    let rootless = labels(&[
        (UID_MAPPING_LABEL, "1:100000:65536"),
        (GID_MAPPING_LABEL, "1:200000:65536"),
    ]);
    for bad in [half, rootless] {
        let result = sn.prepare("bad", "base", bad).await;
        assert_eq!(kind_of(result), ErrorKind::InvalidArgument);
        assert_eq!(kind_of(sn.stat("bad").await), ErrorKind::NotFound);
    }
}

/// Prepares racing on one parent all succeed, each with its own tree.
pub async fn concurrent_prepares(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |root| {
        fs::write(root.join("f"), "x").unwrap()
    })
    .await;
    let keys: Vec<String> = (0..16).map(|i| format!("c{i:02}")).collect();
    let results = futures_join_all(keys.iter().map(|k| sn.prepare(k, "base", Labels::new()))).await;
    for (key, result) in keys.iter().zip(results) {
        let mounts = result.unwrap_or_else(|e| panic!("prepare {key}: {e}"));
        let m = mount_all(&mounts);
        assert!(m.path().join("f").exists(), "{key}");
        fs::write(m.path().join(key), key).unwrap();
    }
    let m = mount_all(&sn.mounts("c00").await.unwrap());
    assert!(
        !m.path().join("c01").exists(),
        "each prepare has its own tree"
    );
    assert_eq!(sn.walk(&["kind==active".into()]).await.unwrap().len(), 16);
}

/// Awaits futures concurrently on the current task (no spawn: the futures
/// borrow the snapshotter).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (fut, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// A chain of 128 layers mounts with every layer's file visible (overlay's
/// mount options must stay short enough).
pub async fn deep_chain_mounts(sn: &dyn Snapshotter) {
    let mut parent = String::new();
    for i in 0..128 {
        let name = format!("layer-{i:03}");
        layer(sn, &name, &parent, |root| {
            fs::write(root.join(format!("f{i:03}")), i.to_string()).unwrap();
        })
        .await;
        parent = name;
    }
    let m = mount_all(&sn.prepare("top", &parent, Labels::new()).await.unwrap());
    for i in 0..128 {
        let f = m.path().join(format!("f{i:03}"));
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            i.to_string(),
            "{}",
            f.display()
        );
    }
}

/// Cleanup removes nothing a record refers to.
pub async fn cleanup_keeps_snapshots(sn: &dyn Snapshotter) {
    layer(sn, "base", "", |root| {
        fs::write(root.join("f"), "x").unwrap()
    })
    .await;
    sn.prepare("a", "base", Labels::new()).await.unwrap();
    sn.cleanup().await.unwrap();
    let m = mount_all(&sn.mounts("a").await.unwrap());
    assert_eq!(fs::read_to_string(m.path().join("f")).unwrap(), "x");
}
