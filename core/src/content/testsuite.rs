//! The conformance suite of [`ContentStore`], shared by every
//! implementation: the local store, the namespaced view of the metadata
//! layer, and the gRPC proxy against a running daemon.
//!
//! Run it from an implementation's tests with
//! [`content_store_testsuite!`](crate::content_store_testsuite), giving a
//! factory: an async fn or closure returning a fresh store and a guard that
//! keeps whatever the store needs alive (a temporary directory, a daemon)
//! until the case is over. The macro expands to one `#[test]` per case, each
//! on its own multi-threaded tokio runtime, so the calling crate needs no
//! tokio set-up:
//!
//! ```ignore
//! // In crated-content-store's tests; `Fixture::new` or a plain
//! // `(Arc<dyn ContentStore>, Box<dyn Any + Send>)` tuple both work.
//! use crated_core::content::testsuite::Fixture;
//!
//! async fn store() -> Fixture {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = crated_content_store::LocalStore::open(dir.path()).unwrap();
//!     Fixture::new(std::sync::Arc::new(store), dir)
//! }
//!
//! crated_core::content_store_testsuite!(store);
//! ```
//!
//! Cases use nothing but the trait: they never look at files, and every ref
//! and blob a case makes is unique to the process that runs it, so cases can
//! share one store or daemon, concurrently and across runs. They act in the
//! namespace `testsuite`, clean up what they made when they pass, and assert
//! error kinds, never messages.
//!
//! Each case is also a public async fn taking `&dyn ContentStore`, for a
//! test that wants to run one case in its own set-up.

// This is test code, compiled into the library only with the `testsuite`
// feature: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest as _;

use super::{ContentStore, Info, Labels, Status, Writer, WriterOptions};
use crate::digest::Digest;
use crate::{Kind, Namespace};

/// How long one case may take before it fails as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Tolerance for timestamp checks: file systems stamp times from a coarse
/// clock that may lag `SystemTime::now()` by a tick.
const CLOCK_SLACK: Duration = Duration::from_millis(50);

/// The store under test and what keeps it alive for one case.
///
/// Fields drop in order: the store first, then the guard (which may remove
/// the directory the store lives in, or stop its daemon).
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn ContentStore>,
    /// Kept alive until the case is over: temporary directories, daemons.
    pub guard: Box<dyn Any + Send>,
}

impl Fixture {
    /// A fixture for `store`, keeping `guard` alive (use `()` for none).
    pub fn new(store: Arc<dyn ContentStore>, guard: impl Any + Send) -> Self {
        Self {
            store,
            guard: Box::new(guard),
        }
    }
}

impl From<(Arc<dyn ContentStore>, Box<dyn Any + Send>)> for Fixture {
    fn from((store, guard): (Arc<dyn ContentStore>, Box<dyn Any + Send>)) -> Self {
        Self { store, guard }
    }
}

/// Runs one case to completion on a fresh multi-threaded runtime, failing it
/// if it takes longer than [`CASE_TIMEOUT`]. Used by
/// [`content_store_testsuite!`](crate::content_store_testsuite).
pub fn run<F: Future<Output = ()>>(case: &str, test: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the conformance case");
    runtime.block_on(async {
        if tokio::time::timeout(CASE_TIMEOUT, test).await.is_err() {
            panic!("content store conformance case {case} hung for {CASE_TIMEOUT:?}");
        }
    });
}

/// Expands to one `#[test]` per conformance case, in a module
/// `content_store_conformance`, each with a fresh store from `$factory`.
///
/// `$factory` is an async fn or a closure returning a future; its output is
/// a [`Fixture`](crate::content::testsuite::Fixture) or anything that turns
/// into one, such as `(Arc<dyn ContentStore>, Box<dyn Any + Send>)`. It runs
/// inside the case's tokio runtime, so it may spawn tasks.
///
/// ```ignore
/// async fn store() -> (Arc<dyn ContentStore>, Box<dyn std::any::Any + Send>) { … }
/// crated_core::content_store_testsuite!(store);
/// ```
#[macro_export]
macro_rules! content_store_testsuite {
    ($factory:expr $(,)?) => {
        $crate::content_store_testsuite!(@cases $factory;
            write_commit_read_back,
            empty_blob,
            commit_wrong_size_fails_and_keeps_ingest,
            writes_past_the_declared_total_are_checked_at_commit,
            commit_wrong_digest_fails_and_keeps_ingest,
            commit_existing_is_already_exists,
            writer_for_existing_expected_is_already_exists,
            second_writer_on_ref_is_unavailable,
            close_and_resume,
            dropped_writer_releases_ref,
            truncate_and_rewrite,
            abort_removes_ingest,
            statuses_with_filters,
            update_labels,
            walk_with_filters,
            digests_name_what_walk_lists,
            delete_removes_blob,
            missing_blob_is_not_found,
            empty_ref_is_invalid_argument,
            large_blob_in_uneven_chunks,
            concurrent_writers,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        mod content_store_conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::content::testsuite::run(stringify!($case), async {
                        let fixture: $crate::content::testsuite::Fixture =
                            ($factory)().await.into();
                        $crate::content::testsuite::$case(&*fixture.store).await;
                    });
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// Helpers

/// The namespace every case acts in.
pub fn namespace() -> Namespace {
    Namespace::new("testsuite").expect("\"testsuite\" is a valid namespace")
}

/// A prefix unique to this process: pid and start time.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{:x}-{:x}", std::process::id(), nanos)
    })
}

fn next() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A ref no other case or run uses.
fn unique_ref(name: &str) -> String {
    format!("testsuite-{}-{}-{name}", run_id(), next())
}

/// `len` pseudo-random bytes that no other call of this process, nor any
/// other run, produces (for `len` of 8 or more): a sha256 chain seeded with
/// the run and a counter.
fn unique_bytes(len: usize) -> Vec<u8> {
    let seed = format!("{}-{}", run_id(), next());
    let mut state = sha2::Sha256::digest(seed.as_bytes());
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let want = (len - out.len()).min(state.len());
        out.extend_from_slice(&state[..want]);
        state = sha2::Sha256::digest(state);
    }
    out
}

/// Fast filler for big blobs: unique, not cryptographically random.
fn unique_bulk(len: usize) -> Vec<u8> {
    let mut out = unique_bytes(64.min(len));
    let mut x = u64::from_le_bytes(
        sha2::Sha256::digest(&out)[..8]
            .try_into()
            .expect("8 bytes of a 32-byte hash"),
    ) | 1;
    while out.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let want = (len - out.len()).min(8);
        out.extend_from_slice(&bytes[..want]);
    }
    out
}

/// The sha256 digest of `data`, computed here, not by the store.
pub fn sha256(data: &[u8]) -> Digest {
    Digest::sha256(data)
}

fn options(r#ref: &str) -> WriterOptions {
    WriterOptions {
        r#ref: r#ref.to_owned(),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An `Info` for `update`: only digest and labels matter.
fn info_with(digest: &Digest, pairs: &[(&str, &str)]) -> Info {
    Info {
        digest: digest.clone(),
        size: 0,
        created_at: UNIX_EPOCH,
        updated_at: UNIX_EPOCH,
        labels: labels(pairs),
    }
}

#[track_caller]
fn assert_kind<T>(result: crate::Result<T>, kind: Kind, what: &str) {
    match result {
        Ok(_) => panic!("{what}: succeeded, expected {kind}"),
        Err(err) => assert_eq!(err.kind(), kind, "{what}: {err}"),
    }
}

#[track_caller]
fn assert_time_between(what: &str, t: SystemTime, before: SystemTime, after: SystemTime) {
    assert!(
        t + CLOCK_SLACK >= before && t <= after + CLOCK_SLACK,
        "{what} {t:?} is not between {before:?} and {after:?}"
    );
}

async fn open(store: &dyn ContentStore, options: WriterOptions) -> Box<dyn Writer> {
    let r#ref = options.r#ref.clone();
    match store.writer(&namespace(), options).await {
        Ok(w) => w,
        Err(err) => panic!("open writer for ref {ref:?}: {err}"),
    }
}

async fn write_chunks(w: &mut dyn Writer, data: &[u8], chunk: usize) {
    for part in data.chunks(chunk.max(1)) {
        w.write(part).await.unwrap();
    }
}

/// Writes `data` under a fresh ref in `chunk`-sized pieces and commits it
/// with its size and digest; returns the digest.
async fn put(store: &dyn ContentStore, data: &[u8], chunk: usize) -> Digest {
    let digest = sha256(data);
    let mut w = open(store, options(&unique_ref("put"))).await;
    write_chunks(&mut *w, data, chunk).await;
    assert_eq!(
        w.digest().await.unwrap(),
        digest,
        "writer digest of {} bytes",
        data.len()
    );
    w.commit(data.len() as u64, Some(digest.clone()), Labels::new())
        .await
        .unwrap();
    digest
}

/// Reads a whole blob through `reader_at`, in `chunk`-sized reads.
async fn read_all(store: &dyn ContentStore, digest: &Digest, chunk: usize) -> Vec<u8> {
    let reader = store.reader_at(&namespace(), digest).await.unwrap();
    let size = usize::try_from(reader.size()).unwrap();
    let mut out = vec![0u8; size];
    let mut filled = 0;
    while filled < size {
        let end = (filled + chunk.max(1)).min(size);
        let n = reader
            .read_at(filled as u64, &mut out[filled..end])
            .await
            .unwrap();
        assert!(
            n > 0,
            "read_at({filled}) of {digest} returned 0 before the end ({size})"
        );
        filled += n;
    }
    out
}

/// Best-effort removal of what a passing case made, so a shared store does
/// not fill up.
async fn remove(store: &dyn ContentStore, digests: &[&Digest]) {
    for digest in digests {
        let _ = store.delete(&namespace(), digest).await;
    }
}

fn refs(statuses: Vec<Status>) -> Vec<String> {
    let mut refs: Vec<String> = statuses.into_iter().map(|s| s.r#ref).collect();
    refs.sort();
    refs
}

async fn walk_digests(store: &dyn ContentStore, filters: Vec<String>) -> Vec<Digest> {
    digests(store.walk(&namespace(), &filters).await.unwrap())
}

fn digests(infos: Vec<Info>) -> Vec<Digest> {
    let mut digests: Vec<Digest> = infos.into_iter().map(|i| i.digest).collect();
    digests.sort();
    digests
}

// ---------------------------------------------------------------------------
// Cases

/// A blob written in pieces, committed with labels, is there with its size,
/// digest, labels and commit time, and reads back identically, also in
/// ranges; its ingest is gone.
pub async fn write_commit_read_back(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bytes(1000);
    let digest = sha256(&data);
    let r#ref = unique_ref("readback");
    let commit_labels = labels(&[("containerd.io/gc.root", "2024-01-01T00:00:00Z")]);

    let before_open = SystemTime::now();
    let mut w = open(
        store,
        WriterOptions {
            r#ref: r#ref.clone(),
            total: data.len() as u64,
            expected: Some(digest.clone()),
            lease: None,
        },
    )
    .await;
    let after_open = SystemTime::now();
    let status = w.status().await.unwrap();
    assert_eq!(
        (status.r#ref.as_str(), status.offset, status.total),
        (r#ref.as_str(), 0, 1000)
    );
    assert_time_between("started_at", status.started_at, before_open, after_open);
    assert_eq!(
        w.digest().await.unwrap(),
        sha256(b""),
        "digest of nothing written"
    );

    let before_write = SystemTime::now();
    write_chunks(&mut *w, &data[..600], 32).await;
    let after_write = SystemTime::now();
    let status = w.status().await.unwrap();
    assert_eq!((status.offset, status.total), (600, 1000));
    assert_time_between("updated_at", status.updated_at, before_write, after_write);
    assert_eq!(
        w.digest().await.unwrap(),
        sha256(&data[..600]),
        "digest of a prefix"
    );
    w.write(&data[600..]).await.unwrap();
    assert_eq!(w.digest().await.unwrap(), digest);

    let before_commit = SystemTime::now();
    w.commit(1000, Some(digest.clone()), commit_labels.clone())
        .await
        .unwrap();
    let after_commit = SystemTime::now();

    let info = store.info(&ns, &digest).await.unwrap();
    assert_eq!((&info.digest, info.size), (&digest, 1000));
    assert_eq!(info.labels, commit_labels);
    assert_time_between("created_at", info.created_at, before_commit, after_commit);
    assert_time_between("updated_at", info.updated_at, before_commit, after_commit);
    assert_kind(
        store.status(&ns, &r#ref).await,
        Kind::NotFound,
        "status after commit",
    );

    assert_eq!(read_all(store, &digest, 1000).await, data);
    assert_eq!(read_all(store, &digest, 7).await, data);
    let reader = store.reader_at(&ns, &digest).await.unwrap();
    assert_eq!(reader.size(), 1000);
    let mut buf = [0u8; 100];
    assert_eq!(reader.read_at(450, &mut buf).await.unwrap(), 100);
    assert_eq!(&buf[..], &data[450..550], "a range in the middle");
    assert_eq!(
        reader.read_at(950, &mut buf).await.unwrap(),
        50,
        "a read across the end is short"
    );
    assert_eq!(&buf[..50], &data[950..]);
    assert_eq!(
        reader.read_at(1000, &mut buf).await.unwrap(),
        0,
        "at the end"
    );
    assert_eq!(
        reader.read_at(5000, &mut buf).await.unwrap(),
        0,
        "past the end"
    );
    assert_eq!(
        reader.read_at(10, &mut []).await.unwrap(),
        0,
        "empty buffer"
    );
    drop(reader);
    remove(store, &[&digest]).await;
}

/// The empty blob can be committed (or already is) and has size 0.
pub async fn empty_blob(store: &dyn ContentStore) {
    let ns = namespace();
    let empty = sha256(b"");
    let w = open(store, options(&unique_ref("empty"))).await;
    assert_eq!(w.digest().await.unwrap(), empty);
    match w.commit(0, Some(empty.clone()), Labels::new()).await {
        // Another run against a shared store may have left it.
        Ok(()) => {}
        Err(err) => assert_eq!(err.kind(), Kind::AlreadyExists, "commit empty: {err}"),
    }
    assert_eq!(store.info(&ns, &empty).await.unwrap().size, 0);
    let reader = store.reader_at(&ns, &empty).await.unwrap();
    assert_eq!(reader.size(), 0);
    assert_eq!(reader.read_at(0, &mut [0u8; 8]).await.unwrap(), 0);
}

/// A commit whose size is wrong is FailedPrecondition, commits nothing, and
/// keeps the ingest: a new writer resumes it and commits it correctly.
pub async fn commit_wrong_size_fails_and_keeps_ingest(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bytes(1000);
    let digest = sha256(&data);
    let r#ref = unique_ref("wrongsize");
    let mut w = open(store, options(&r#ref)).await;
    w.write(&data).await.unwrap();
    assert_kind(
        w.commit(999, None, Labels::new()).await,
        Kind::FailedPrecondition,
        "commit with a short size",
    );
    assert_kind(
        store.info(&ns, &digest).await,
        Kind::NotFound,
        "info after failed commit",
    );

    let w = open(store, options(&r#ref)).await;
    assert_eq!(w.status().await.unwrap().offset, 1000, "the ingest is kept");
    assert_eq!(
        w.digest().await.unwrap(),
        digest,
        "a resumed writer re-hashes what is there"
    );
    assert_kind(
        w.commit(1001, None, Labels::new()).await,
        Kind::FailedPrecondition,
        "commit with a long size",
    );
    let w = open(store, options(&r#ref)).await;
    w.commit(1000, Some(digest.clone()), Labels::new())
        .await
        .unwrap();
    assert_eq!(read_all(store, &digest, 4096).await, data);
    remove(store, &[&digest]).await;
}

/// The total given when a writer opens is what the client expects, not a
/// bound on what it may write: as containerd's, writes past it are taken
/// and only the commit checks the size. A client appending to content it
/// opened complete (a blob shared from another namespace) relies on this.
pub async fn writes_past_the_declared_total_are_checked_at_commit(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bytes(1014);
    let digest = sha256(&data);
    let r#ref = unique_ref("pasttotal");
    let declared = WriterOptions {
        total: 1000,
        ..options(&r#ref)
    };
    let mut w = open(store, declared.clone()).await;
    write_chunks(&mut *w, &data, 1000).await;
    assert_eq!(w.status().await.unwrap().offset, 1014);
    assert_kind(
        w.commit(1000, None, Labels::new()).await,
        Kind::FailedPrecondition,
        "commit at the declared total after writing past it",
    );
    assert_kind(
        store.info(&ns, &digest).await,
        Kind::NotFound,
        "info after the failed commit",
    );

    let w = open(store, declared).await;
    assert_eq!(w.status().await.unwrap().offset, 1014, "the ingest is kept");
    w.commit(1014, Some(digest.clone()), Labels::new())
        .await
        .unwrap();
    assert_eq!(store.info(&ns, &digest).await.unwrap().size, 1014);
    assert_eq!(read_all(store, &digest, 4096).await, data);
    remove(store, &[&digest]).await;
}

/// A commit whose expected digest is wrong is FailedPrecondition and
/// commits nothing under either digest.
pub async fn commit_wrong_digest_fails_and_keeps_ingest(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bytes(1000);
    let digest = sha256(&data);
    let other = sha256(&unique_bytes(10));
    let r#ref = unique_ref("wrongdigest");
    let mut w = open(store, options(&r#ref)).await;
    w.write(&data).await.unwrap();
    assert_kind(
        w.commit(1000, Some(other.clone()), Labels::new()).await,
        Kind::FailedPrecondition,
        "commit with a wrong digest",
    );
    assert_kind(
        store.info(&ns, &digest).await,
        Kind::NotFound,
        "info of the data",
    );
    assert_kind(
        store.info(&ns, &other).await,
        Kind::NotFound,
        "info of the claim",
    );
    assert_eq!(store.status(&ns, &r#ref).await.unwrap().offset, 1000);

    // So does a writer that was told the wrong digest up front.
    let r#ref2 = unique_ref("wrongexpected");
    let mut w = open(
        store,
        WriterOptions {
            r#ref: r#ref2.clone(),
            total: 1000,
            expected: Some(other.clone()),
            lease: None,
        },
    )
    .await;
    w.write(&data).await.unwrap();
    assert_kind(
        w.commit(1000, Some(other.clone()), Labels::new()).await,
        Kind::FailedPrecondition,
        "commit of data that does not match the expected digest",
    );
    assert_kind(
        store.info(&ns, &digest).await,
        Kind::NotFound,
        "info of the data",
    );
    store.abort(&ns, &r#ref).await.unwrap();
    store.abort(&ns, &r#ref2).await.unwrap();
}

/// Committing a digest that is already there is AlreadyExists, with or
/// without an expected digest; the ingest is gone and the blob intact.
pub async fn commit_existing_is_already_exists(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bytes(4096);
    let digest = put(store, &data, 1000).await;
    for expected in [Some(digest.clone()), None] {
        let r#ref = unique_ref("exists");
        let mut w = open(store, options(&r#ref)).await;
        w.write(&data).await.unwrap();
        assert_kind(
            w.commit(4096, expected.clone(), Labels::new()).await,
            Kind::AlreadyExists,
            &format!("commit of an existing blob, expected {expected:?}"),
        );
        assert_kind(
            store.status(&ns, &r#ref).await,
            Kind::NotFound,
            "status after",
        );
        // The ref is free again, and starts empty.
        let w = open(store, options(&r#ref)).await;
        assert_eq!(w.status().await.unwrap().offset, 0);
        w.close().await.unwrap();
        let _ = store.abort(&ns, &r#ref).await;
    }
    assert_eq!(read_all(store, &digest, 4096).await, data);
    remove(store, &[&digest]).await;
}

/// A writer that names an expected digest already committed is refused
/// with AlreadyExists, so the client skips the transfer.
pub async fn writer_for_existing_expected_is_already_exists(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bytes(100);
    let digest = put(store, &data, 100).await;
    let r#ref = unique_ref("expected");
    let result = store
        .writer(
            &ns,
            WriterOptions {
                r#ref: r#ref.clone(),
                total: 100,
                expected: Some(digest.clone()),
                lease: None,
            },
        )
        .await;
    assert_kind(result, Kind::AlreadyExists, "writer for an existing blob");
    // Nothing was started, and the ref is free.
    assert_kind(store.status(&ns, &r#ref).await, Kind::NotFound, "status");
    let w = open(store, options(&r#ref)).await;
    w.close().await.unwrap();
    store.abort(&ns, &r#ref).await.unwrap();
    remove(store, &[&digest]).await;
}

/// A second writer on a ref with an active writer is Unavailable, until the
/// first is closed or commits.
pub async fn second_writer_on_ref_is_unavailable(store: &dyn ContentStore) {
    let ns = namespace();
    let r#ref = unique_ref("locked");
    let mut w = open(store, options(&r#ref)).await;
    w.write(b"x").await.unwrap();
    assert_kind(
        store.writer(&ns, options(&r#ref)).await,
        Kind::Unavailable,
        "second writer on an active ref",
    );
    // The refused writer did not disturb the first.
    w.write(b"y").await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, 2);
    w.close().await.unwrap();

    let mut w = open(store, options(&r#ref)).await;
    assert_eq!(
        w.status().await.unwrap().offset,
        2,
        "free again once closed"
    );
    assert_kind(
        store.writer(&ns, options(&r#ref)).await,
        Kind::Unavailable,
        "second writer on a resumed ref",
    );
    let data = unique_bytes(10);
    w.truncate(0).await.unwrap();
    w.write(&data).await.unwrap();
    let digest = sha256(&data);
    w.commit(10, Some(digest.clone()), Labels::new())
        .await
        .unwrap();
    let w = open(store, options(&r#ref)).await;
    assert_eq!(
        w.status().await.unwrap().offset,
        0,
        "free again once committed"
    );
    w.close().await.unwrap();
    store.abort(&ns, &r#ref).await.unwrap();
    remove(store, &[&digest]).await;
}

/// A closed writer's ingest stays, with its offset, total and start time;
/// a new writer resumes it where it stopped, with the digest of what is
/// there, and the final commit verifies.
pub async fn close_and_resume(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bulk(300_000);
    let digest = sha256(&data);
    let r#ref = unique_ref("resume");

    let before_open = SystemTime::now();
    let mut w = open(
        store,
        WriterOptions {
            r#ref: r#ref.clone(),
            total: 300_000,
            expected: Some(digest.clone()),
            lease: None,
        },
    )
    .await;
    let after_open = SystemTime::now();
    let before_write = SystemTime::now();
    write_chunks(&mut *w, &data[..100_000], 16_384).await;
    let after_write = SystemTime::now();
    w.close().await.unwrap();

    let status = store.status(&ns, &r#ref).await.unwrap();
    assert_eq!(
        (status.r#ref.as_str(), status.offset, status.total),
        (r#ref.as_str(), 100_000, 300_000)
    );
    assert_time_between("started_at", status.started_at, before_open, after_open);
    assert_time_between("updated_at", status.updated_at, before_write, after_write);

    // Resumed without repeating the total: the ingest remembers it.
    let mut w = open(store, options(&r#ref)).await;
    let resumed = w.status().await.unwrap();
    assert_eq!((resumed.offset, resumed.total), (100_000, 300_000));
    assert_eq!(resumed.started_at, status.started_at, "the start is kept");
    assert_eq!(
        w.digest().await.unwrap(),
        sha256(&data[..100_000]),
        "digest of what is there"
    );
    w.write(&data[100_000..250_000]).await.unwrap();
    w.close().await.unwrap();

    // And again, now naming the same total.
    let mut w = open(
        store,
        WriterOptions {
            r#ref: r#ref.clone(),
            total: 300_000,
            expected: Some(digest.clone()),
            lease: None,
        },
    )
    .await;
    assert_eq!(w.status().await.unwrap().offset, 250_000);
    w.write(&data[250_000..]).await.unwrap();
    assert_eq!(w.digest().await.unwrap(), digest);
    w.commit(300_000, Some(digest.clone()), Labels::new())
        .await
        .unwrap();
    assert_eq!(read_all(store, &digest, 65_536).await, data);
    assert_kind(
        store.status(&ns, &r#ref).await,
        Kind::NotFound,
        "status after commit",
    );
    remove(store, &[&digest]).await;
}

/// A writer dropped without close or commit frees its ref and keeps what it
/// wrote.
pub async fn dropped_writer_releases_ref(store: &dyn ContentStore) {
    let ns = namespace();
    let r#ref = unique_ref("dropped");
    {
        let mut w = open(store, options(&r#ref)).await;
        w.write(b"abc").await.unwrap();
    }
    let w = open(store, options(&r#ref)).await;
    assert_eq!(w.status().await.unwrap().offset, 3);
    assert_eq!(w.digest().await.unwrap(), sha256(b"abc"));
    w.close().await.unwrap();
    store.abort(&ns, &r#ref).await.unwrap();
}

/// `truncate(0)` discards what was written; the rewrite commits.
pub async fn truncate_and_rewrite(store: &dyn ContentStore) {
    let ns = namespace();
    let r#ref = unique_ref("truncate");
    let data = unique_bytes(500);
    let digest = sha256(&data);
    let mut w = open(store, options(&r#ref)).await;
    w.write(&unique_bytes(700)).await.unwrap();
    w.truncate(0).await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, 0);
    assert_eq!(w.digest().await.unwrap(), sha256(b""));
    write_chunks(&mut *w, &data, 99).await;
    assert_eq!(w.digest().await.unwrap(), digest);
    w.commit(500, Some(digest.clone()), Labels::new())
        .await
        .unwrap();
    assert_eq!(read_all(store, &digest, 500).await, data);
    assert_kind(
        store.status(&ns, &r#ref).await,
        Kind::NotFound,
        "status after commit",
    );

    // Truncating a resumed ingest works too.
    let mut w = open(store, options(&r#ref)).await;
    w.write(b"stale").await.unwrap();
    w.close().await.unwrap();
    let mut w = open(store, options(&r#ref)).await;
    assert_eq!(w.status().await.unwrap().offset, 5);
    w.truncate(0).await.unwrap();
    w.write(b"fresh").await.unwrap();
    assert_eq!(w.digest().await.unwrap(), sha256(b"fresh"));
    w.close().await.unwrap();
    assert_eq!(store.status(&ns, &r#ref).await.unwrap().offset, 5);
    store.abort(&ns, &r#ref).await.unwrap();
    remove(store, &[&digest]).await;
}

/// Abort removes an ingest and its data; a second abort, and its status,
/// are NotFound; a new writer for the ref starts empty.
pub async fn abort_removes_ingest(store: &dyn ContentStore) {
    let ns = namespace();
    let r#ref = unique_ref("abort");
    let mut w = open(store, options(&r#ref)).await;
    w.write(b"partial").await.unwrap();
    w.close().await.unwrap();
    assert_eq!(store.status(&ns, &r#ref).await.unwrap().offset, 7);
    store.abort(&ns, &r#ref).await.unwrap();
    assert_kind(
        store.status(&ns, &r#ref).await,
        Kind::NotFound,
        "status after abort",
    );
    assert_kind(
        store.abort(&ns, &r#ref).await,
        Kind::NotFound,
        "second abort",
    );
    let filter = format!("ref=={ref}");
    assert!(store
        .list_statuses(&ns, &[filter])
        .await
        .unwrap()
        .is_empty());

    let w = open(store, options(&r#ref)).await;
    assert_eq!(
        w.status().await.unwrap().offset,
        0,
        "a new ingest starts empty"
    );
    assert_eq!(w.digest().await.unwrap(), sha256(b""));
    w.close().await.unwrap();
    store.abort(&ns, &r#ref).await.unwrap();
    assert_kind(
        store.abort(&ns, &unique_ref("never")).await,
        Kind::NotFound,
        "abort of a ref never used",
    );
    assert_kind(
        store.status(&ns, &unique_ref("never")).await,
        Kind::NotFound,
        "status of a ref never used",
    );
}

/// `list_statuses` lists ingests, open or closed, selected by `ref` filters
/// (several filters are OR-ed); a malformed filter is InvalidArgument.
pub async fn statuses_with_filters(store: &dyn ContentStore) {
    let ns = namespace();
    let prefix = unique_ref("statuses");
    let [a, b, config] = ["layer-a", "layer-b", "config"].map(|r| format!("{prefix}-{r}"));
    for r in [&a, &b] {
        let mut w = open(store, options(r)).await;
        w.write(r.as_bytes()).await.unwrap();
        w.close().await.unwrap();
    }
    // One writer stays open: active ingests are listed too.
    let mut open_writer = open(
        store,
        WriterOptions {
            r#ref: config.clone(),
            total: 4000,
            expected: None,
            lease: None,
        },
    )
    .await;
    open_writer.write(b"{}").await.unwrap();

    let all = refs(store.list_statuses(&ns, &[]).await.unwrap());
    for r in [&a, &b, &config] {
        assert!(all.contains(r), "{r} missing from {all:?}");
    }
    let only = store
        .list_statuses(&ns, &[format!("ref=={config}")])
        .await
        .unwrap();
    assert_eq!(only.len(), 1, "{only:?}");
    assert_eq!((only[0].offset, only[0].total), (2, 4000));
    assert_eq!(
        refs(
            store
                .list_statuses(&ns, &[format!("ref~=^{prefix}-layer-")])
                .await
                .unwrap()
        ),
        [a.clone(), b.clone()]
    );
    assert_eq!(
        refs(
            store
                .list_statuses(&ns, &[format!("ref=={a}"), format!("ref=={config}")])
                .await
                .unwrap()
        ),
        [config.clone(), a.clone()],
        "filters are OR-ed"
    );
    assert_eq!(
        refs(
            store
                .list_statuses(&ns, &[format!("ref=={a},ref=={b}")])
                .await
                .unwrap()
        ),
        Vec::<String>::new(),
        "selectors of one filter are AND-ed"
    );
    assert_kind(
        store.list_statuses(&ns, &["ref==".into()]).await,
        Kind::InvalidArgument,
        "malformed filter",
    );
    open_writer.close().await.unwrap();
    for r in [&a, &b, &config] {
        store.abort(&ns, r).await.unwrap();
    }
}

/// `update` sets and removes labels by field path (`labels.<key>`), replaces
/// them all with `labels` or no paths, refuses other paths and oversized
/// labels with InvalidArgument (changing nothing), and stamps `updated_at`.
pub async fn update_labels(store: &dyn ContentStore) {
    let ns = namespace();
    let digest = put(store, &unique_bytes(10), 10).await;
    let created = store.info(&ns, &digest).await.unwrap();
    assert!(created.labels.is_empty());

    let before = SystemTime::now();
    let got = store
        .update(
            &ns,
            info_with(&digest, &[("a", "1"), ("b", "2"), ("c", "3")]),
            &["labels.a".into(), "labels.b".into()],
        )
        .await
        .unwrap();
    let after = SystemTime::now();
    assert_eq!(
        got.labels,
        labels(&[("a", "1"), ("b", "2")]),
        "only named paths"
    );
    assert_eq!((got.digest.clone(), got.size), (digest.clone(), 10));
    let info = store.info(&ns, &digest).await.unwrap();
    assert_eq!(info.labels, got.labels);
    assert_time_between("updated_at", info.updated_at, before, after);
    assert_eq!(info.created_at, created.created_at, "created_at is kept");

    let got = store
        .update(
            &ns,
            info_with(&digest, &[("b", "two")]),
            &["labels.a".into(), "labels.b".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        got.labels,
        labels(&[("b", "two")]),
        "a named label without a value is removed"
    );

    let got = store
        .update(
            &ns,
            info_with(&digest, &[("z", "26"), ("dotted.key/x", "y")]),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        got.labels,
        labels(&[("dotted.key/x", "y"), ("z", "26")]),
        "no paths replaces all"
    );
    let got = store
        .update(&ns, info_with(&digest, &[("y", "25")]), &["labels".into()])
        .await
        .unwrap();
    assert_eq!(got.labels, labels(&[("y", "25")]), "`labels` replaces all");
    let got = store
        .update(
            &ns,
            info_with(&digest, &[("dotted.key/x", "v")]),
            &["labels.dotted.key/x".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        got.labels,
        labels(&[("dotted.key/x", "v"), ("y", "25")]),
        "a key with dots"
    );
    let current = got.labels;

    assert_kind(
        store
            .update(&ns, info_with(&digest, &[]), &["size".into()])
            .await,
        Kind::InvalidArgument,
        "update of size",
    );
    let big = "v".repeat(5000);
    assert_kind(
        store
            .update(
                &ns,
                info_with(&digest, &[("k", &big)]),
                &["labels.k".into()],
            )
            .await,
        Kind::InvalidArgument,
        "oversized label",
    );
    assert_kind(
        store
            .update(&ns, info_with(&digest, &[("k", &big)]), &[])
            .await,
        Kind::InvalidArgument,
        "oversized label replacing all",
    );
    assert_eq!(
        store.info(&ns, &digest).await.unwrap().labels,
        current,
        "a refused update changes nothing"
    );

    let got = store
        .update(&ns, info_with(&digest, &[]), &[])
        .await
        .unwrap();
    assert!(got.labels.is_empty(), "replace all with nothing");
    assert!(store.info(&ns, &digest).await.unwrap().labels.is_empty());

    let missing = sha256(&unique_bytes(10));
    assert_kind(
        store
            .update(&ns, info_with(&missing, &[("a", "1")]), &[])
            .await,
        Kind::NotFound,
        "update of a missing blob",
    );
    remove(store, &[&digest]).await;
}

/// `walk` lists blobs selected by `digest`, `size` and `labels.<key>`
/// filters; several filters are OR-ed; a malformed one is InvalidArgument.
/// `digests` names every blob a walk lists, and no blob once deleted.
pub async fn digests_name_what_walk_lists(store: &dyn ContentStore) {
    let ns = namespace();
    let a = put(store, &unique_bytes(44), 5).await;
    let b = put(store, &unique_bytes(55), 5).await;
    let walked = walk_digests(store, vec![]).await;
    let listed = store.digests(&ns).await.unwrap();
    for d in &walked {
        assert!(listed.contains(d), "{d} walked but not listed: {listed:?}");
    }
    assert!(listed.contains(&a) && listed.contains(&b), "{listed:?}");
    remove(store, &[&a]).await;
    let listed = store.digests(&ns).await.unwrap();
    assert!(!listed.contains(&a), "{a} deleted but still listed");
    assert!(listed.contains(&b), "{listed:?}");
    remove(store, &[&b]).await;
}

pub async fn walk_with_filters(store: &dyn ContentStore) {
    let ns = namespace();
    // A label value unique to this case keeps other blobs out of the way.
    let tag = unique_ref("walk");
    let a = put(store, &unique_bytes(11), 5).await;
    let b = put(store, &unique_bytes(22), 5).await;
    let c = put(store, &unique_bytes(33), 5).await;
    for (digest, kind) in [(&a, "config"), (&b, "layer")] {
        store
            .update(
                &ns,
                info_with(digest, &[("kind", kind), ("tag", &tag)]),
                &["labels.kind".into(), "labels.tag".into()],
            )
            .await
            .unwrap();
    }
    let walk = |filters: Vec<String>| walk_digests(store, filters);
    let sorted = |mut v: Vec<Digest>| {
        v.sort();
        v
    };

    let all = walk(vec![]).await;
    for d in [&a, &b, &c] {
        assert!(all.contains(d), "{d} missing from an unfiltered walk");
    }
    assert_eq!(
        walk(vec![format!("labels.tag=={tag}")]).await,
        sorted(vec![a.clone(), b.clone()])
    );
    assert_eq!(
        walk(vec![format!(
            r#"labels."tag"=={tag},labels."kind"==config"#
        )])
        .await,
        vec![a.clone()],
        "selectors are AND-ed"
    );
    assert_eq!(
        walk(vec![format!("labels.tag=={tag},labels.kind~=^lay")]).await,
        vec![b.clone()]
    );
    assert_eq!(
        walk(vec![format!("labels.tag=={tag},labels.kind!=layer")]).await,
        vec![a.clone()]
    );
    assert_eq!(walk(vec![format!("digest=={c}")]).await, vec![c.clone()]);
    assert_eq!(
        walk(vec![format!("digest=={c}"), format!("digest=={a}")]).await,
        sorted(vec![a.clone(), c.clone()]),
        "filters are OR-ed"
    );
    assert_eq!(
        walk(vec![format!("digest=={c},size==33")]).await,
        vec![c.clone()]
    );
    assert!(walk(vec![format!("digest=={c},size==34")]).await.is_empty());
    // A dotted key is reached unquoted too: containerd joins the path.
    store
        .update(
            &ns,
            info_with(&c, &[("org.example.tag", &tag)]),
            &["labels.org.example.tag".into()],
        )
        .await
        .unwrap();
    for filter in [
        format!("labels.org.example.tag=={tag}"),
        format!(r#"labels."org.example.tag"=={tag}"#),
    ] {
        assert_eq!(
            walk(vec![filter.clone()]).await,
            vec![c.clone()],
            "{filter}"
        );
    }

    let info = store
        .walk(&ns, &[format!("digest=={a}")])
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(info.size, 11);
    assert_eq!(info.labels, labels(&[("kind", "config"), ("tag", &tag)]));

    assert_kind(
        store.walk(&ns, &["labels.kind==".into()]).await,
        Kind::InvalidArgument,
        "malformed filter",
    );
    remove(store, &[&a, &b, &c]).await;
}

/// Delete removes a blob and its labels: then info, reader and a second
/// delete are NotFound, and the blob can be written again.
pub async fn delete_removes_blob(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bytes(64);
    let digest = put(store, &data, 64).await;
    store
        .update(&ns, info_with(&digest, &[("k", "v")]), &[])
        .await
        .unwrap();
    store.delete(&ns, &digest).await.unwrap();
    assert_kind(
        store.info(&ns, &digest).await,
        Kind::NotFound,
        "info after delete",
    );
    assert_kind(
        store.delete(&ns, &digest).await,
        Kind::NotFound,
        "second delete",
    );
    assert_kind(
        store.reader_at(&ns, &digest).await,
        Kind::NotFound,
        "reader after delete",
    );
    let filter = format!("digest=={digest}");
    assert!(store.walk(&ns, &[filter]).await.unwrap().is_empty());

    let again = put(store, &data, 64).await;
    assert_eq!(again, digest);
    assert!(
        store.info(&ns, &digest).await.unwrap().labels.is_empty(),
        "labels went with the deleted blob"
    );
    remove(store, &[&digest]).await;
}

/// Every call on a blob that was never written is NotFound.
pub async fn missing_blob_is_not_found(store: &dyn ContentStore) {
    let ns = namespace();
    let missing = sha256(&unique_bytes(32));
    assert_kind(store.info(&ns, &missing).await, Kind::NotFound, "info");
    assert_kind(
        store.reader_at(&ns, &missing).await,
        Kind::NotFound,
        "reader_at",
    );
    assert_kind(store.delete(&ns, &missing).await, Kind::NotFound, "delete");
    assert_kind(
        store.update(&ns, info_with(&missing, &[]), &[]).await,
        Kind::NotFound,
        "update",
    );
    let filter = format!("digest=={missing}");
    assert!(store.walk(&ns, &[filter]).await.unwrap().is_empty());
}

/// An empty ref is InvalidArgument.
pub async fn empty_ref_is_invalid_argument(store: &dyn ContentStore) {
    assert_kind(
        store.writer(&namespace(), options("")).await,
        Kind::InvalidArgument,
        "writer with an empty ref",
    );
}

/// A multi-MiB blob written in uneven chunks (including tiny and empty
/// ones) commits and reads back identically.
pub async fn large_blob_in_uneven_chunks(store: &dyn ContentStore) {
    let ns = namespace();
    let data = unique_bulk(5 * 1024 * 1024 + 123);
    let digest = sha256(&data);
    let r#ref = unique_ref("large");
    let mut w = open(
        store,
        WriterOptions {
            r#ref: r#ref.clone(),
            total: data.len() as u64,
            expected: Some(digest.clone()),
            lease: None,
        },
    )
    .await;
    let sizes = [65_537, 1, 0, 1_048_576, 7, 300_001];
    let (mut at, mut i) = (0, 0);
    while at < data.len() {
        let end = (at + sizes[i % sizes.len()]).min(data.len());
        w.write(&data[at..end]).await.unwrap();
        at = end;
        i += 1;
    }
    assert_eq!(w.status().await.unwrap().offset, data.len() as u64);
    w.commit(data.len() as u64, Some(digest.clone()), Labels::new())
        .await
        .unwrap();
    assert_eq!(
        store.info(&ns, &digest).await.unwrap().size,
        data.len() as u64
    );
    assert!(
        read_all(store, &digest, 1 << 20).await == data,
        "read back in 1 MiB reads"
    );
    assert!(
        read_all(store, &digest, 100_003).await == data,
        "read back in odd reads"
    );
    remove(store, &[&digest]).await;
}

/// Writers on different refs proceed concurrently and each commits its own
/// bytes.
pub async fn concurrent_writers(store: &dyn ContentStore) {
    let (x, y) = (unique_bulk(1_000_000), unique_bulk(1_500_000));
    let (dx, dy) = tokio::join!(put(store, &x, 10_000), put(store, &y, 7_000));
    assert_eq!((dx.clone(), dy.clone()), (sha256(&x), sha256(&y)));

    // Interleaved on one task: both writers open at once.
    let (r1, r2) = (unique_ref("interleaved-1"), unique_ref("interleaved-2"));
    let mut w1 = open(store, options(&r1)).await;
    let mut w2 = open(store, options(&r2)).await;
    let (p, q) = (unique_bytes(3000), unique_bytes(5000));
    for (a, b) in p.chunks(300).zip(q.chunks(500)) {
        w1.write(a).await.unwrap();
        w2.write(b).await.unwrap();
    }
    let (dp, dq) = (sha256(&p), sha256(&q));
    w2.commit(5000, Some(dq.clone()), Labels::new())
        .await
        .unwrap();
    w1.commit(3000, Some(dp.clone()), Labels::new())
        .await
        .unwrap();

    assert!(read_all(store, &dx, 1 << 20).await == x);
    assert!(read_all(store, &dy, 1 << 20).await == y);
    assert_eq!(read_all(store, &dp, 4096).await, p);
    assert_eq!(read_all(store, &dq, 4096).await, q);
    remove(store, &[&dx, &dy, &dp, &dq]).await;
}
