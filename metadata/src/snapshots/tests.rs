use std::sync::Arc;

use crated_content_store::LocalStore;
use crated_core::gc::Collector as _;
use crated_core::snapshots::{Labels, Snapshotter, Snapshotters as _};
use crated_core::Namespace;

use super::*;
use crate::{GarbageCollector, NamespacedContent, SharingPolicy};

struct Fixture {
    _dir: tempfile::TempDir,
    db: Db,
    snapshots: NamespacedSnapshots,
    gc: GarbageCollector,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let native: Arc<dyn Snapshotter> =
        Arc::new(crated_snapshotter_native::open(&dir.path().join("native")).unwrap());
    let snapshots = NamespacedSnapshots::new(db.clone(), [("native".to_owned(), native)]);
    let content = NamespacedContent::new(
        db.clone(),
        Arc::new(LocalStore::open(&dir.path().join("content")).unwrap()),
        SharingPolicy::Shared,
    );
    let gc = GarbageCollector::new(db.clone(), content).with_snapshots(snapshots.clone());
    Fixture {
        _dir: dir,
        db,
        snapshots,
        gc,
    }
}

fn root() -> Labels {
    [("containerd.io/gc.root".to_owned(), "test".to_owned())].into()
}

/// The index entries of namespace `ns`, as `parent -> child`.
fn index(db: &Db, ns: &str) -> Vec<String> {
    let prefix = keys::indexes(ns);
    db.read(|tx| tx.scan(&prefix))
        .unwrap()
        .into_iter()
        .map(|(key, _)| {
            let parts: Vec<String> = key[prefix.len()..]
                .split(|b| *b == keys::SEP)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            // snapshot-children, snapshotter, parent, child
            format!("{} -> {}", parts[2], parts[3])
        })
        .collect()
}

/// base <- child (committed) <- top (active), base a collection root.
async fn chain(f: &Fixture, ns: &Namespace) -> Arc<dyn Snapshotter> {
    let sn = f.snapshots.get(ns, "native", None).unwrap();
    sn.prepare("w", "", Labels::new()).await.unwrap();
    sn.commit("base", "w", root()).await.unwrap();
    sn.prepare("child-w", "base", Labels::new()).await.unwrap();
    sn.commit("child", "child-w", Labels::new()).await.unwrap();
    sn.prepare("top", "child", Labels::new()).await.unwrap();
    sn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_follows_children_through_commit_remove_and_collection() {
    let f = fixture();
    let ns = Namespace::new("a").unwrap();
    let sn = chain(&f, &ns).await;
    assert_eq!(index(&f.db, "a"), ["base -> child", "child -> top"]);

    // Refused by this layer (which names the namespace), before the backend
    // is asked.
    let err = sn.remove("base").await.unwrap_err();
    assert_eq!(err.kind(), crated_core::Kind::FailedPrecondition);
    assert!(
        err.to_string().contains(
            r#"cannot remove snapshot "base" of snapshotter "native" in namespace "a": it has children"#
        ),
        "{err}"
    );
    sn.remove("top").await.unwrap();
    assert_eq!(index(&f.db, "a"), ["base -> child"]);

    // The collector takes the unreferenced child, and its entry with it.
    let stats = f.gc.collect().await.unwrap();
    assert_eq!(stats.records_removed, 1, "{stats:?}");
    assert!(index(&f.db, "a").is_empty());
    sn.remove("base").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_index_gets_it_on_open() {
    let f = fixture();
    let ns = Namespace::new("a").unwrap();
    let sn = chain(&f, &ns).await;
    // What schema 1 held: the same records, no index.
    let tree = f.db.tree();
    for entry in tree.scan_prefix(keys::indexes("a")) {
        tree.remove(entry.unwrap().0).unwrap();
    }
    tree.insert(keys::SCHEMA_VERSION, &b"1"[..]).unwrap();
    assert!(index(&f.db, "a").is_empty());

    crate::schema::upgrade(tree).unwrap();
    assert_eq!(index(&f.db, "a"), ["base -> child", "child -> top"]);
    let err = sn.remove("child").await.unwrap_err();
    assert!(err.to_string().contains("it has children"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_does_not_hold_its_parent() {
    let f = fixture();
    let ns = Namespace::new("a").unwrap();
    let sn = f.snapshots.get(&ns, "native", None).unwrap();
    sn.prepare("w", "", Labels::new()).await.unwrap();
    sn.commit("base", "w", Labels::new()).await.unwrap();
    // An entry naming a child that is not there.
    f.db.write(|tx| {
        tx.put(
            keys::snapshot_child("a", "native", "base", "gone"),
            Vec::new(),
        );
        Ok(())
    })
    .unwrap();
    sn.remove("base").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_numbers_are_reserved_in_blocks_and_never_reused() {
    let f = fixture();
    let ns = Namespace::new("a").unwrap();
    let sn = f.snapshots.get(&ns, "native", None).unwrap();
    let counter = || {
        f.db.read(|tx| tx.get(b"meta\0snapshot_seq\0native"))
            .unwrap()
            .map(|raw| String::from_utf8(raw).unwrap())
    };
    sn.prepare("k0", "", Labels::new()).await.unwrap();
    assert_eq!(counter().as_deref(), Some("64"), "one block reserved");
    for i in 1..65 {
        sn.prepare(&format!("k{i}"), "", Labels::new())
            .await
            .unwrap();
    }
    assert_eq!(
        counter().as_deref(),
        Some("128"),
        "the 65th took a second block"
    );

    // Another view over the same database (as after a restart) starts
    // past everything reserved.
    let backends = f
        .snapshots
        .backends
        .iter()
        .map(|(name, b)| (name.clone(), Arc::clone(&b.snapshotter)));
    let again = NamespacedSnapshots::new(f.db.clone(), backends);
    again
        .get(&ns, "native", None)
        .unwrap()
        .prepare("after", "", Labels::new())
        .await
        .unwrap();
    assert_eq!(counter().as_deref(), Some("192"));
    let inventory = f.db.inventory().unwrap();
    let keys: Vec<&str> = inventory
        .snapshots
        .iter()
        .map(|s| s.backend_key.as_str())
        .collect();
    assert!(keys.contains(&"a/1/k0"), "{keys:?}");
    assert!(keys.contains(&"a/129/after"), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_takes_the_record_and_the_collection_the_backend_snapshot() {
    let f = fixture();
    let ns = Namespace::new("a").unwrap();
    let sn = f.snapshots.get(&ns, "native", None).unwrap();
    sn.prepare("base-w", "", Labels::new()).await.unwrap();
    sn.commit("base", "base-w", Labels::new()).await.unwrap();
    sn.prepare("w", "base", Labels::new()).await.unwrap();
    let backend = Arc::clone(&f.snapshots.backends["native"].snapshotter);
    let in_backend = || async { backend.walk(&[]).await.unwrap().len() };
    assert_eq!(in_backend().await, 2);

    sn.remove("w").await.unwrap();
    // Gone for the namespace at once, as containerd's; in the backend until
    // a collection.
    let err = sn.stat("w").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(in_backend().await, 2);
    // Its parent can go too: the backend's child goes first.
    sn.remove("base").await.unwrap();
    assert_eq!(in_backend().await, 2);
    let stats = f.gc.collect().await.unwrap();
    assert_eq!(stats.snapshots_removed, 2, "{stats:?}");
    assert_eq!(in_backend().await, 0);
}
