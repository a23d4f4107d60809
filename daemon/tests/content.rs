//! Content through `crated`, as users of containerd's ctr and ours see it.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::blobs::{blob, blob_files, ctr_with_stdin, sha256sum};
use common::{debian_ctr, fails, ok, workspace_bin, Daemon};
use crated_api::containerd::services::content::v1 as content;
use crated_api::containerd::services::leases::v1 as leases;
use crated_api::metadata::{set_grpc_lease, set_grpc_namespace};
use crated_core::Namespace;

#[test]
fn debian_ctr_ingests_gets_labels_and_removes_100mib() {
    let daemon = Daemon::start();
    let ctr = debian_ctr();
    let data = tempfile::tempdir().unwrap();
    let (file, digest) = blob(data.path(), "big", 100 << 20, 7);
    let size = (100u64 << 20).to_string();

    ok(ctr_with_stdin(
        &daemon,
        &ctr,
        &[
            "content",
            "ingest",
            "--expected-size",
            &size,
            "--expected-digest",
            &digest,
            "big-blob",
        ],
        &file,
    ));
    let list = ok(daemon.ctr(&ctr, &["content", "ls"]));
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.starts_with(&digest))
        .expect(&list)
        .split('\t')
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(row[1], "104.9MB", "{list}");
    assert_eq!(row.last(), Some(&"-"), "{list}");

    let copy = data.path().join("copy");
    let out = Command::new(&ctr)
        .arg("--address")
        .arg(&daemon.address)
        .args(["content", "get", &digest])
        .stdout(std::fs::File::create(&copy).unwrap())
        .status()
        .unwrap();
    assert!(out.success());
    assert_eq!(sha256sum(&copy), digest);

    let labelled = ok(daemon.ctr(&ctr, &["content", "label", &digest, "foo=bar"]));
    assert_eq!(labelled.trim(), "foo=bar");
    assert!(ok(daemon.ctr(&ctr, &["content", "ls"])).contains("foo=bar"));
    assert_eq!(
        ok(daemon.ctr(&ctr, &["content", "ls", "-q", "labels.foo==bar"])).trim(),
        digest
    );
    assert_eq!(
        ok(daemon.ctr(&ctr, &["content", "ls", "-q", "labels.foo==baz"])).trim(),
        ""
    );

    // A namespace holding content cannot be removed.
    let stderr = fails(daemon.ctr(&ctr, &["namespaces", "rm", "default"]));
    assert!(
        stderr.contains("must be empty, but it still has blobs"),
        "{stderr}"
    );

    assert_eq!(
        ok(daemon.ctr(&ctr, &["content", "rm", &digest])).trim(),
        digest
    );
    assert_eq!(ok(daemon.ctr(&ctr, &["content", "ls", "-q"])), "");
    assert!(
        blob_files(&daemon).is_empty(),
        "the blob no namespace records is gone from disk"
    );
    ok(daemon.ctr(&ctr, &["namespaces", "rm", "default"]));
}

#[test]
fn our_ctr_matches_debian_ctr_on_content() {
    let daemon = Daemon::start();
    let (ours, theirs) = (workspace_bin("ctr"), debian_ctr());
    let data = tempfile::tempdir().unwrap();
    let (file, digest) = blob(data.path(), "small", 3 << 20, 11);
    ok(ctr_with_stdin(
        &daemon,
        &ours,
        &["content", "ingest", "ours"],
        &file,
    ));
    ok(daemon.ctr(&ours, &["content", "label", &digest, "a=1", "b=2"]));
    for args in [&["content", "ls", "-q"][..], &["content", "active"]] {
        assert_eq!(
            ok(daemon.ctr(&ours, args)),
            ok(daemon.ctr(&theirs, args)),
            "ctr {args:?}"
        );
    }
    // The AGE column may tick between the two runs; everything else,
    // including the tab layout, must be identical.
    let without_age = |table: String| -> Vec<String> {
        table
            .lines()
            .map(|l| {
                let cells: Vec<&str> = l.split('\t').filter(|c| !c.is_empty()).collect();
                // Go prints labels in map order, which is random.
                let mut labels: Vec<&str> = cells[3].split(',').collect();
                labels.sort();
                format!(
                    "{}|{}|{}|{}",
                    cells[0],
                    cells[1],
                    labels.join(","),
                    l.matches('\t').count()
                )
            })
            .collect()
    };
    assert_eq!(
        without_age(ok(daemon.ctr(&ours, &["content", "ls"]))),
        without_age(ok(daemon.ctr(&theirs, &["content", "ls"])))
    );
    let copy = data.path().join("copy");
    let status = Command::new(&ours)
        .arg("--address")
        .arg(&daemon.address)
        .args(["content", "get", &digest])
        .stdout(std::fs::File::create(&copy).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(sha256sum(&copy), digest);
    let stderr = fails(daemon.ctr(
        &ours,
        &[
            "content",
            "rm",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    ));
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn killed_ingest_resumes_and_verifies() {
    let daemon = Daemon::start();
    let data = tempfile::tempdir().unwrap();
    let (file, digest) = blob(data.path(), "resume", 64 << 20, 13);
    let all = std::fs::read(&file).unwrap();
    for ctr in [debian_ctr(), workspace_bin("ctr")] {
        let r#ref = format!("resume-{}", ctr.display().to_string().len());
        // Feed half the bytes through a pipe, then kill the client.
        let mut child = Command::new(&ctr)
            .arg("--address")
            .arg(&daemon.address)
            .args(["content", "ingest", "--expected-digest", &digest, &r#ref])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&all[..all.len() / 2]).unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let offset = loop {
            let active = ok(daemon.ctr(&workspace_bin("ctr"), &["content", "active"]));
            if let Some(line) = active.lines().find(|l| l.starts_with(&r#ref)) {
                let size = line
                    .split('\t')
                    .filter(|c| !c.is_empty())
                    .nth(1)
                    .unwrap()
                    .to_owned();
                if size.ends_with("MB")
                    && size.trim_end_matches("MB").parse::<f64>().unwrap() >= 16.0
                {
                    break size;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ingest made no progress:\n{active}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        assert!(
            ok(daemon.ctr(&debian_ctr(), &["content", "active"])).contains(&r#ref),
            "ingest kept after kill at {offset}"
        );
        // The same command again resumes; the result verifies.
        ok(ctr_with_stdin(
            &daemon,
            &ctr,
            &["content", "ingest", "--expected-digest", &digest, &r#ref],
            &file,
        ));
        assert!(!ok(daemon.ctr(&ctr, &["content", "active"])).contains(&r#ref));
        assert_eq!(
            ok(daemon.ctr(&ctr, &["content", "ls", "-q"])).trim(),
            digest
        );
        ok(daemon.ctr(&ctr, &["content", "rm", &digest]));
    }
}

#[test]
fn wrong_expected_digest_is_refused_and_leaves_no_blob() {
    let daemon = Daemon::start();
    let data = tempfile::tempdir().unwrap();
    let (file, _) = blob(data.path(), "x", 1 << 20, 17);
    let wrong = format!("sha256:{}", "ab".repeat(32));
    for ctr in [debian_ctr(), workspace_bin("ctr")] {
        let stderr = fails(ctr_with_stdin(
            &daemon,
            &ctr,
            &["content", "ingest", "--expected-digest", &wrong, "wrong"],
            &file,
        ));
        assert!(
            stderr.contains("ctr: ") && stderr.contains("digest"),
            "{stderr}"
        );
        let stderr = fails(ctr_with_stdin(
            &daemon,
            &ctr,
            &["content", "ingest", "--expected-size", "5", "wrong-size"],
            &file,
        ));
        assert!(
            stderr.contains("ctr: ") && stderr.contains("size"),
            "{stderr}"
        );
        assert_eq!(ok(daemon.ctr(&ctr, &["content", "ls", "-q"])), "");
        assert!(blob_files(&daemon).is_empty());
    }
    let stderr = fails(ctr_with_stdin(
        &daemon,
        &workspace_bin("ctr"),
        &["content", "ingest", "--expected-digest", "md5:abc", "bad"],
        &file,
    ));
    assert!(stderr.contains("md5"), "{stderr}");
}

#[test]
fn the_same_blob_in_two_namespaces_is_stored_once() {
    let daemon = Daemon::start();
    let data = tempfile::tempdir().unwrap();
    let (file, digest) = blob(data.path(), "shared", 5 << 20, 19);
    let ctr = debian_ctr();
    ok(ctr_with_stdin(
        &daemon,
        &ctr,
        &["-n", "one", "content", "ingest", "a"],
        &file,
    ));
    // Without an expected digest the bytes travel again, and are stored once.
    ok(ctr_with_stdin(
        &daemon,
        &ctr,
        &["-n", "two", "content", "ingest", "b"],
        &file,
    ));
    // With one, the shared blob is claimed without a transfer.
    ok(ctr_with_stdin(
        &daemon,
        &ctr,
        &[
            "-n",
            "three",
            "content",
            "ingest",
            "--expected-digest",
            &digest,
            "c",
        ],
        &file,
    ));
    for ns in ["one", "two", "three"] {
        assert_eq!(
            ok(daemon.ctr(&ctr, &["-n", ns, "content", "ls", "-q"])).trim(),
            digest,
            "{ns}"
        );
    }
    assert_eq!(blob_files(&daemon).len(), 1);
    // Not visible where it was never written.
    assert_eq!(
        ok(daemon.ctr(&ctr, &["-n", "four", "content", "ls", "-q"])),
        ""
    );
    let stderr = fails(daemon.ctr(
        &workspace_bin("ctr"),
        &["-n", "four", "content", "get", &digest],
    ));
    assert!(stderr.contains("not found"), "{stderr}");
    // Removing it from one namespace keeps it for the others. (Content
    // nothing references is garbage, and a delete runs the collector, so the
    // other namespaces root theirs, as a containerd user would.)
    for ns in ["two", "three"] {
        ok(daemon.ctr(
            &ctr,
            &[
                "-n",
                ns,
                "content",
                "label",
                &digest,
                "containerd.io/gc.root=kept",
            ],
        ));
    }
    ok(daemon.ctr(&ctr, &["-n", "one", "content", "rm", &digest]));
    assert_eq!(blob_files(&daemon).len(), 1);
    assert_eq!(
        ok(daemon.ctr(&ctr, &["-n", "two", "content", "ls", "-q"])).trim(),
        digest
    );
}

#[test]
fn bad_content_input_is_refused_clearly() {
    let daemon = Daemon::start();
    let ours = workspace_bin("ctr");
    for (args, message) in [
        (&["content", "get", "sha256:abc"][..], "sha256"),
        (&["content", "get", "nodigest"], "nodigest"),
        (&["content", "label", "sha999:00", "a=b"], "sha999"),
        (&["content", "ls", "labels.=="], "position"),
        (&["content", "active", "ref~="], "position"),
    ] {
        let stderr = fails(daemon.ctr(&ours, args));
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// One `Content.Write` stream in namespace `ns`, as containerd's Go client
/// drives it: each request is answered before the next is sent.
struct WriteStream {
    requests: tokio::sync::mpsc::Sender<content::WriteContentRequest>,
    responses: tonic::Streaming<content::WriteContentResponse>,
}

impl WriteStream {
    /// Opens the stream with a STAT of `ref` with `total` and `expected`.
    async fn open(
        daemon: &Daemon,
        ns: &str,
        r#ref: &str,
        total: usize,
        expected: &str,
    ) -> Result<(Self, content::WriteContentResponse), tonic::Status> {
        Self::open_leased(daemon, (ns, None), r#ref, total, expected).await
    }

    /// [`WriteStream::open`] under `lease` if given.
    async fn open_leased(
        daemon: &Daemon,
        (ns, lease): (&str, Option<&str>),
        r#ref: &str,
        total: usize,
        expected: &str,
    ) -> Result<(Self, content::WriteContentResponse), tonic::Status> {
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        requests
            .send(content::WriteContentRequest {
                action: content::WriteAction::Stat as i32,
                r#ref: r#ref.into(),
                total: total as i64,
                expected: expected.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        set_grpc_namespace(&mut request, &Namespace::new(ns).unwrap());
        if let Some(lease) = lease {
            set_grpc_lease(&mut request, lease).unwrap();
        }
        let mut responses = content::content_client::ContentClient::new(daemon.channel().await)
            .write(request)
            .await?
            .into_inner();
        let stat = responses.message().await?.expect("a reply to the stat");
        Ok((
            Self {
                requests,
                responses,
            },
            stat,
        ))
    }

    async fn call(
        &mut self,
        request: content::WriteContentRequest,
    ) -> Result<content::WriteContentResponse, tonic::Status> {
        self.requests.send(request).await.unwrap();
        Ok(self.responses.message().await?.expect("a reply"))
    }
}

fn digest_of(data: &[u8]) -> String {
    crated_core::digest::Digest::sha256(data).to_string()
}

/// With containerd's default `shared` policy, a blob committed in one
/// namespace is complete for a writer of another that expects it: offset
/// and total are its size, and a commit without bytes records it there.
/// Bytes appended under such a ref commit a new blob instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_content_is_claimed_without_bytes_and_grows_into_a_new_blob() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (file, digest) = blob(dir.path(), "shared", 256 << 10, 23);
    let data = std::fs::read(&file).unwrap();
    let size = data.len();
    ok(ctr_with_stdin(
        &daemon,
        &debian_ctr(),
        &[
            "-n",
            "one",
            "content",
            "ingest",
            "--expected-digest",
            &digest,
            "a",
        ],
        &file,
    ));

    let (mut claim, stat) = WriteStream::open(&daemon, "two", "claim", size, &digest)
        .await
        .unwrap();
    assert_eq!(
        (stat.offset, stat.total, stat.digest.as_str()),
        (size as i64, size as i64, digest.as_str()),
        "{stat:?}"
    );
    let committed = claim
        .call(content::WriteContentRequest {
            action: content::WriteAction::Commit as i32,
            total: size as i64,
            offset: size as i64,
            expected: digest.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(committed.digest, digest);
    let ctr = debian_ctr();
    assert_eq!(
        ok(daemon.ctr(&ctr, &["-n", "two", "content", "ls", "-q"])).trim(),
        digest
    );
    assert_eq!(
        ok(daemon.ctr(&ctr, &["-n", "two", "content", "active"]))
            .lines()
            .count(),
        1,
        "only the header: the ingest is gone"
    );

    let (mut grow, stat) = WriteStream::open(&daemon, "three", "grow", size, &digest)
        .await
        .unwrap();
    assert_eq!(stat.offset, size as i64);
    let more = b"and four more bytes";
    let grown: Vec<u8> = data.iter().chain(more.iter()).copied().collect();
    let written = grow
        .call(content::WriteContentRequest {
            action: content::WriteAction::Write as i32,
            total: grown.len() as i64,
            offset: size as i64,
            data: more.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(written.offset, grown.len() as i64);
    let committed = grow
        .call(content::WriteContentRequest {
            action: content::WriteAction::Commit as i32,
            total: grown.len() as i64,
            offset: grown.len() as i64,
            expected: digest_of(&grown),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(committed.digest, digest_of(&grown));
    assert_eq!(
        ok(daemon.ctr(&ctr, &["-n", "three", "content", "ls", "-q"])).trim(),
        digest_of(&grown),
        "the new blob only"
    );
    let out = daemon.ctr(&ctr, &["-n", "three", "content", "get", &digest_of(&grown)]);
    assert!(out.status.success());
    assert!(out.stdout == grown, "the shared bytes, then the new ones");
    assert_eq!(blob_files(&daemon).len(), 2);
}

/// With `isolated`, another namespace does not see the blob: its writer
/// starts empty and the bytes are written again (and stored once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_content_is_written_again() {
    let daemon = tokio::task::spawn_blocking(|| {
        Daemon::start_with(
            "",
            "[plugins.\"io.containerd.metadata.v1.sled\"]\ncontent_sharing_policy = \"isolated\"\n",
        )
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (file, digest) = blob(dir.path(), "isolated", 256 << 10, 29);
    let data = std::fs::read(&file).unwrap();
    let size = data.len();
    ok(ctr_with_stdin(
        &daemon,
        &debian_ctr(),
        &[
            "-n",
            "one",
            "content",
            "ingest",
            "--expected-digest",
            &digest,
            "a",
        ],
        &file,
    ));
    let (mut own, stat) = WriteStream::open(&daemon, "two", "own", size, &digest)
        .await
        .unwrap();
    assert_eq!(stat.offset, 0, "{stat:?}");
    let committed = own
        .call(content::WriteContentRequest {
            action: content::WriteAction::Commit as i32,
            total: size as i64,
            expected: digest.clone(),
            data,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(committed.digest, digest);
    assert_eq!(
        ok(daemon.ctr(&debian_ctr(), &["-n", "two", "content", "ls", "-q"])).trim(),
        digest
    );
    assert_eq!(blob_files(&daemon).len(), 1);
}

/// What lease `id` of `ns` holds, as `type id` lines.
async fn lease_resources(daemon: &Daemon, ns: &str, id: &str) -> Vec<String> {
    let mut request = tonic::Request::new(leases::ListResourcesRequest { id: id.into() });
    set_grpc_namespace(&mut request, &Namespace::new(ns).unwrap());
    leases::leases_client::LeasesClient::new(daemon.channel().await)
        .list_resources(request)
        .await
        .unwrap()
        .into_inner()
        .resources
        .into_iter()
        .map(|r| format!("{} {}", r.r#type, r.id))
        .collect()
}

/// An ingest under a lease is held by it while it runs; once committed,
/// the lease holds the blob only, as containerd's (which drops the ingest
/// from the lease in the commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_ingest_leaves_only_its_content_in_the_lease() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let data = b"held by a lease".to_vec();
    let digest = digest_of(&data);
    for ns in ["one", "two"] {
        ok(daemon.ctr(
            &debian_ctr(),
            &["-n", ns, "leases", "create", "--id", "hold"],
        ));
        let (mut write, stat) =
            WriteStream::open_leased(&daemon, (ns, Some("hold")), "leased", data.len(), &digest)
                .await
                .unwrap();
        assert_eq!(
            lease_resources(&daemon, ns, "hold").await,
            ["ingests leased"],
            "{ns}"
        );
        // In two the blob of one is shared: no bytes to send.
        let bytes = if stat.offset == 0 {
            data.clone()
        } else {
            Vec::new()
        };
        write
            .call(content::WriteContentRequest {
                action: content::WriteAction::Commit as i32,
                total: data.len() as i64,
                offset: stat.offset,
                expected: digest.clone(),
                data: bytes,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            lease_resources(&daemon, ns, "hold").await,
            [format!("content {digest}")],
            "{ns}: the lease holds the blob, not the ingest"
        );
    }
}

/// A write that finds its blob already there — named at the open or only
/// at the commit, as our client and containerd's send it — answers
/// AlreadyExists only once the writer's lease holds the blob: the client
/// takes that answer as written, and a blob no one references may be
/// collected at any moment after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_found_existing_is_held_by_the_writers_lease() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ns = "found";
    let data = b"written twice".to_vec();
    let digest = digest_of(&data);
    let commit = |offset: i64, bytes: Vec<u8>| content::WriteContentRequest {
        action: content::WriteAction::Commit as i32,
        total: data.len() as i64,
        offset,
        expected: digest.clone(),
        data: bytes,
        ..Default::default()
    };
    ok(daemon.ctr(
        &debian_ctr(),
        &["-n", ns, "leases", "create", "--id", "first"],
    ));
    let (mut write, _) =
        WriteStream::open_leased(&daemon, (ns, Some("first")), "a", data.len(), &digest)
            .await
            .unwrap();
    write.call(commit(0, data.clone())).await.unwrap();

    // Named at the open.
    ok(daemon.ctr(
        &debian_ctr(),
        &["-n", ns, "leases", "create", "--id", "at-open"],
    ));
    let found = WriteStream::open_leased(&daemon, (ns, Some("at-open")), "b", data.len(), &digest)
        .await
        .err()
        .expect("the blob is there");
    assert_eq!(found.code(), tonic::Code::AlreadyExists, "{found:?}");
    assert_eq!(
        lease_resources(&daemon, ns, "at-open").await,
        [format!("content {digest}")]
    );

    // Named only at the commit, after the bytes.
    ok(daemon.ctr(
        &debian_ctr(),
        &["-n", ns, "leases", "create", "--id", "at-commit"],
    ));
    let (mut write, _) = WriteStream::open_leased(&daemon, (ns, Some("at-commit")), "c", 0, "")
        .await
        .unwrap();
    let found = write.call(commit(0, data.clone())).await.unwrap_err();
    assert_eq!(found.code(), tonic::Code::AlreadyExists, "{found:?}");
    assert_eq!(
        lease_resources(&daemon, ns, "at-commit").await,
        [format!("content {digest}")]
    );

    // The first lease gone and a collection run, the later ones keep it.
    ok(daemon.ctr(
        &common::workspace_bin("ctr"),
        &["-n", ns, "leases", "rm", "--sync", "first"],
    ));
    let listed = ok(daemon.ctr(&debian_ctr(), &["-n", ns, "content", "ls", "-q"]));
    assert!(listed.contains(&digest), "{listed}");
}
