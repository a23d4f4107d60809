//! containerd 1.7's transfer service, driven by containerd 1.7's own ctr
//! (`--local=false`, built by `cargo xtask deps` as `ctr-1.7`): pull with
//! unpack and progress, tag, push, export and import as one daemon-side
//! call each, credentials asked of the client on an auth stream, and
//! errors that name what was wrong.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{ctr17, debian_ctr, fails, ok, registry_with_busybox, rows, Daemon};

/// The image records of the daemon's default namespace: name → digest.
fn images(daemon: &Daemon, ctr: &Path) -> Vec<(String, String)> {
    rows(&ok(daemon.ctr(ctr, &["images", "ls"])))
        .into_iter()
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect()
}

fn digest_of(daemon: &Daemon, ctr: &Path, name: &str) -> String {
    images(daemon, ctr)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("no image {name}:\n{}", daemon.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_17_ctr_pulls_tags_pushes_exports_and_imports_through_the_transfer_service() {
    let ctr = ctr17();
    let (registry, reference) = registry_with_busybox().await;
    let daemon = Daemon::start();
    let platform = format!("linux/{}", crated_testimages::host_arch());
    // Nothing deprecated in use: containerd 1.7's ctr lists nothing.
    assert_eq!(ok(daemon.ctr(&ctr, &["deprecations", "list"])).trim(), "");

    // Pull: fetched, recorded and, for the platform asked, unpacked by the
    // daemon; the progress stream carries the events ctr draws.
    assert!(rows(&ok(daemon.ctr(&ctr, &["snapshots", "ls"]))).is_empty());
    let out = ok(daemon.ctr(
        &ctr,
        &[
            "images",
            "pull",
            "--local=false",
            "--platform",
            &platform,
            &reference,
        ],
    ));
    assert!(
        out.contains("saved") && out.contains("complete"),
        "no progress from the transfer:\n{out}"
    );
    let digest = digest_of(&daemon, &ctr, &reference);
    let snapshots = rows(&ok(daemon.ctr(&ctr, &["snapshots", "ls"])));
    assert!(
        !snapshots.is_empty() && snapshots.iter().all(|r| r.last().unwrap() == "Committed"),
        "the pull did not unpack: {snapshots:?}"
    );
    let check = ok(daemon.ctr(&ctr, &["images", "check"]));
    assert!(
        check.contains("complete") && check.contains("true"),
        "{check}"
    );

    // Tag: a second name for the same target.
    let tagged = format!("{}/test/tagged:1", registry.host);
    ok(daemon.ctr(
        &ctr,
        &["images", "tag", "--local=false", &reference, &tagged],
    ));
    assert_eq!(digest_of(&daemon, &ctr, &tagged), digest);

    // Push: the registry has it under the new name, and Debian's ctr
    // pulls it back (through the daemon's own resolver, another path) to
    // the same digest.
    let pushed = format!("{}/test/pushed:2", registry.host);
    let out = ok(daemon.ctr(&ctr, &["images", "push", "--local=false", &pushed, &tagged]));
    assert!(
        out.contains("complete") || out.contains("already exists"),
        "{out}"
    );
    let debian = debian_ctr();
    ok(daemon.ctr(
        &debian,
        &["-n", "other", "images", "pull", "--plain-http", &pushed],
    ));
    let other = rows(&ok(daemon.ctr(&debian, &["-n", "other", "images", "ls"])));
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(other[0][2], digest);

    // Export to the client's file over the stream, then import it back
    // after the images are gone; the import unpacks, and a container runs.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("busybox.tar");
    let archive_arg = archive.to_str().unwrap();
    ok(daemon.ctr(
        &ctr,
        &["images", "export", "--local=false", archive_arg, &reference],
    ));
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for entry in ["index.json", "oci-layout", "manifest.json"] {
        assert!(
            listing.lines().any(|l| l == entry),
            "no {entry} in:\n{listing}"
        );
    }
    let manifest_blob = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    assert!(listing.lines().any(|l| l == manifest_blob), "{listing}");
    for name in [&reference, &tagged] {
        ok(daemon.ctr(&ctr, &["images", "rm", "--sync", name]));
    }
    assert!(images(&daemon, &ctr).is_empty());
    let out = ok(daemon.ctr(
        &ctr,
        &[
            "images",
            "import",
            "--local=false",
            "--platform",
            &platform,
            archive_arg,
        ],
    ));
    assert!(out.contains("saved"), "{out}");
    assert_eq!(digest_of(&daemon, &ctr, &reference), digest);
    let out = ok(daemon.ctr(
        &ctr,
        &[
            "run",
            "--rm",
            &reference,
            "transferred",
            "echo",
            "through the transfer service",
        ],
    ));
    assert_eq!(out.trim(), "through the transfer service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_errors_name_what_was_wrong_and_record_nothing() {
    let ctr = ctr17();
    let (registry, reference) = registry_with_busybox().await;
    let daemon = Daemon::start();

    let missing = format!("{}/test/busybox:nope", registry.host);
    let err = fails(daemon.ctr(&ctr, &["images", "pull", "--local=false", &missing]));
    assert!(
        err.contains("not found") && err.contains("test/busybox:nope"),
        "{err}"
    );
    assert!(images(&daemon, &ctr).is_empty());

    let err = fails(daemon.ctr(
        &ctr,
        &[
            "images",
            "push",
            "--local=false",
            &reference,
            "never/pulled:1",
        ],
    ));
    assert!(
        err.contains("never/pulled:1") && err.contains("not found"),
        "{err}"
    );

    let err = fails(daemon.ctr(
        &ctr,
        &[
            "images",
            "tag",
            "--local=false",
            "never/pulled:1",
            "other:1",
        ],
    ));
    assert!(
        err.contains("never/pulled:1") && err.contains("not found"),
        "{err}"
    );
    assert!(images(&daemon, &ctr).is_empty());

    // containerd's answer for what it cannot transfer.
    let err = fails(daemon.ctr(
        &ctr,
        &[
            "images",
            "pull",
            "--local=false",
            "--all-metadata",
            &reference,
        ],
    ));
    assert!(
        err.contains("all_metadata") && err.contains("not built"),
        "{err}"
    );
    assert!(images(&daemon, &ctr).is_empty());
}

/// The daemon asks ctr for credentials on the auth stream: with `--user`
/// a push to and a pull from a registry that wants them work; without,
/// the registry refuses and nothing is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_the_client_over_the_auth_stream() {
    let ctr = ctr17();
    let (_open, reference) = registry_with_busybox().await;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("tester:{hash}\n")).unwrap();
    let guarded =
        tokio::task::spawn_blocking(move || crated_testimages::Registry::start(Some(&htpasswd)))
            .await
            .unwrap()
            .unwrap();
    let daemon = Daemon::start();
    ok(daemon.ctr(&ctr, &["images", "pull", "--local=false", &reference]));
    let digest = digest_of(&daemon, &ctr, &reference);

    let private = format!("{}/team/busybox:1", guarded.host);
    let err = fails(daemon.ctr(
        &ctr,
        &["images", "push", "--local=false", &private, &reference],
    ));
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );
    ok(daemon.ctr(
        &ctr,
        &[
            "images",
            "push",
            "--local=false",
            "--user",
            "tester:s3cret",
            &private,
            &reference,
        ],
    ));

    let err = fails(daemon.ctr(&ctr, &["images", "pull", "--local=false", &private]));
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );
    assert!(!images(&daemon, &ctr).iter().any(|(n, _)| *n == private));
    ok(daemon.ctr(
        &ctr,
        &[
            "images",
            "pull",
            "--local=false",
            "--user",
            "tester:s3cret",
            &private,
        ],
    ));
    assert_eq!(digest_of(&daemon, &ctr, &private), digest);
}
