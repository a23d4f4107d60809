//! The conformance suite of [`ContentStore`], shared by every
//! implementation (the local store, the gRPC proxy against a daemon, …).
//!
//! Use it from an implementation's tests with
//! [`content_store_testsuite!`](crate::content_store_testsuite), giving an
//! async factory that returns a fresh store and a guard keeping whatever it
//! needs alive (temporary directories, a daemon):
//!
//! ```ignore
//! async fn store() -> (Arc<dyn ContentStore>, Box<dyn std::any::Any + Send>) {
//!     let dir = tempfile::tempdir().unwrap();
//!     (Arc::new(LocalStore::open(dir.path()).unwrap()), Box::new(dir))
//! }
//! crated_core::content_store_testsuite!(store);
//! ```
//!
//! Cases only use the trait, use their own namespace and refs, and assert
//! error kinds, never messages.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use super::{ContentStore, Info, WriterOptions};
use crate::digest::Digest;
use crate::{Kind, Namespace};

/// sha256 of `hello`.
const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
/// sha256 of the empty string.
const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn ns(case: &str) -> Namespace {
    Namespace::new(format!("testsuite-{case}")).unwrap()
}

fn options(r#ref: &str) -> WriterOptions {
    WriterOptions {
        r#ref: r#ref.into(),
        ..Default::default()
    }
}

/// Deterministic bytes that differ per seed.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `data` under `ref` in chunks and commits it; returns its digest.
async fn put(
    store: &dyn ContentStore,
    ns: &Namespace,
    r#ref: &str,
    data: &[u8],
    chunk: usize,
) -> Digest {
    let mut w = store.writer(ns, options(r#ref)).await.unwrap();
    for part in data.chunks(chunk.max(1)) {
        w.write(part).await.unwrap();
    }
    let digest = w.digest();
    w.commit(data.len() as u64, Some(digest.clone()), BTreeMap::new())
        .await
        .unwrap();
    digest
}

async fn read_all(store: &dyn ContentStore, ns: &Namespace, digest: &Digest) -> Vec<u8> {
    let reader = store.reader_at(ns, digest).await.unwrap();
    let mut out = vec![0u8; usize::try_from(reader.size()).unwrap()];
    let mut filled = 0;
    while filled < out.len() {
        let n = reader
            .read_at(filled as u64, &mut out[filled..])
            .await
            .unwrap();
        assert!(n > 0, "short read at {filled}");
        filled += n;
    }
    out
}

pub async fn write_commit_read_back(store: &dyn ContentStore) {
    let ns = ns("readback");
    let mut w = store.writer(&ns, options("hello")).await.unwrap();
    w.write(b"hel").await.unwrap();
    w.write(b"lo").await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, 5);
    assert_eq!(w.digest().as_str(), HELLO, "digest of what was written");
    w.commit(5, Some(Digest::parse(HELLO).unwrap()), BTreeMap::new())
        .await
        .unwrap();
    let digest = Digest::parse(HELLO).unwrap();
    let info = store.info(&ns, &digest).await.unwrap();
    assert_eq!((info.digest.as_str(), info.size), (HELLO, 5));
    assert_eq!(read_all(store, &ns, &digest).await, b"hello");
    let reader = store.reader_at(&ns, &digest).await.unwrap();
    let mut buf = [0u8; 3];
    assert_eq!(reader.read_at(1, &mut buf).await.unwrap(), 3);
    assert_eq!(&buf, b"ell");
    assert_eq!(
        reader.read_at(3, &mut buf).await.unwrap(),
        2,
        "short read at the end"
    );
    assert_eq!(&buf[..2], b"lo");
    assert_eq!(
        reader.read_at(5, &mut buf).await.unwrap(),
        0,
        "nothing past the end"
    );
    // The ingest is gone once committed.
    assert_eq!(
        store.status(&ns, "hello").await.unwrap_err().kind(),
        Kind::NotFound
    );
}

pub async fn empty_blob(store: &dyn ContentStore) {
    let ns = ns("empty");
    let w = store.writer(&ns, options("empty")).await.unwrap();
    assert_eq!(w.digest().as_str(), EMPTY);
    w.commit(0, Some(Digest::parse(EMPTY).unwrap()), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        store
            .info(&ns, &Digest::parse(EMPTY).unwrap())
            .await
            .unwrap()
            .size,
        0
    );
}

pub async fn wrong_size_is_refused(store: &dyn ContentStore) {
    let ns = ns("wrongsize");
    let data = bytes(1000, 1);
    let mut w = store.writer(&ns, options("wrongsize")).await.unwrap();
    w.write(&data).await.unwrap();
    let digest = w.digest();
    let err = w.commit(999, None, BTreeMap::new()).await.unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition, "{err}");
    assert_eq!(
        store.info(&ns, &digest).await.unwrap_err().kind(),
        Kind::NotFound
    );
}

pub async fn wrong_digest_is_refused(store: &dyn ContentStore) {
    let ns = ns("wrongdigest");
    let mut w = store.writer(&ns, options("wrongdigest")).await.unwrap();
    w.write(&bytes(1000, 2)).await.unwrap();
    let digest = w.digest();
    let err = w
        .commit(1000, Some(Digest::parse(HELLO).unwrap()), BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition, "{err}");
    assert_eq!(
        store.info(&ns, &digest).await.unwrap_err().kind(),
        Kind::NotFound
    );
    assert_eq!(
        store
            .info(&ns, &Digest::parse(HELLO).unwrap())
            .await
            .unwrap_err()
            .kind(),
        Kind::NotFound
    );
}

pub async fn commit_of_existing_is_already_exists(store: &dyn ContentStore) {
    let ns = ns("exists");
    let data = bytes(4096, 3);
    let digest = put(store, &ns, "first", &data, 1000).await;
    let mut w = store.writer(&ns, options("second")).await.unwrap();
    w.write(&data).await.unwrap();
    let err = w
        .commit(4096, Some(digest.clone()), BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::AlreadyExists, "{err}");
    assert_eq!(read_all(store, &ns, &digest).await, data);
}

pub async fn writer_for_existing_expected_is_already_exists(store: &dyn ContentStore) {
    let ns = ns("expected");
    let data = bytes(100, 4);
    let digest = put(store, &ns, "once", &data, 100).await;
    let opts = WriterOptions {
        r#ref: "again".into(),
        total: 100,
        expected: Some(digest),
    };
    let err = store
        .writer(&ns, opts)
        .await
        .err()
        .expect("writer for an existing blob");
    assert_eq!(err.kind(), Kind::AlreadyExists, "{err}");
}

pub async fn second_writer_on_ref_is_unavailable(store: &dyn ContentStore) {
    let ns = ns("locked");
    let mut w = store.writer(&ns, options("locked")).await.unwrap();
    w.write(b"x").await.unwrap();
    let err = store
        .writer(&ns, options("locked"))
        .await
        .err()
        .expect("second writer");
    assert_eq!(err.kind(), Kind::Unavailable, "{err}");
    w.close().await.unwrap();
    // Free again once closed.
    let w = store.writer(&ns, options("locked")).await.unwrap();
    w.close().await.unwrap();
    store.abort(&ns, "locked").await.unwrap();
}

pub async fn close_and_resume(store: &dyn ContentStore) {
    let ns = ns("resume");
    let data = bytes(300_000, 5);
    let mut w = store.writer(&ns, options("resume")).await.unwrap();
    w.write(&data[..100_000]).await.unwrap();
    w.close().await.unwrap();
    let status = store.status(&ns, "resume").await.unwrap();
    assert_eq!((status.r#ref.as_str(), status.offset), ("resume", 100_000));
    let mut w = store.writer(&ns, options("resume")).await.unwrap();
    assert_eq!(
        w.status().await.unwrap().offset,
        100_000,
        "resumes where it stopped"
    );
    w.write(&data[100_000..]).await.unwrap();
    let digest = w.digest();
    w.commit(300_000, None, BTreeMap::new()).await.unwrap();
    assert_eq!(read_all(store, &ns, &digest).await, data);
}

pub async fn dropped_writer_frees_its_ref(store: &dyn ContentStore) {
    let ns = ns("dropped");
    {
        let mut w = store.writer(&ns, options("dropped")).await.unwrap();
        w.write(b"abc").await.unwrap();
    }
    // A remote store learns of the drop asynchronously; clients retry a
    // locked ref (containerd's `OpenWriter` does), so the suite does too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let w = loop {
        match store.writer(&ns, options("dropped")).await {
            Ok(w) => break w,
            Err(e) if e.kind() == Kind::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the ref of a dropped writer is never freed: {e}"),
        }
    };
    assert_eq!(w.status().await.unwrap().offset, 3);
    w.close().await.unwrap();
    store.abort(&ns, "dropped").await.unwrap();
}

pub async fn truncate_and_rewrite(store: &dyn ContentStore) {
    let ns = ns("truncate");
    let mut w = store.writer(&ns, options("truncate")).await.unwrap();
    w.write(b"garbage").await.unwrap();
    w.truncate(0).await.unwrap();
    w.write(b"hello").await.unwrap();
    w.commit(5, Some(Digest::parse(HELLO).unwrap()), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        read_all(store, &ns, &Digest::parse(HELLO).unwrap()).await,
        b"hello"
    );
}

pub async fn abort_removes_ingest(store: &dyn ContentStore) {
    let ns = ns("abort");
    let mut w = store.writer(&ns, options("abort")).await.unwrap();
    w.write(b"partial").await.unwrap();
    w.close().await.unwrap();
    store.abort(&ns, "abort").await.unwrap();
    assert_eq!(
        store.status(&ns, "abort").await.unwrap_err().kind(),
        Kind::NotFound
    );
    assert_eq!(
        store.abort(&ns, "abort").await.unwrap_err().kind(),
        Kind::NotFound
    );
    let w = store.writer(&ns, options("abort")).await.unwrap();
    assert_eq!(
        w.status().await.unwrap().offset,
        0,
        "a new ingest starts empty"
    );
    w.close().await.unwrap();
    store.abort(&ns, "abort").await.unwrap();
}

pub async fn statuses_with_filters(store: &dyn ContentStore) {
    let ns = ns("statuses");
    for r in ["layer-a", "layer-b", "config"] {
        let mut w = store.writer(&ns, options(r)).await.unwrap();
        w.write(r.as_bytes()).await.unwrap();
        w.close().await.unwrap();
    }
    let refs = |s: Vec<super::Status>| s.into_iter().map(|s| s.r#ref).collect::<Vec<_>>();
    let mut all = refs(store.list_statuses(&ns, &[]).await.unwrap());
    all.sort();
    assert!(
        ["config", "layer-a", "layer-b"]
            .iter()
            .all(|r| all.contains(&r.to_string())),
        "{all:?}"
    );
    assert_eq!(
        refs(
            store
                .list_statuses(&ns, &["ref==config".into()])
                .await
                .unwrap()
        ),
        ["config"]
    );
    let mut layers = refs(
        store
            .list_statuses(&ns, &["ref~=^layer-".into()])
            .await
            .unwrap(),
    );
    layers.sort();
    assert_eq!(layers, ["layer-a", "layer-b"]);
    let err = store
        .list_statuses(&ns, &["ref==".into()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    for r in ["layer-a", "layer-b", "config"] {
        store.abort(&ns, r).await.unwrap();
    }
}

pub async fn update_labels(store: &dyn ContentStore) {
    let ns = ns("labels");
    let digest = put(store, &ns, "labels", &bytes(10, 6), 10).await;
    let info = |labels: &[(&str, &str)]| Info {
        digest: digest.clone(),
        size: 0,
        created_at: std::time::SystemTime::now(),
        updated_at: std::time::SystemTime::now(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let got = store
        .update(
            &ns,
            info(&[("a", "1"), ("b", "2")]),
            &["labels.a".into(), "labels.b".into()],
        )
        .await
        .unwrap();
    assert_eq!(got.labels.len(), 2);
    let got = store
        .update(&ns, info(&[]), &["labels.a".into()])
        .await
        .unwrap();
    assert_eq!(
        got.labels.keys().collect::<Vec<_>>(),
        ["b"],
        "labels.a without a value removes it"
    );
    let got = store.update(&ns, info(&[("z", "26")]), &[]).await.unwrap();
    assert_eq!(
        got.labels.keys().collect::<Vec<_>>(),
        ["z"],
        "no paths replaces all"
    );
    assert_eq!(store.info(&ns, &digest).await.unwrap().labels, got.labels);
    let err = store
        .update(&ns, info(&[]), &["size".into()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    let big = "v".repeat(5000);
    let err = store
        .update(&ns, info(&[("k", &big)]), &["labels.k".into()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    assert_eq!(
        store.info(&ns, &digest).await.unwrap().labels,
        got.labels,
        "a refused update changes nothing"
    );
    let missing = Info {
        digest: Digest::parse(HELLO).unwrap(),
        ..info(&[])
    };
    assert_eq!(
        store.update(&ns, missing, &[]).await.unwrap_err().kind(),
        Kind::NotFound
    );
}

pub async fn walk_with_filters(store: &dyn ContentStore) {
    let ns = ns("walk");
    let a = put(store, &ns, "walk-a", &bytes(11, 7), 5).await;
    let b = put(store, &ns, "walk-b", &bytes(22, 8), 5).await;
    let mut labels = Info {
        digest: a.clone(),
        size: 0,
        created_at: std::time::SystemTime::now(),
        updated_at: std::time::SystemTime::now(),
        labels: [("kind".to_string(), "config".to_string())].into(),
    };
    store
        .update(&ns, labels.clone(), &["labels.kind".into()])
        .await
        .unwrap();
    labels.digest = b.clone();
    labels.labels = [("kind".to_string(), "layer".to_string())].into();
    store
        .update(&ns, labels, &["labels.kind".into()])
        .await
        .unwrap();
    let digests = |infos: Vec<Info>| infos.into_iter().map(|i| i.digest).collect::<Vec<_>>();
    let all = digests(store.walk(&ns, &[]).await.unwrap());
    assert!(all.contains(&a) && all.contains(&b), "{all:?}");
    assert_eq!(
        digests(
            store
                .walk(&ns, &[r#"labels."kind"==config"#.into()])
                .await
                .unwrap()
        ),
        std::slice::from_ref(&a)
    );
    assert_eq!(
        digests(store.walk(&ns, &[format!("digest=={b}")]).await.unwrap()),
        std::slice::from_ref(&b)
    );
    let mut either = digests(
        store
            .walk(
                &ns,
                &["labels.kind==layer".into(), "labels.kind==config".into()],
            )
            .await
            .unwrap(),
    );
    either.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let mut expected = vec![a, b];
    expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(either, expected, "several filters are OR-ed");
    assert_eq!(
        store
            .walk(&ns, &["labels.kind==".into()])
            .await
            .unwrap_err()
            .kind(),
        Kind::InvalidArgument
    );
}

pub async fn delete(store: &dyn ContentStore) {
    let ns = ns("delete");
    let digest = put(store, &ns, "delete", &bytes(64, 9), 64).await;
    store.delete(&ns, &digest).await.unwrap();
    assert_eq!(
        store.info(&ns, &digest).await.unwrap_err().kind(),
        Kind::NotFound
    );
    assert_eq!(
        store.delete(&ns, &digest).await.unwrap_err().kind(),
        Kind::NotFound
    );
    assert!(store.reader_at(&ns, &digest).await.is_err());
}

pub async fn empty_ref_is_invalid(store: &dyn ContentStore) {
    let ns = ns("emptyref");
    let err = store
        .writer(&ns, options(""))
        .await
        .err()
        .expect("empty ref");
    assert_eq!(err.kind(), Kind::InvalidArgument);
}

pub async fn large_blob_in_uneven_chunks(store: &dyn ContentStore) {
    let ns = ns("large");
    let data = bytes(5 * 1024 * 1024 + 123, 10);
    let digest = put(store, &ns, "large", &data, 65_537).await;
    assert_eq!(
        store.info(&ns, &digest).await.unwrap().size,
        data.len() as u64
    );
    assert_eq!(read_all(store, &ns, &digest).await, data);
}

pub async fn concurrent_writers(store: &dyn ContentStore) {
    let ns = ns("concurrent");
    let (x, y) = (bytes(200_000, 11), bytes(300_000, 12));
    let (dx, dy) = tokio::join!(
        put(store, &ns, "cx", &x, 10_000),
        put(store, &ns, "cy", &y, 7_000)
    );
    assert_eq!(read_all(store, &ns, &dx).await, x);
    assert_eq!(read_all(store, &ns, &dy).await, y);
}

/// Expands to one `#[tokio::test]` per conformance case, each with a fresh
/// store from `$factory` (an async fn or closure returning
/// `(Arc<dyn ContentStore>, Box<dyn Any + Send>)`).
#[macro_export]
macro_rules! content_store_testsuite {
    ($factory:expr) => {
        $crate::content_store_testsuite!(@cases $factory;
            write_commit_read_back,
            empty_blob,
            wrong_size_is_refused,
            wrong_digest_is_refused,
            commit_of_existing_is_already_exists,
            writer_for_existing_expected_is_already_exists,
            second_writer_on_ref_is_unavailable,
            close_and_resume,
            dropped_writer_frees_its_ref,
            truncate_and_rewrite,
            abort_removes_ingest,
            statuses_with_filters,
            update_labels,
            walk_with_filters,
            delete,
            empty_ref_is_invalid,
            large_blob_in_uneven_chunks,
            concurrent_writers
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        mod content_store_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = ($factory)().await;
                    $crate::content::testsuite::$case(&*store).await;
                }
            )*
        }
    };
}
