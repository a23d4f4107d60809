//! The conformance suite, and what only the local store promises: its
//! on-disk layout, durability, and resuming across a restart.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crated_core::content::testsuite::{sha256, Fixture};
use crated_core::Kind;

use super::*;

async fn store() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    Fixture::new(Arc::new(store), dir)
}

crated_core::content_store_testsuite!(store);

fn ns() -> Namespace {
    Namespace::new("default").unwrap()
}

fn options(r#ref: &str, total: u64) -> WriterOptions {
    WriterOptions {
        r#ref: r#ref.into(),
        total,
        expected: None,
        lease: None,
    }
}

/// Every entry under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn ingest_dir_name(r#ref: &str) -> String {
    use sha2::Digest as _;
    layout::hex(&sha2::Sha256::digest(r#ref.as_bytes()))
}

#[tokio::test]
async fn layout_matches_containerd() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    assert_eq!(
        tree(dir.path()),
        ["blobs", "blobs/sha256", "ingest", "labels", "labels/sha256"]
    );

    let mut w = store.writer(&ns(), options("layer-1", 10)).await.unwrap();
    w.write(b"hello").await.unwrap();
    let ingest = format!("ingest/{}", ingest_dir_name("layer-1"));
    let files = tree(&dir.path().join(&ingest));
    assert_eq!(files, ["data", "ref", "startedat", "total", "updatedat"]);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(&ingest).join(name)).unwrap();
    assert_eq!(read("ref"), "layer-1");
    assert_eq!(read("total"), "10");
    assert_eq!(read("data"), "hello");
    // Go's time.MarshalText: RFC 3339 with nanoseconds.
    let started = read("startedat");
    assert!(
        started.len() >= 20 && started.ends_with('Z') && started.as_bytes()[10] == b'T',
        "{started:?}"
    );

    w.write(b"world").await.unwrap();
    let digest = w.digest().await.unwrap();
    let labels: Labels = [("k".to_owned(), "v".to_owned())].into();
    w.commit(10, Some(digest.clone()), labels.clone())
        .await
        .unwrap();
    let blob = dir.path().join("blobs/sha256").join(digest.hex());
    assert_eq!(store.blob_path(&digest), blob);
    assert_eq!(std::fs::read(&blob).unwrap(), b"helloworld");
    let mode = std::fs::metadata(&blob).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444, "blobs are read-only");
    let labels_file = dir
        .path()
        .join("labels/sha256")
        .join(format!("{}.json", digest.hex()));
    let on_disk: Labels = serde_json::from_slice(&std::fs::read(labels_file).unwrap()).unwrap();
    assert_eq!(on_disk, labels);
    assert!(
        tree(&dir.path().join("ingest")).is_empty(),
        "nothing left in ingest/"
    );
    assert_eq!(
        tree(dir.path())
            .iter()
            .filter(|p| p.ends_with(".tmp"))
            .count(),
        0,
        "no temporary files left"
    );
}

#[tokio::test]
async fn ingest_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let started_at;
    {
        let store = LocalStore::open(dir.path()).unwrap();
        let mut w = store.writer(&ns(), options("r", 10)).await.unwrap();
        w.write(b"hello").await.unwrap();
        started_at = w.status().await.unwrap().started_at;
        // Dropped without close, as by a killed daemon; the store goes too.
    }
    let store = LocalStore::open(dir.path()).unwrap();
    let status = store.status(&ns(), "r").await.unwrap();
    assert_eq!((status.offset, status.total), (5, 10));
    assert_eq!(status.started_at, started_at);
    let listed = store.list_statuses(&ns(), &[]).await.unwrap();
    assert_eq!(listed, [status]);

    // Resumed with no lock in the way: locks never outlive the process's store.
    let mut w = store
        .clone()
        .with_lock_wait(Duration::ZERO)
        .writer(&ns(), options("r", 0))
        .await
        .unwrap();
    assert_eq!(
        w.digest().await.unwrap(),
        sha256(b"hello"),
        "the data was re-hashed"
    );
    w.write(b"world").await.unwrap();
    let digest = w.digest().await.unwrap();
    w.commit(10, Some(sha256(b"helloworld")), Labels::new())
        .await
        .unwrap();
    assert_eq!(store.info(&ns(), &digest).await.unwrap().size, 10);
    assert!(tree(&dir.path().join("ingest")).is_empty());
}

#[tokio::test]
async fn resumes_an_ingest_containerd_left() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = dir.path().join("ingest").join(ingest_dir_name("from-go"));
    std::fs::create_dir_all(&ingest).unwrap();
    std::fs::write(ingest.join("ref"), "from-go").unwrap();
    std::fs::write(ingest.join("data"), "abc").unwrap();
    std::fs::write(ingest.join("total"), "6").unwrap();
    std::fs::write(
        ingest.join("startedat"),
        "2023-11-14T23:13:20.123456789+01:00",
    )
    .unwrap();
    std::fs::write(ingest.join("updatedat"), "2023-11-14T23:13:21+01:00").unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let status = store.status(&ns(), "from-go").await.unwrap();
    assert_eq!((status.offset, status.total), (3, 6));
    assert_eq!(
        status.started_at,
        UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789)
    );
    let mut w = store.writer(&ns(), options("from-go", 6)).await.unwrap();
    w.write(b"def").await.unwrap();
    w.commit(6, Some(sha256(b"abcdef")), Labels::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn nothing_left_in_ingest_after_commit_abort_or_existing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let ingests = dir.path().join("ingest");

    let mut w = store.writer(&ns(), options("a", 0)).await.unwrap();
    w.write(b"x").await.unwrap();
    w.commit(1, None, Labels::new()).await.unwrap();
    assert!(tree(&ingests).is_empty(), "after commit");

    let mut w = store.writer(&ns(), options("b", 0)).await.unwrap();
    w.write(b"y").await.unwrap();
    w.close().await.unwrap();
    store.abort(&ns(), "b").await.unwrap();
    assert!(tree(&ingests).is_empty(), "after abort");

    let mut w = store.writer(&ns(), options("c", 0)).await.unwrap();
    w.write(b"x").await.unwrap();
    let err = w.commit(1, None, Labels::new()).await.unwrap_err();
    assert_eq!(err.kind(), Kind::AlreadyExists);
    assert!(
        tree(&ingests).is_empty(),
        "after a commit of an existing blob"
    );

    let mut w = store.writer(&ns(), options("d", 0)).await.unwrap();
    w.write(b"z").await.unwrap();
    let err = w.commit(2, None, Labels::new()).await.unwrap_err();
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert_eq!(tree(&ingests).len(), 5, "a failed commit keeps the ingest");
    let data = ingests.join(ingest_dir_name("d")).join("data");
    let mode = std::fs::metadata(data).unwrap().permissions().mode();
    assert_eq!(mode & 0o200, 0o200, "and keeps it writable");
}

#[tokio::test]
async fn stores_on_one_root_share_locks() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalStore::open(dir.path()).unwrap();
    let second = LocalStore::open(dir.path())
        .unwrap()
        .with_lock_wait(Duration::ZERO);
    let w = first.writer(&ns(), options("r", 0)).await.unwrap();
    let err = second.writer(&ns(), options("r", 0)).await.err().unwrap();
    assert_eq!(err.kind(), Kind::Unavailable);
    assert!(err.message().starts_with("ref \"r\" is locked: "), "{err}");
    w.close().await.unwrap();
    second.writer(&ns(), options("r", 0)).await.unwrap();
}

#[tokio::test]
async fn only_sha256_can_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let sha512 = Digest::parse(&format!("sha512:{}", "ab".repeat(64))).unwrap();
    let mut opts = options("r", 0);
    opts.expected = Some(sha512.clone());
    let err = store.writer(&ns(), opts).await.err().unwrap();
    assert_eq!(err.kind(), Kind::InvalidArgument, "{err}");
    let mut w = store.writer(&ns(), options("r", 0)).await.unwrap();
    w.write(b"x").await.unwrap();
    let err = w
        .commit(1, Some(sha512.clone()), Labels::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument, "{err}");
    // Other algorithms are simply absent for reads.
    assert!(store.info(&ns(), &sha512).await.unwrap_err().is_not_found());

    let empty = store.status(&ns(), "").await.unwrap_err();
    assert_eq!(empty.kind(), Kind::InvalidArgument);
    let empty = store.abort(&ns(), "").await.unwrap_err();
    assert_eq!(empty.kind(), Kind::InvalidArgument);
}

#[tokio::test]
async fn truncate_to_a_prefix_rehashes() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let mut w = store.writer(&ns(), options("r", 0)).await.unwrap();
    w.write(b"hello world").await.unwrap();
    w.truncate(5).await.unwrap();
    assert_eq!(w.digest().await.unwrap(), sha256(b"hello"));
    assert_eq!(w.status().await.unwrap().offset, 5);
    let err = w.truncate(6).await.unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    w.write(b"!").await.unwrap();
    w.commit(6, Some(sha256(b"hello!")), Labels::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_new_total_starts_the_ingest_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let mut w = store.writer(&ns(), options("r", 10)).await.unwrap();
    w.write(b"abc").await.unwrap();
    w.close().await.unwrap();
    let w = store.writer(&ns(), options("r", 20)).await.unwrap();
    let status = w.status().await.unwrap();
    assert_eq!((status.offset, status.total), (0, 20));
    w.close().await.unwrap();
    // A total learnt on resume is kept.
    let mut w = store.writer(&ns(), options("s", 0)).await.unwrap();
    w.write(b"abc").await.unwrap();
    w.close().await.unwrap();
    let w = store.writer(&ns(), options("s", 7)).await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, 3);
    w.close().await.unwrap();
    assert_eq!(store.status(&ns(), "s").await.unwrap().total, 7);
}

/// A write whose future is dropped half-way must not let a new writer in
/// before it has finished with the file: the resumed digest always matches
/// the bytes on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_write_keeps_ingest_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    for round in 0..5 {
        let r#ref = format!("r{round}");
        let mut w = store.writer(&ns(), options(&r#ref, 0)).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_micros(100 * round), w.write(&data)).await;
        drop(w);
        let w = store.writer(&ns(), options(&r#ref, 0)).await.unwrap();
        let offset = w.status().await.unwrap().offset;
        assert!(
            offset == 0 || offset == data.len() as u64,
            "torn write: {offset}"
        );
        let len = usize::try_from(offset).unwrap();
        assert_eq!(w.digest().await.unwrap(), sha256(&data[..len]));
        let on_disk = std::fs::read(
            dir.path()
                .join("ingest")
                .join(ingest_dir_name(&r#ref))
                .join("data"),
        )
        .unwrap();
        assert_eq!(on_disk.len(), len);
        w.close().await.unwrap();
    }
}

#[tokio::test]
async fn writer_after_abort_while_open_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let mut w = store.writer(&ns(), options("r", 0)).await.unwrap();
    w.write(b"abc").await.unwrap();
    store.abort(&ns(), "r").await.unwrap();
    let err = w.commit(3, None, Labels::new()).await.unwrap_err();
    assert_eq!(err.kind(), Kind::NotFound, "{err}");
    assert!(store
        .info(&ns(), &sha256(b"abc"))
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn walk_skips_strays_and_matches_dotted_label_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let mut w = store.writer(&ns(), options("r", 0)).await.unwrap();
    w.write(b"abc").await.unwrap();
    let digest = w.digest().await.unwrap();
    let labels: Labels = [("a.b".to_owned(), "c".to_owned())].into();
    w.commit(3, None, labels).await.unwrap();
    std::fs::write(dir.path().join("blobs/sha256/stray.tmp"), b"").unwrap();
    std::fs::create_dir(dir.path().join("blobs/md5")).unwrap();
    let all = store.walk(&ns(), &[]).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].digest, digest);
    let dotted = store.walk(&ns(), &["labels.a.b==c".into()]).await.unwrap();
    assert_eq!(dotted.len(), 1, "containerd joins the key's path");
}

/// Not a benchmark harness, just a number: `cargo test -p
/// crated-content-store --release -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test"]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mib = 512;
    let started = std::time::Instant::now();
    let mut w = store.writer(&ns(), options("bench", 0)).await.unwrap();
    for _ in 0..mib {
        w.write(&chunk).await.unwrap();
    }
    let written = started.elapsed().as_secs_f64();
    w.commit(0, None, Labels::new()).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "write (hash + page cache): {:.0} MiB/s; commit (fsync {mib} MiB): {:.2} s",
        f64::from(mib) / written,
        secs - written
    );
    println!("write + commit: {:.0} MiB/s", f64::from(mib) / secs);
}

#[tokio::test]
async fn expected_digest_is_kept_with_the_ingest_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let expected = sha256(b"hello");
    {
        let store = LocalStore::open(dir.path()).unwrap();
        let mut w = store
            .writer(
                &ns(),
                WriterOptions {
                    expected: Some(expected.clone()),
                    ..options("exp", 5)
                },
            )
            .await
            .unwrap();
        w.write(b"he").await.unwrap();
        w.close().await.unwrap();
    }
    // The collector of the metadata layer keeps the expected blob alive.
    let store = LocalStore::open(dir.path()).unwrap();
    let listed = store.list_statuses(&ns(), &[]).await.unwrap();
    assert_eq!(listed[0].expected, Some(expected.clone()));
    // Resumed without naming it: still known, and commit checks it.
    let mut w = store.writer(&ns(), options("exp", 0)).await.unwrap();
    assert_eq!(w.status().await.unwrap().expected, Some(expected.clone()));
    w.write(b"llo").await.unwrap();
    w.commit(5, Some(expected.clone()), Default::default())
        .await
        .unwrap();
    assert_eq!(store.info(&ns(), &expected).await.unwrap().size, 5);
}
