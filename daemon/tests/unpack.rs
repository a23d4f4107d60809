//! Debian's containerd 1.6 `ctr snapshots unpack` unpacking a two-layer
//! image through crated's diff and snapshots services, onto overlayfs and
//! native: the chain ids it commits, the whiteout honoured, the files there.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use common::blobs::sha256sum;
use common::{debian_ctr, ok, rows, Daemon};
use crated_api::containerd::services::images::v1 as images;
use crated_api::containerd::types::Descriptor;
use crated_api::metadata::set_grpc_namespace;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_core::mount::mount_all;
use crated_core::snapshots::Snapshotter;
use crated_core::Namespace;
use serde_json::json;

const NS: &str = "unpack";

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn tar_layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Ingests `data` with Debian's ctr, labelled; returns its digest.
fn put(daemon: &Daemon, dir: &Path, name: &str, data: &[u8], labels: &[String]) -> String {
    common::blobs::put(daemon, NS, dir, name, data, labels)
}

fn sha256_of(data: &[u8], dir: &Path) -> String {
    let file = dir.join("hash-me");
    std::fs::write(&file, data).unwrap();
    sha256sum(&file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_ctr_unpacks_an_image_through_the_diff_service() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let tar1 = tar_layer(&[("etc/hostname", b"crated\n"), ("etc/old", b"goes away\n")]);
    let tar2 = tar_layer(&[("etc/.wh.old", b""), ("bin/tool", b"#!/bin/sh\n")]);
    let (diff1, diff2) = (sha256_of(&tar1, dir.path()), sha256_of(&tar2, dir.path()));
    let (gz1, gz2) = (gzip(&tar1), gzip(&tar2));
    let layer1 = put(&daemon, dir.path(), "layer1", &gz1, &[]);
    let layer2 = put(&daemon, dir.path(), "layer2", &gz2, &[]);
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff1, diff2]},
    }))
    .unwrap();
    let config_digest = put(&daemon, dir.path(), "config", &config, &[]);
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": gz, "digest": layer1, "size": gz1.len()},
            {"mediaType": gz, "digest": layer2, "size": gz2.len()},
        ],
    }))
    .unwrap();
    let manifest_digest = put(
        &daemon,
        dir.path(),
        "manifest",
        &manifest,
        &[
            format!("containerd.io/gc.ref.content.config={config_digest}"),
            format!("containerd.io/gc.ref.content.l.0={layer1}"),
            format!("containerd.io/gc.ref.content.l.1={layer2}"),
        ],
    );
    let mut request = tonic::Request::new(images::CreateImageRequest {
        image: Some(images::Image {
            name: "example.com/unpack:1".into(),
            target: Some(Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: manifest_digest.clone(),
                size: manifest.len() as i64,
                annotations: HashMap::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    set_grpc_namespace(&mut request, &Namespace::new(NS).unwrap());
    images::images_client::ImagesClient::new(daemon.channel().await)
        .create(request)
        .await
        .unwrap();

    // Before unpacking: complete content, not unpacked.
    let check = same_check(&daemon, &["images", "check"]);
    assert!(check.contains("complete (3/3)"), "{check}");
    assert!(check.trim_end().ends_with("false"), "{check}");

    // `images mount` unpacks (our ctr with the native snapshotter; Debian's,
    // whose 1.6 ignores --snapshotter there, with overlayfs) and mounts.
    for (bin, snapshotter) in [
        (common::workspace_bin("ctr"), "native"),
        (debian_ctr(), "overlayfs"),
    ] {
        let target = dir.path().join(format!("image-{snapshotter}"));
        std::fs::create_dir(&target).unwrap();
        let _cleanup = UnmountOnDrop(target.clone());
        let target = target.display().to_string();
        let out = ok(daemon.ctr(
            &bin,
            &[
                "-n",
                NS,
                "images",
                "mount",
                "--snapshotter",
                snapshotter,
                "example.com/unpack:1",
                &target,
            ],
        ));
        assert!(out.ends_with(&format!("{target}\n")), "{out}");
        let mounted = Path::new(&target);
        assert_eq!(
            std::fs::read(mounted.join("bin/tool")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert!(!mounted.join("etc/old").exists(), "{snapshotter}: whiteout");
        assert!(
            std::fs::write(mounted.join("x"), "y").is_err(),
            "mounted read-only"
        );
        ok(daemon.ctr(
            &bin,
            &[
                "-n",
                NS,
                "images",
                "unmount",
                "--snapshotter",
                snapshotter,
                "--rm",
                &target,
            ],
        ));
        assert!(!mounted.join("bin").exists(), "{snapshotter}: unmounted");
    }

    // chain id 1 is the first diff id; 2 is sha256("<chain1> <diff2>").
    let chain1 = diff1.clone();
    let chain2 = sha256_of(format!("{chain1} {diff2}").as_bytes(), dir.path());

    for snapshotter in ["overlayfs", "native"] {
        let out = ok(daemon.ctr(
            &debian_ctr(),
            &[
                "-n",
                NS,
                "snapshots",
                "unpack",
                "--snapshotter",
                snapshotter,
                &manifest_digest,
            ],
        ));
        assert!(out.ends_with("done\n"), "{snapshotter}: {out}");
        let listed = ok(daemon.ctr(
            &debian_ctr(),
            &["-n", NS, "snapshots", "--snapshotter", snapshotter, "ls"],
        ));
        let mut listed = rows(&listed);
        listed.sort();
        let mut want = vec![
            vec![chain1.clone(), "Committed".to_owned()],
            vec![chain2.clone(), chain1.clone(), "Committed".to_owned()],
        ];
        want.sort();
        assert_eq!(listed, want, "{snapshotter}");

        let sn = SnapshotsProxy::new(
            daemon.channel().await,
            snapshotter,
            Namespace::new(NS).unwrap(),
        );
        // Rooted: the unpack's lease went at its end, and the collection
        // that sets off takes whatever nothing holds.
        let root = [("containerd.io/gc.root".to_owned(), "test".to_owned())].into();
        let mounts = sn.view("check", &chain2, root).await.unwrap();
        let target = dir.path().join(format!("mnt-{snapshotter}"));
        std::fs::create_dir(&target).unwrap();
        let guard = mount_all(&mounts, &target).unwrap();
        assert_eq!(
            std::fs::read(target.join("etc/hostname")).unwrap(),
            b"crated\n"
        );
        assert_eq!(
            std::fs::read(target.join("bin/tool")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert!(
            !target.join("etc/old").exists(),
            "{snapshotter}: the whiteout deleted it"
        );
        guard.unmount().unwrap();
        sn.remove("check").await.unwrap();
    }
    // A collection keeps the unpacked chains: the image roots its manifest,
    // the manifest its config, the config (labelled by the unpacker) the
    // top snapshot of each snapshotter, and each snapshot its parent.
    ok(daemon.ctr(&debian_ctr(), &["-n", NS, "leases", "create", "--id", "gc"]));
    ok(daemon.ctr(&debian_ctr(), &["-n", NS, "leases", "rm", "--sync", "gc"]));
    for snapshotter in ["overlayfs", "native"] {
        let listed = ok(daemon.ctr(
            &debian_ctr(),
            &["-n", NS, "snapshots", "--snapshotter", snapshotter, "ls"],
        ));
        assert_eq!(
            rows(&listed).len(),
            2,
            "{snapshotter} after a collection:\n{listed}"
        );
    }
    // Unpacked now, in both snapshotters; tags share the target.
    let check = same_check(&daemon, &["images", "check"]);
    assert!(check.trim_end().ends_with("true"), "{check}");
    let check = same_check(&daemon, &["images", "check", "--snapshotter", "native"]);
    assert!(check.trim_end().ends_with("true"), "{check}");
    let tagged = ok(daemon.ctr(
        &common::workspace_bin("ctr"),
        &[
            "-n",
            NS,
            "images",
            "tag",
            "example.com/unpack:1",
            "example.com/unpack:2",
        ],
    ));
    assert_eq!(tagged, "example.com/unpack:2\n");
    let err = common::fails(daemon.ctr(
        &common::workspace_bin("ctr"),
        &[
            "-n",
            NS,
            "images",
            "tag",
            "example.com/unpack:1",
            "example.com/unpack:2",
        ],
    ));
    assert!(err.contains("already exists"), "{err}");
    ok(daemon.ctr(
        &debian_ctr(),
        &[
            "-n",
            NS,
            "images",
            "tag",
            "--force",
            "example.com/unpack:1",
            "example.com/unpack:2",
        ],
    ));
    let check = same_check(&daemon, &["images", "check", "-q"]);
    assert_eq!(check, "example.com/unpack:1\nexample.com/unpack:2\n");

    // The layers now say what they unpack to, as containerd's unpacker records.
    let info = ok(daemon.ctr(&debian_ctr(), &["-n", NS, "content", "ls"]));
    assert!(
        info.contains(&format!("containerd.io/uncompressed={diff1}")),
        "{info}"
    );

    // A missing layer makes the image incomplete.
    ok(daemon.ctr(&debian_ctr(), &["-n", NS, "content", "rm", &layer2]));
    let check = same_check(&daemon, &["images", "check", "name==example.com/unpack:1"]);
    assert!(check.contains("incomplete (2/3)"), "{check}");
}

/// Unmounts a path a failed test left mounted.
struct UnmountOnDrop(std::path::PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = crated_core::mount::unmount_all(&self.0);
    }
}

/// `ctr images check` from both ctrs: the same stdout and exit status.
fn same_check(daemon: &Daemon, args: &[&str]) -> String {
    let mut full = vec!["-n", NS];
    full.extend_from_slice(args);
    let theirs = daemon.ctr(&debian_ctr(), &full);
    let ours = daemon.ctr(&common::workspace_bin("ctr"), &full);
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        text(&ours),
        text(&theirs),
        "ctr {args:?}: ours (left), containerd's (right)"
    );
    assert_eq!(
        ours.status.success(),
        theirs.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    text(&ours)
}
