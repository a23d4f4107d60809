//! The snapshotter conformance suite through the namespaced view, over the
//! native snapshotter, and what namespacing itself promises.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crated_core::snapshots::testsuite::Fixture;
use crated_core::snapshots::{Labels, Snapshotter, Snapshotters};
use crated_core::{Kind, Namespace};
use crated_metadata::{Db, NamespacedSnapshots};

fn open(dir: &std::path::Path) -> (Db, NamespacedSnapshots) {
    let db = Db::open(&dir.join("db")).unwrap();
    let native: Arc<dyn Snapshotter> =
        Arc::new(crated_snapshotter_native::open(&dir.join("native")).unwrap());
    let snapshots = NamespacedSnapshots::new(db.clone(), [("native".to_owned(), native)]);
    (db, snapshots)
}

async fn namespaced() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (_db, snapshots) = open(dir.path());
    let view = snapshots
        .get(&Namespace::new("suite").unwrap(), "native", None)
        .unwrap();
    Fixture::new(view, dir)
}

crated_core::snapshotter_testsuite!(namespaced);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_do_not_share_keys_and_cannot_be_deleted_while_holding_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (db, snapshots) = open(dir.path());
    let a = snapshots
        .get(&Namespace::new("a").unwrap(), "native", None)
        .unwrap();
    let b = snapshots
        .get(&Namespace::new("b").unwrap(), "native", None)
        .unwrap();
    a.prepare("k", "", Labels::new()).await.unwrap();
    b.prepare("k", "", Labels::new()).await.unwrap();
    a.commit("layer", "k", Labels::new()).await.unwrap();
    assert_eq!(
        b.stat("k").await.unwrap().kind,
        crated_core::snapshots::Kind::Active
    );
    assert_eq!(b.stat("layer").await.unwrap_err().kind(), Kind::NotFound);
    let err = b
        .prepare("child", "layer", Labels::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        Kind::NotFound,
        "a parent in another namespace is invisible"
    );
    let err = crated_core::namespaces::NamespaceStore::delete(&db, &Namespace::new("a").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition, "{err}");
    assert!(err.message().contains("snapshots"), "{err}");
    let err = snapshots
        .get(&Namespace::new("a").unwrap(), "nosuch", None)
        .err()
        .unwrap();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    assert_eq!(snapshots.names(), ["native"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_for_a_committed_target_is_already_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, snapshots) = open(dir.path());
    let sn = snapshots
        .get(&Namespace::new("a").unwrap(), "native", None)
        .unwrap();
    sn.prepare("x", "", Labels::new()).await.unwrap();
    sn.commit("sha256:chain", "x", Labels::new()).await.unwrap();
    let target: Labels = [(
        crated_core::snapshots::TARGET_LABEL.to_owned(),
        "sha256:chain".to_owned(),
    )]
    .into();
    let err = sn
        .prepare("extract-1 sha256:chain", "", target.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::AlreadyExists, "{err}");
    assert!(
        sn.stat("extract-1 sha256:chain")
            .await
            .unwrap_err()
            .is_not_found(),
        "nothing made"
    );
    // Another namespace has no such snapshot yet: it unpacks its own.
    let b = snapshots
        .get(&Namespace::new("b").unwrap(), "native", None)
        .unwrap();
    b.prepare("extract-1 sha256:chain", "", target)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_follows_its_snapshot_through_commit_and_remove() {
    use crated_core::leases::LeaseStore;

    let dir = tempfile::tempdir().unwrap();
    let (db, snapshots) = open(dir.path());
    let ns = Namespace::new("a").unwrap();
    db.create(&ns, "l", Default::default()).await.unwrap();
    let held = || async {
        let mut ids: Vec<String> = db
            .list_resources(&ns, "l")
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{}:{}", r.r#type, r.id))
            .collect();
        ids.sort();
        ids
    };
    let sn = snapshots.get(&ns, "native", Some("l")).unwrap();
    sn.prepare("work", "", Labels::new()).await.unwrap();
    assert_eq!(held().await, ["snapshots/native:work"]);
    sn.commit("layer", "work", Labels::new()).await.unwrap();
    assert_eq!(
        held().await,
        ["snapshots/native:layer"],
        "the commit replaces the key"
    );
    sn.remove("layer").await.unwrap();
    assert!(
        held().await.is_empty(),
        "a removed snapshot is no longer held"
    );
    let err = snapshots
        .get(&ns, "native", Some("nosuch"))
        .unwrap()
        .prepare("x", "", Labels::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::NotFound, "an unknown lease: {err}");
    assert!(
        sn.stat("x").await.unwrap_err().is_not_found(),
        "and nothing made"
    );
}
