//! `ctr images` and `ctr containers` against a live `crated`: Debian's
//! containerd 1.6 ctr and ours print the same tables and JSON, label and
//! delete the same way. Records are created over gRPC (ctr 1.6 can only
//! create them by pulling and unpacking, which come with issue 4); the image
//! documents are real OCI and Docker JSON ingested with ctr.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use common::blobs::blob;
use common::{debian_ctr, fails, ok, workspace_bin, Daemon};
use crated_api::containerd::services::containers::v1 as containers;
use crated_api::containerd::services::images::v1 as images;
use crated_api::containerd::types::Descriptor;
use crated_api::metadata::set_grpc_namespace;
use crated_api::proxy::snapshots::SnapshotsProxy;
use crated_core::snapshots::Snapshotter;
use crated_core::Namespace;
use serde_json::json;

const NS: &str = "ic";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_grpc_namespace(&mut request, &Namespace::new(NS).unwrap());
    request
}

/// This host's architecture in Go's spelling, which the default platform
/// matcher of both ctrs selects.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A blob in content: its descriptor fields.
struct Blob {
    digest: String,
    size: u64,
}

fn put(daemon: &Daemon, dir: &Path, name: &str, data: &[u8], labels: &[String]) -> Blob {
    Blob {
        digest: common::blobs::put(daemon, NS, dir, name, data, labels),
        size: data.len() as u64,
    }
}

fn put_random(daemon: &Daemon, dir: &Path, name: &str, len: usize, seed: u64) -> Blob {
    let (file, _) = blob(dir, name, len, seed);
    let data = std::fs::read(file).unwrap();
    put(daemon, dir, name, &data, &[])
}

/// A manifest (OCI or Docker) over a config for `arch` and one layer, its
/// blobs referenced by gc labels so the image keeps them.
fn put_manifest(
    daemon: &Daemon,
    dir: &Path,
    name: &str,
    arch: &str,
    docker: bool,
    seed: u64,
) -> Blob {
    let layer = put_random(
        daemon,
        dir,
        &format!("{name}-layer"),
        40_000 + seed as usize,
        seed,
    );
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    }))
    .unwrap();
    let config = put(daemon, dir, &format!("{name}-config"), &config, &[]);
    let (manifest_type, config_type) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    } else {
        (OCI_MANIFEST, OCI_CONFIG)
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}],
    }))
    .unwrap();
    put(
        daemon,
        dir,
        &format!("{name}-manifest"),
        &manifest,
        &[
            format!("containerd.io/gc.ref.content.config={}", config.digest),
            format!("containerd.io/gc.ref.content.l.0={}", layer.digest),
        ],
    )
}

async fn create_image(
    daemon: &Daemon,
    name: &str,
    media_type: &str,
    blob: &Blob,
    labels: &[(&str, &str)],
) {
    images::images_client::ImagesClient::new(daemon.channel().await)
        .create(request(images::CreateImageRequest {
            image: Some(images::Image {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                target: Some(Descriptor {
                    media_type: media_type.into(),
                    digest: blob.digest.clone(),
                    size: blob.size as i64,
                    annotations: HashMap::new(),
                }),
                ..Default::default()
            }),
            source_date_epoch: None,
        }))
        .await
        .unwrap();
}

/// stdout of both ctrs for `args`, asserted equal.
fn same(daemon: &Daemon, args: &[&str]) -> String {
    let mut full = vec!["-n", NS];
    full.extend_from_slice(args);
    let theirs = ok(daemon.ctr(&debian_ctr(), &full));
    let ours = ok(daemon.ctr(&workspace_bin("ctr"), &full));
    assert_eq!(
        ours, theirs,
        "ctr {args:?}: ours (left) and containerd's (right) differ"
    );
    ours
}

fn label_set(line: &str) -> BTreeSet<String> {
    line.trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn images_list_label_and_remove_as_containerd_ctr_does() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctr = workspace_bin("ctr");
    let debian = debian_ctr();
    let run = |ctr: &Path, args: &[&str]| {
        let mut full = vec!["-n", NS];
        full.extend_from_slice(args);
        daemon.ctr(ctr, &full)
    };

    // A two-platform OCI index (only this host's manifest is in content, as
    // after a pull), a Docker manifest, and an image whose target is missing.
    let host = put_manifest(&daemon, dir.path(), "host", host_arch(), false, 3);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": format!("sha256:{}", "5".repeat(64)), "size": 999,
             "platform": {"architecture": "s390x", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": host.digest, "size": host.size,
             "platform": {"architecture": host_arch(), "os": "linux"}},
        ],
    }))
    .unwrap();
    let index = put(
        &daemon,
        dir.path(),
        "index",
        &index,
        &[format!("containerd.io/gc.ref.content.m.1={}", host.digest)],
    );
    create_image(
        &daemon,
        "example.com/multi:1",
        OCI_INDEX,
        &index,
        &[("team", "a"), ("tier", "1")],
    )
    .await;
    let docker = put_manifest(&daemon, dir.path(), "docker", "arm", true, 7);
    create_image(
        &daemon,
        "example.com/docker:1",
        DOCKER_MANIFEST,
        &docker,
        &[],
    )
    .await;
    let missing = Blob {
        digest: format!("sha256:{}", "6".repeat(64)),
        size: 1234,
    };
    create_image(
        &daemon,
        "example.com/missing:1",
        OCI_MANIFEST,
        &missing,
        &[],
    )
    .await;

    // The table, byte for byte; the sizes are what containerd computes.
    let table = same(&daemon, &["images", "ls"]);
    let rows = common::rows(&table);
    assert_eq!(rows.len(), 3, "{table}");
    let row = |name: &str| rows.iter().find(|r| r[0] == name).unwrap().clone();
    assert_eq!(
        row("example.com/multi:1")[5],
        format!("linux/{},linux/s390x", host_arch())
    );
    assert_eq!(row("example.com/multi:1")[6], "team=a,tier=1");
    assert_eq!(
        row("example.com/docker:1")[5],
        "linux/arm/v7",
        "configs are normalised"
    );
    assert_eq!(row("example.com/missing:1")[3..], ["1.2", "KiB", "-", "-"]);
    // A missing blob is reported on stderr, the listing still succeeds.
    let out = run(&ctr, &["images", "ls"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed calculating size for image example.com/missing:1"),
        "{stderr}"
    );

    same(&daemon, &["images", "ls", "-q"]);
    assert_eq!(
        same(&daemon, &["images", "ls", "-q", "labels.team==a"]),
        "example.com/multi:1\n"
    );
    assert_eq!(
        same(
            &daemon,
            &[
                "images",
                "ls",
                "-q",
                "name~=docker",
                "target.mediatype==nope"
            ]
        ),
        "example.com/docker:1\n"
    );
    let bad = fails(run(&ctr, &["images", "ls", "name~=("]));
    assert!(bad.contains("failed to list images"), "{bad}");

    // Labels: set with ours, read with theirs; -r replaces all.
    let set = ok(run(
        &ctr,
        &["images", "label", "example.com/docker:1", "a=1", "b"],
    ));
    assert_eq!(label_set(&set), ["a=1", "b=true"].map(String::from).into());
    let set = ok(run(
        &debian,
        &["images", "label", "example.com/docker:1", "a="],
    ));
    assert_eq!(label_set(&set), ["b=true".to_owned()].into());
    let set = ok(run(
        &ctr,
        &["images", "label", "-r", "example.com/docker:1", "c=3"],
    ));
    assert_eq!(label_set(&set), ["c=3".to_owned()].into());
    assert_eq!(
        same(&daemon, &["images", "ls", "-q", "labels.c==3"]),
        "example.com/docker:1\n"
    );
    let err = fails(run(
        &ctr,
        &["images", "label", "example.com/nosuch:1", "a=1"],
    ));
    assert!(
        err.contains("example.com/nosuch:1") && err.contains("not found"),
        "{err}"
    );

    // A namespace holding images cannot be removed.
    let err = fails(daemon.ctr(&ctr, &["namespaces", "rm", NS]));
    assert!(err.contains("must be empty"), "{err}");

    // Removal: a missing name is a warning, not a failure, for both.
    for (ctr, name) in [
        (&debian, "example.com/missing:1"),
        (&ctr, "example.com/docker:1"),
    ] {
        let out = run(ctr, &["images", "rm", "example.com/nosuch:1", name]);
        assert_eq!(ok(out.clone()), format!("{name}\n"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("example.com/nosuch:1: image not found"),
            "{stderr}"
        );
    }
    // A synchronous delete of the last image returns after its blobs are gone.
    assert_eq!(
        ok(run(
            &ctr,
            &["images", "rm", "--sync", "example.com/multi:1"]
        )),
        "example.com/multi:1\n"
    );
    assert_eq!(same(&daemon, &["images", "ls", "-q"]), "");
    assert_eq!(
        same(&daemon, &["content", "ls", "-q"]),
        "",
        "the collector took every blob"
    );
}

fn gc_root() -> crated_core::snapshots::Labels {
    [("containerd.io/gc.root".to_owned(), "test".to_owned())].into()
}

async fn create_container(daemon: &Daemon, container: containers::Container) {
    containers::containers_client::ContainersClient::new(daemon.channel().await)
        .create(request(containers::CreateContainerRequest {
            container: Some(container),
        }))
        .await
        .unwrap();
}

/// Container "snap" with the overlayfs snapshot of the same name.
fn snap_container() -> containers::Container {
    containers::Container {
        id: "snap".into(),
        runtime: Some(containers::container::Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(any(SPEC_TYPE, b"{}")),
        snapshotter: "overlayfs".into(),
        snapshot_key: "snap".into(),
        ..Default::default()
    }
}

fn any(type_url: &str, value: &[u8]) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.into(),
        value: value.to_vec(),
    }
}

#[tokio::test]
async fn containers_list_info_label_and_remove_as_containerd_ctr_does() {
    let daemon = tokio::task::spawn_blocking(Daemon::start).await.unwrap();
    let ctr = workspace_bin("ctr");
    let debian = debian_ctr();
    let run = |ctr: &Path, args: &[&str]| {
        let mut full = vec!["-n", NS];
        full.extend_from_slice(args);
        daemon.ctr(ctr, &full)
    };

    // Spec JSON in the field order of Go's specs.Spec, as containerd's client
    // writes it (ctr re-encodes it through that struct).
    let spec_text = r#"{"ociVersion":"1.0.2-dev","process":{"user":{"uid":0,"gid":0},"args":["sh","-c","echo <hi> && true"],"cwd":"/"},"root":{"path":"rootfs"},"hostname":"web"}"#;
    let spec: serde_json::Value = serde_json::from_str(spec_text).unwrap();
    create_container(
        &daemon,
        containers::Container {
            id: "web".into(),
            labels: [("team", "a"), ("app", "web")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
            image: "example.com/web:1".into(),
            runtime: Some(containers::container::Runtime {
                name: "io.containerd.runc.v2".into(),
                options: Some(any("containerd.runc.v1.Options", b"\x0a\x04runc")),
            }),
            spec: Some(any(SPEC_TYPE, spec_text.as_bytes())),
            snapshotter: "overlayfs".into(),
            extensions: [
                ("ext.b".to_owned(), any("x/b", b"2")),
                ("ext.a".to_owned(), any("x/a", b"1")),
            ]
            .into(),
            ..Default::default()
        },
    )
    .await;
    create_container(
        &daemon,
        containers::Container {
            id: "bare".into(),
            runtime: Some(containers::container::Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            }),
            spec: Some(any(SPEC_TYPE, b"{\"ociVersion\":\"1.0.2\"}")),
            ..Default::default()
        },
    )
    .await;
    create_container(&daemon, snap_container()).await;

    let table = same(&daemon, &["containers", "ls"]);
    assert_eq!(
        common::rows(&table),
        [
            ["bare", "-", "io.containerd.runc.v2"],
            ["snap", "-", "io.containerd.runc.v2"],
            ["web", "example.com/web:1", "io.containerd.runc.v2"],
        ]
    );
    assert_eq!(
        same(&daemon, &["containers", "ls", "-q", "labels.team==a"]),
        "web\n"
    );
    assert_eq!(
        same(&daemon, &["containers", "ls", "-q", "image~=web"]),
        "web\n"
    );

    // Info is Go's JSON of the record, the decoded spec last.
    let info = same(&daemon, &["containers", "info", "web"]);
    let parsed: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(parsed["Spec"], spec);
    assert_eq!(parsed["Labels"], json!({"app": "web", "team": "a"}));
    assert_eq!(parsed["Runtime"]["Options"]["value"], "CgRydW5j");
    assert!(
        info.contains("\\u003chi\\u003e \\u0026\\u0026"),
        "Go's HTML escapes: {info}"
    );
    same(&daemon, &["containers", "info", "bare"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&same(
            &daemon,
            &["containers", "info", "--spec", "web"]
        ))
        .unwrap(),
        spec
    );
    let err = fails(run(&ctr, &["containers", "info", "nosuch"]));
    assert!(err.contains("nosuch") && err.contains("not found"), "{err}");

    // Labels set with ours show in theirs.
    let set = ok(run(&ctr, &["containers", "label", "web", "team=b", "app="]));
    assert_eq!(label_set(&set), ["team=b".to_owned()].into());
    assert_eq!(
        same(&daemon, &["containers", "ls", "-q", "labels.team==b"]),
        "web\n"
    );

    // A namespace holding containers cannot be removed.
    let err = fails(daemon.ctr(&ctr, &["namespaces", "rm", NS]));
    assert!(err.contains("must be empty"), "{err}");

    // Removing a container removes its snapshot too, unless kept. (The
    // snapshots are gc roots, as `ctr snapshots prepare` makes them: the
    // collection a delete sets off would take them otherwise.)
    let overlay = SnapshotsProxy::new(
        daemon.channel().await,
        "overlayfs",
        Namespace::new(NS).unwrap(),
    );
    overlay.prepare("snap", "", gc_root()).await.unwrap();
    ok(run(&ctr, &["containers", "rm", "--keep-snapshot", "snap"]));
    assert!(
        overlay.stat("snap").await.is_ok(),
        "--keep-snapshot keeps it"
    );
    overlay.remove("snap").await.unwrap();
    for ctr in [&debian, &ctr] {
        overlay.prepare("snap", "", gc_root()).await.unwrap();
        create_container(&daemon, snap_container()).await;
        ok(run(ctr, &["containers", "rm", "snap"]));
        let gone = overlay.stat("snap").await.unwrap_err();
        assert!(
            gone.is_not_found(),
            "{}: the snapshot went with the container: {gone}",
            ctr.display()
        );
    }

    // A missing id fails the command but the others are still removed.
    let err = fails(run(&ctr, &["containers", "rm", "nosuch", "bare"]));
    assert!(
        err.contains("\"nosuch\"") && err.contains("not found"),
        "{err}"
    );
    let err = fails(run(&ctr, &["containers", "rm"]));
    assert!(err.contains("must specify at least one container"), "{err}");
    ok(run(&debian, &["containers", "rm", "web"]));
    assert_eq!(same(&daemon, &["containers", "ls", "-q"]), "");
}
