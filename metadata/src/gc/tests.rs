use std::collections::BTreeMap;
use std::sync::Arc;

use crated_content_store::LocalStore;
use crated_core::content::{ContentStore, WriterOptions};
use crated_core::descriptor::Descriptor;
use crated_core::digest::Digest;
use crated_core::images::{Image, ImageStore};
use crated_core::leases::{LeaseStore, Resource};

use super::*;
use crate::SharingPolicy;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Db,
    backend: LocalStore,
    content: NamespacedContent,
    gc: GarbageCollector,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalStore::open(&dir.path().join("content")).unwrap();
    let db = Db::open(dir.path()).unwrap();
    let content =
        NamespacedContent::new(db.clone(), Arc::new(backend.clone()), SharingPolicy::Shared);
    let gc = GarbageCollector::new(db.clone(), content.clone());
    Fixture {
        _dir: dir,
        db,
        backend,
        content,
        gc,
    }
}

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sha256(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest::parse(&format!("sha256:{:x}", sha2::Sha256::digest(data))).unwrap()
}

impl Fixture {
    fn leases(&self) -> &dyn LeaseStore {
        &self.db
    }

    fn images(&self) -> &dyn ImageStore {
        &self.db
    }

    /// Writes `data` into `ns` with `labels`; returns its digest.
    async fn blob(&self, ns: &Namespace, data: &[u8], labels: &[(&str, &str)]) -> Digest {
        let digest = sha256(data);
        let writer = self
            .content
            .writer(
                ns,
                WriterOptions {
                    r#ref: format!("ref-{}", digest.hex()),
                    total: data.len() as u64,
                    expected: Some(digest.clone()),
                    lease: None,
                },
            )
            .await;
        let mut w = match writer {
            Ok(w) => w,
            Err(e) if e.is_already_exists() => return digest,
            Err(e) => panic!("{e}"),
        };
        // Shared from another namespace, the writer starts complete: the
        // commit records it without a transfer.
        if w.status().await.unwrap().offset == 0 {
            w.write(data).await.unwrap();
        }
        w.commit(
            data.len() as u64,
            Some(digest.clone()),
            self::labels(labels),
        )
        .await
        .unwrap();
        digest
    }

    async fn image(&self, ns: &Namespace, name: &str, target: &Digest) {
        let now = SystemTime::now();
        self.images()
            .create(
                ns,
                Image {
                    name: name.into(),
                    labels: BTreeMap::new(),
                    target: Descriptor {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        digest: target.clone(),
                        size: 1,
                        annotations: BTreeMap::new(),
                    },
                    created_at: now,
                    updated_at: now,
                },
            )
            .await
            .unwrap();
    }

    /// Whether `ns` records `digest`.
    async fn recorded(&self, ns: &Namespace, digest: &Digest) -> bool {
        match self.content.info(ns, digest).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => panic!("{e}"),
        }
    }

    /// Whether the blob store holds `digest`.
    async fn stored(&self, digest: &Digest) -> bool {
        self.backend.info(&ns("any"), digest).await.is_ok()
    }
}

#[tokio::test]
async fn unreferenced_content_goes_and_an_image_chain_stays() {
    let f = fixture();
    let n = ns("gc");
    let orphan = f.blob(&n, b"orphan", &[]).await;
    let layer = f.blob(&n, b"layer", &[]).await;
    let config = f.blob(&n, b"config", &[]).await;
    let manifest = f
        .blob(
            &n,
            b"manifest",
            &[
                ("containerd.io/gc.ref.content.config", config.as_str()),
                ("containerd.io/gc.ref.content.l.0", layer.as_str()),
            ],
        )
        .await;
    let index = f
        .blob(
            &n,
            b"index",
            &[("containerd.io/gc.ref.content.m.0", manifest.as_str())],
        )
        .await;
    f.image(&n, "docker.io/library/x:1", &index).await;

    let stats = f.gc.collect().await.unwrap();
    assert_eq!((stats.records_removed, stats.blobs_removed), (1, 1));
    assert!(!f.recorded(&n, &orphan).await);
    assert!(!f.stored(&orphan).await, "orphan bytes reclaimed");
    for kept in [&index, &manifest, &config, &layer] {
        assert!(f.recorded(&n, kept).await, "{kept} kept");
        assert!(f.stored(kept).await);
    }

    // Without the image, the whole chain goes.
    f.images()
        .delete(&n, "docker.io/library/x:1", false)
        .await
        .unwrap();
    let stats = f.gc.collect().await.unwrap();
    assert_eq!((stats.records_removed, stats.blobs_removed), (4, 4));
    assert!(!f.stored(&layer).await);
}

#[tokio::test]
async fn leases_hold_until_deleted_or_expired() {
    let f = fixture();
    let n = ns("gc");
    let held = f.blob(&n, b"held", &[]).await;
    let soon = f.blob(&n, b"soon", &[]).await;
    f.leases().create(&n, "l1", BTreeMap::new()).await.unwrap();
    f.leases()
        .add_resource(
            &n,
            "l1",
            Resource {
                id: held.to_string(),
                r#type: "content".into(),
            },
        )
        .await
        .unwrap();
    f.leases()
        .create(
            &n,
            "expired",
            labels(&[("containerd.io/gc.expire", "2001-01-01T00:00:00Z")]),
        )
        .await
        .unwrap();
    f.leases()
        .add_resource(
            &n,
            "expired",
            Resource {
                id: soon.to_string(),
                r#type: "content".into(),
            },
        )
        .await
        .unwrap();
    f.leases()
        .create(
            &n,
            "future",
            labels(&[("containerd.io/gc.expire", "2999-01-01T00:00:00Z")]),
        )
        .await
        .unwrap();

    let stats = f.gc.collect().await.unwrap();
    assert!(f.recorded(&n, &held).await);
    assert!(!f.recorded(&n, &soon).await, "expired lease holds nothing");
    let leases: Vec<String> = f
        .leases()
        .list(&n, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(leases, ["future", "l1"], "the expired lease is removed");
    assert_eq!(stats.records_removed, 2, "one blob record, one lease");

    LeaseStore::delete(&f.db, &n, "l1", false).await.unwrap();
    f.gc.collect().await.unwrap();
    assert!(!f.recorded(&n, &held).await);
    assert!(!f.stored(&held).await);
}

#[tokio::test]
async fn a_flat_lease_holds_only_what_it_names() {
    let f = fixture();
    let n = ns("gc");
    let child = f.blob(&n, b"child", &[]).await;
    let parent = f
        .blob(
            &n,
            b"parent",
            &[("containerd.io/gc.ref.content", child.as_str())],
        )
        .await;
    f.leases()
        .create(&n, "flat", labels(&[("containerd.io/gc.flat", "x")]))
        .await
        .unwrap();
    f.leases()
        .add_resource(
            &n,
            "flat",
            Resource {
                id: parent.to_string(),
                r#type: "content".into(),
            },
        )
        .await
        .unwrap();
    f.gc.collect().await.unwrap();
    assert!(f.recorded(&n, &parent).await);
    assert!(!f.recorded(&n, &child).await);
}

#[tokio::test]
async fn gc_root_label_keeps_and_invalid_expiry_keeps_the_lease() {
    let f = fixture();
    let n = ns("gc");
    let rooted = f
        .blob(&n, b"rooted", &[("containerd.io/gc.root", "2000")])
        .await;
    f.leases()
        .create(
            &n,
            "odd",
            labels(&[("containerd.io/gc.expire", "tomorrow")]),
        )
        .await
        .unwrap();
    f.gc.collect().await.unwrap();
    assert!(f.recorded(&n, &rooted).await);
    assert_eq!(f.leases().list(&n, &[]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn shared_bytes_stay_while_any_namespace_records_them() {
    let f = fixture();
    let (a, b) = (ns("a"), ns("b"));
    let digest = f
        .blob(&a, b"shared", &[("containerd.io/gc.root", "x")])
        .await;
    f.blob(&b, b"shared", &[]).await;
    let stats = f.gc.collect().await.unwrap();
    assert_eq!((stats.records_removed, stats.blobs_removed), (1, 0));
    assert!(f.recorded(&a, &digest).await);
    assert!(!f.recorded(&b, &digest).await);
    assert!(f.stored(&digest).await);
}

/// A delete takes the namespace's record; the blob goes with the
/// collection, once no namespace records it (containerd's order).
#[tokio::test]
async fn a_deleted_blob_goes_with_the_collection_after_the_last_record() {
    let f = fixture();
    let (a, b) = (ns("a"), ns("b"));
    let root = [("containerd.io/gc.root", "x")];
    let digest = f.blob(&a, b"twice", &root).await;
    f.blob(&b, b"twice", &root).await;
    f.content.delete(&a, &digest).await.unwrap();
    assert!(!f.recorded(&a, &digest).await);
    let err = f.content.info(&a, &digest).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    f.gc.collect().await.unwrap();
    assert!(f.stored(&digest).await, "b still records it");

    f.content.delete(&b, &digest).await.unwrap();
    assert!(f.stored(&digest).await, "until a collection");
    let stats = f.gc.collect().await.unwrap();
    assert_eq!(stats.blobs_removed, 1, "{stats:?}");
    assert!(!f.stored(&digest).await);
    let err = f.content.delete(&b, &digest).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn ingests_keep_their_expected_blob_and_stale_ones_are_aborted() {
    let f = fixture();
    let n = ns("gc");
    // A blob recorded nowhere (its record was removed) that a live ingest
    // expects: the ingest will claim it, so it stays.
    let data = b"expected by an ingest";
    let digest = sha256(data);
    let mut w = f
        .backend
        .writer(
            &n,
            WriterOptions {
                r#ref: "gc/live".into(),
                total: data.len() as u64,
                expected: Some(digest.clone()),
                lease: None,
            },
        )
        .await
        .unwrap();
    w.write(b"exp").await.unwrap();
    w.close().await.unwrap();
    f.blob(&n, data, &[]).await;
    f.db.write(|tx| {
        tx.delete(keys::object("gc", crate::content::KIND, &[digest.as_str()]));
        Ok(())
    })
    .unwrap();
    let stats = f.gc.collect().await.unwrap();
    assert_eq!(stats.ingests_removed, 0);
    assert!(
        f.stored(&digest).await,
        "a live ingest's expected blob stays"
    );

    // Idle past the expiry and unleased: aborted, and the blob goes.
    let strict = f.gc.clone().with_ingest_expiry(Duration::ZERO);
    f.leases()
        .create(&n, "keeps-other", BTreeMap::new())
        .await
        .unwrap();
    let other = f.backend.writer(
        &n,
        WriterOptions {
            r#ref: "gc/leased".into(),
            total: 0,
            expected: None,
            lease: None,
        },
    );
    other.await.unwrap().close().await.unwrap();
    f.leases()
        .add_resource(
            &n,
            "keeps-other",
            Resource {
                id: "leased".into(),
                r#type: "ingests".into(),
            },
        )
        .await
        .unwrap();
    let stats = strict.collect().await.unwrap();
    assert_eq!(stats.ingests_removed, 1);
    assert!(f.backend.status(&n, "gc/live").await.is_err());
    assert!(
        f.backend.status(&n, "gc/leased").await.is_ok(),
        "leased ingest kept"
    );
    assert!(!f.stored(&digest).await);
}

#[tokio::test]
async fn deletes_are_reported_dirty_to_mutation_callbacks() {
    let f = fixture();
    let n = ns("gc");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    f.db.on_mutation(Arc::new(move |dirty| sink.lock().unwrap().push(dirty)));
    let digest = f.blob(&n, b"x", &[]).await;
    f.content.delete(&n, &digest).await.unwrap();
    // Creating the namespace and the record, then the delete.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&true));
    assert!(seen[..seen.len() - 1].iter().all(|d| !d), "{seen:?}");
    // The collector's own sweep does not count as a mutation.
    let before = seen.len();
    f.gc.collect().await.unwrap();
    assert_eq!(before, seen.len());
}

/// Content that exists already, written again under a second lease, is
/// held by that lease too: when the first lease ends, the second keeps it
/// (two `ctr snapshots diff` making the same layer, two pulls of a blob).
#[tokio::test]
async fn a_second_lease_holds_content_that_already_existed() {
    let f = fixture();
    let n = ns("gc");
    for lease in ["first", "second"] {
        f.leases().create(&n, lease, BTreeMap::new()).await.unwrap();
    }
    let data = b"shared layer";
    let digest = sha256(data);
    // Committed under the first lease, then again (no expected digest, as
    // the diff service writes) under the second.
    for lease in ["first", "second"] {
        let mut w = f
            .content
            .writer(
                &n,
                WriterOptions {
                    r#ref: format!("diff-{lease}"),
                    total: 0,
                    expected: None,
                    lease: Some(lease.into()),
                },
            )
            .await
            .unwrap();
        w.write(data).await.unwrap();
        match w.commit(0, Some(digest.clone()), BTreeMap::new()).await {
            Ok(()) => assert_eq!(lease, "first"),
            Err(e) => assert!(e.is_already_exists() && lease == "second", "{e}"),
        }
    }
    // And opened with the expected digest under a third.
    f.leases()
        .create(&n, "third", BTreeMap::new())
        .await
        .unwrap();
    let err = f
        .content
        .writer(
            &n,
            WriterOptions {
                r#ref: "fetch".into(),
                total: data.len() as u64,
                expected: Some(digest.clone()),
                lease: Some("third".into()),
            },
        )
        .await
        .err()
        .unwrap();
    assert!(err.is_already_exists(), "{err}");

    for (gone, stays) in [("first", true), ("second", true), ("third", false)] {
        LeaseStore::delete(&f.db, &n, gone, false).await.unwrap();
        f.gc.collect().await.unwrap();
        assert_eq!(f.recorded(&n, &digest).await, stays, "after {gone} ended");
    }
}
