//! `ctr images export` and `ctr images import`: an export imported into a
//! fresh namespace gives the same images with the same digests (with our
//! ctr and containerd's, each way), and a `docker save` archive imports
//! and runs.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;

use common::{debian_ctr, fails, ok, rows, workspace_bin, Daemon};
use crated_testimages::{push, Registry};

/// `REF → (TYPE, DIGEST)` of `ctr images ls` in `ns`.
fn images(daemon: &Daemon, ns: &str) -> BTreeMap<String, (String, String)> {
    let table = ok(daemon.ctr(&workspace_bin("ctr"), &["-n", ns, "images", "ls"]));
    rows(&table)
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
        .collect()
}

/// The files of a tar archive, path → content.
fn files(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(path, data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_a_fresh_namespace_keeps_every_digest() {
    let registry = tokio::task::spawn_blocking(|| Registry::start(None))
        .await
        .unwrap()
        .unwrap();
    let busybox = format!("{}/test/busybox:latest", registry.host);
    let multi = format!("{}/test/multi:1", registry.host);
    push(&busybox, &crated_testimages::busybox().unwrap())
        .await
        .unwrap();
    push(&multi, &crated_testimages::multi_platform().unwrap())
        .await
        .unwrap();
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ours = workspace_bin("ctr");
    for image in [&busybox, &multi] {
        ok(daemon.ctr(
            &ours,
            &["-n", "src", "images", "pull", "--plain-http", image],
        ));
    }
    let source = images(&daemon, "src");
    let dir = tempfile::tempdir().unwrap();

    for (i, (exporter, importer)) in [
        (ours.clone(), ours.clone()),
        (debian_ctr(), ours.clone()),
        (ours.clone(), debian_ctr()),
    ]
    .into_iter()
    .enumerate()
    {
        let archive = dir.path().join(format!("images-{i}.tar"));
        let archive_s = archive.display().to_string();
        ok(daemon.ctr(
            &exporter,
            &[
                "-n", "src", "images", "export", &archive_s, &busybox, &multi,
            ],
        ));
        let data = std::fs::read(&archive).unwrap();
        let entries = files(&data);
        assert_eq!(entries["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: serde_json::Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(names, [busybox.as_str(), multi.as_str()]);
        // Docker's manifest.json, for `docker load`.
        let docker: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
        let tags: Vec<&str> = docker
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| {
                m["RepoTags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap())
            })
            .collect();
        assert!(tags.contains(&multi.as_str()), "{tags:?}");
        // containerd's exporter keeps one name per manifest (the last);
        // ours keeps every name of it.
        if exporter == ours {
            assert!(tags.contains(&busybox.as_str()), "{tags:?}");
        }
        // Every blob is where its digest says.
        for (path, content) in &entries {
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                if !hex.is_empty() {
                    assert_eq!(
                        crated_core::digest::Digest::sha256(content).hex(),
                        hex,
                        "{path}"
                    );
                }
            }
        }

        let ns = format!("dst{i}");
        let out = ok(daemon.ctr(&importer, &["-n", &ns, "images", "import", &archive_s]));
        assert!(out.contains("unpacking"), "{out}");
        assert_eq!(
            images(&daemon, &ns),
            source,
            "{} → {}",
            exporter.display(),
            importer.display()
        );
        let check = ok(daemon.ctr(&ours, &["-n", &ns, "images", "check"]));
        for row in rows(&check) {
            assert_eq!(row[3], "complete", "{check}");
        }
    }

    // Export to stdout, and a missing image is a clear error.
    let out = daemon.ctr(&ours, &["-n", "src", "images", "export", "-", &busybox]);
    assert!(out.status.success());
    assert!(files(&out.stdout).contains_key("index.json"));
    let err = fails(daemon.ctr(
        &ours,
        &[
            "-n",
            "src",
            "images",
            "export",
            &dir.path().join("x.tar").display().to_string(),
            "nope:1",
        ],
    ));
    assert!(err.contains("nope:1"), "{err}");
    assert!(!dir.path().join("x.tar").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_save_archive_imports_and_runs() {
    let image = crated_testimages::busybox().unwrap();
    let archive =
        crated_testimages::docker_save(&image, &["busybox:latest"], "example.com/tools/box:2")
            .unwrap();
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("save.tar");
    std::fs::write(&path, &archive).unwrap();
    let path_s = path.display().to_string();
    let ns = format!("docker-save-{}", std::process::id());
    let mut digests = Vec::new();
    for (i, ctr) in [workspace_bin("ctr"), debian_ctr()].into_iter().enumerate() {
        let ns_i = format!("{ns}-{i}");
        ok(daemon.ctr(&ctr, &["-n", &ns_i, "images", "import", &path_s]));
        let listed = images(&daemon, &ns_i);
        let names: Vec<&String> = listed.keys().collect();
        assert_eq!(
            names,
            [
                "docker.io/library/busybox:latest",
                "example.com/tools/box:2"
            ],
            "{}",
            ctr.display()
        );
        let (kind, digest) = &listed["docker.io/library/busybox:latest"];
        assert_eq!(kind, "application/vnd.docker.distribution.manifest.v2+json");
        digests.push(digest.clone());
        // Both names are the same manifest (the alias's layers were links).
        assert_eq!(listed["example.com/tools/box:2"].1, *digest);
    }
    // containerd's importer and ours write the same manifest.
    assert_eq!(digests[0], digests[1]);

    let ctr = workspace_bin("ctr");
    let ns0 = format!("{ns}-0");
    let out = ok(daemon.ctr(
        &ctr,
        &[
            "-n",
            &ns0,
            "run",
            "--rm",
            "docker.io/library/busybox:latest",
            "imported",
            "echo",
            "hi",
        ],
    ));
    assert_eq!(out, "hi\n");
    common::forget_namespace(&ns0);

    // --compress-blobs: the plain layers become gzip blobs labelled with
    // their diff id, and the image still unpacks to the same diff ids.
    let ns_gz = format!("{ns}-gz");
    ok(daemon.ctr(
        &ctr,
        &[
            "-n",
            &ns_gz,
            "images",
            "import",
            "--compress-blobs",
            &path_s,
        ],
    ));
    let content = ok(daemon.ctr(&ctr, &["-n", &ns_gz, "content", "ls"]));
    let diff_id = image.diff_ids[0].to_string();
    assert!(
        content.contains(&format!("containerd.io/uncompressed={diff_id}")),
        "{content}"
    );
    let listed = images(&daemon, &ns_gz);
    assert_ne!(listed["docker.io/library/busybox:latest"].1, digests[0]);
    let check = ok(daemon.ctr(&ctr, &["-n", &ns_gz, "images", "check"]));
    assert!(check.contains("complete"), "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_archives_are_refused_by_name() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctr = workspace_bin("ctr");
    let write = |name: &str, entries: &[(&str, &[u8])]| {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, path, *data).unwrap();
        }
        let path = dir.path().join(name);
        std::fs::write(&path, tar.into_inner().unwrap()).unwrap();
        path.display().to_string()
    };
    let neither = write("neither.tar", &[("hello", b"x")]);
    let err = fails(daemon.ctr(&ctr, &["images", "import", &neither]));
    assert!(err.contains("unrecognized image format"), "{err}");
    let lying = write(
        "lying.tar",
        &[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            (
                "blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000",
                b"not that",
            ),
        ],
    );
    let err = fails(daemon.ctr(&ctr, &["images", "import", &lying]));
    assert!(err.contains("does not match its name"), "{err}");
    let no_index = write(
        "no-index.tar",
        &[("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)],
    );
    let err = fails(daemon.ctr(&ctr, &["images", "import", &no_index]));
    assert!(err.contains("missing index.json"), "{err}");
    assert_eq!(ok(daemon.ctr(&ctr, &["images", "ls", "-q"])), "");
}
